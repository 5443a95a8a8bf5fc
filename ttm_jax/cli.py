"""What `main.py` runs for each `--mode`, with user errors reported as one line."""

import sys

from absl import app
from absl import flags

from ttm_jax import checkpoint as ckpt
from ttm_jax import demo
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import train

MODES = ('train', 'eval', 'predict', 'trace', 'demo')
USER_ERRORS = (factory.ConfigError, ckpt.CheckpointError, train.TrainingError)


def run(mode: str, config, workdir: str, problem: str = None, step: int = None) -> int:
  """Runs `mode`; returns the exit code. Known failures print `error: ...` and return 1.
  `step`: with mode 'eval', the saved step to evaluate instead of the best."""
  try:
    config.keys()  # config_flags defers a config file's load error to the first access.
  except OSError as e:
    attempts = [line.strip() for line in str(e).splitlines() if line.strip()]
    print(f'error: cannot load the config file: {attempts[-1]}', file=sys.stderr)
    return 2
  try:
    if mode == 'train':
      train.train_and_evaluate(config, workdir)
      return 0
    if mode == 'eval':
      evaluate.run_eval(config, workdir, step)
      return 0
    if mode == 'demo':
      return demo.run_demo(config, workdir)
    if mode == 'trace':
      evaluate.run_trace(config, workdir, problem)
      return 0
    return evaluate.run_predict(config, workdir)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f'\ninterrupted; run the same command to resume from the last checkpoint in '
          f'{workdir}', file=sys.stderr)
    return 130


def _parse_flags(argv):
  """absl's flag parsing, with any error (unknown flag, bad value, a config typo such as
  `--config.train.batchsize=3` or `configs/mult.py:stag=3`) as one line and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # Flag and config parsing raise many types.
    text = str(e).replace('\\n', '\n').replace("\\'", "'")
    lines = [line.strip(' \'"') for line in text.splitlines() if line.strip(' \'"')]
    if isinstance(e, (AttributeError, KeyError)) and lines:
      message = f"unknown config field '{lines[0]}'" + (f' ({lines[1]})' if lines[1:] else '')
    else:
      message = lines[-1] if lines else type(e).__name__
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def run_app(main):
  """`absl.app.run(main)` with one-line flag and config errors."""
  app.run(main, flags_parser=_parse_flags)
