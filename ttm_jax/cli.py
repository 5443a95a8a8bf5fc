"""What `main.py` runs for each `--mode`, with user errors reported as one line."""

import os
import re
import sys

from absl import app
from absl import flags

from ttm_jax import checkpoint as ckpt
from ttm_jax import config_check
from ttm_jax import demo
from ttm_jax import devices
from ttm_jax import dumps
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import files
from ttm_jax import predict
from ttm_jax import train

MODES = ('train', 'eval', 'predict', 'trace', 'demo')
# absl's message for a config override it cannot parse: `flag --config.x.y=value: why`.
_OVERRIDE_ERROR_RE = re.compile(r'flag --(config\.[\w.]+)=(.*?): (.*)')
# Failures reported as one `error:` line: a bad config or checkpoint, a run that cannot go on, a
# damaged dump index, and what the system refuses (a full disk, a read-only or missing folder, a
# closed pipe: OSError).
USER_ERRORS = (factory.ConfigError, ckpt.CheckpointError, train.TrainingError, dumps.DumpError,
               files.JsonLinesError, OSError)


def error_message(e: BaseException) -> str:
  """The text after `error: ` for one of USER_ERRORS."""
  if isinstance(e, OSError):
    return files.os_error_message(e)
  return str(e)


def error_line(e: BaseException) -> str:
  """`error: <why>` for one of USER_ERRORS, as printed (and raised by tools as SystemExit)."""
  return f'error: {error_message(e)}'


def usage_error(mode: str, config, problem: str = None, step: int = None,
                out: str = None) -> str:
  """Why the command cannot run as given (a config that does not load or check out, a flag
  that does not go with `mode`), or '' if it can."""
  try:
    config.keys()  # config_flags defers a config file's load error to the first access.
  except OSError as e:
    attempts = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f'cannot load the config file: {attempts[-1]}'
  if step is not None and mode != 'eval':
    return f'--step: only with --mode=eval, not --mode={mode}'
  if problem is not None and mode != 'trace':
    return f'--problem: only with --mode=trace, not --mode={mode}'
  if out is not None and mode not in ('eval', 'trace'):
    return f'--out: only with --mode=eval or --mode=trace, not --mode={mode}'
  if problem is None and mode == 'trace':
    return '--problem: required with --mode=trace, e.g. --problem=123x45'
  try:
    config_check.check(config)
  except factory.ConfigError as e:
    return str(e)
  return ''


def run(mode: str, config, workdir: str, problem: str = None, step: int = None,
        out: str = None, cpu_devices: int = 0) -> int:
  """Runs `mode`; returns the exit code. A bad config or flag combination prints
  `error: ...` and returns 2 before anything runs; other known failures print `error: ...`
  and return 1. `step`: with mode 'eval', the saved step to evaluate instead of the best.
  `out`: with modes 'eval' and 'trace', where their files go (`outputs.output_dir`).
  `cpu_devices`: training splits a CPU-only host into this many devices (0: one per core;
  `devices.cpu_device_count`), if JAX has not started yet."""
  message = usage_error(mode, config, problem, step, out)
  if message:
    print(f'error: {message}', file=sys.stderr)
    return 2
  try:
    if mode == 'train':
      devices.split_cpu(devices.cpu_device_count(config.train.batch_size, cpu_devices))
      train.train_and_evaluate(config, workdir)
      return 0
    if mode == 'eval':
      evaluate.run_eval(config, workdir, step, out)
      return 0
    if mode == 'demo':
      return demo.run_demo(config, workdir)
    if mode == 'trace':
      predict.run_trace(config, workdir, problem, out)
      return 0
    return predict.run_predict(config, workdir)
  except BrokenPipeError:  # `--mode=predict | head -1`: the reader is gone.
    _quiet_stdout()
    print(error_line(BrokenPipeError()), file=files.error_stream())
    return 1
  except USER_ERRORS as e:
    print(error_line(e), file=files.error_stream())
    return 1
  except KeyboardInterrupt:
    if mode == 'train':
      return interrupted(workdir)
    print(f'\ninterrupted (--mode={mode})', file=sys.stderr)
    return 130


def _quiet_stdout():
  """Points stdout at /dev/null, so that flushing it at exit does not fail a second time on a
  closed pipe."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
  except (OSError, ValueError, AttributeError):  # No real stdout (e.g. a test's capture).
    pass


def interrupted(workdir: str) -> int:
  """Says how to resume training stopped by Ctrl-C or SIGTERM (the last checkpoint is already
  saved); returns the exit code, 130."""
  print(f'\ninterrupted; run the same command to resume from the last checkpoint in '
        f'{workdir}', file=sys.stderr)
  return 130


def _unknown_field(name: str, argv) -> str:
  """The dotted path, up to the unknown `name`, of the `--config.` override naming it."""
  for arg in argv:
    path = arg.partition('=')[0].lstrip('-').split('.')
    if path[0] == 'config' and name in path[1:]:
      return '.'.join(path[:path.index(name, 1) + 1])
  return f'config.{name}'


def _parse_flags(argv):
  """absl's flag parsing, with any error (unknown flag, bad value, a config typo such as
  `--config.train.batchsize=3` or `configs/mult.py:stag=3`) as one line and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # Flag and config parsing raise many types.
    text = str(e).replace('\\n', '\n').replace("\\'", "'")
    lines = [line.strip() for line in text.splitlines() if line.strip(' \'"')]
    if isinstance(e, (AttributeError, KeyError)) and lines:
      name, *hint = [line.strip('\'"') for line in lines]
      message = f'{_unknown_field(name, argv)}: unknown field' + (
          f' ({hint[0]})' if hint else '')
    else:
      message = lines[-1].removeprefix('ValueError: ') if lines else type(e).__name__
      override = _OVERRIDE_ERROR_RE.fullmatch(message)
      if override:
        field, value, why = override.groups()
        why = 'expected true or false' if 'Non-boolean' in why else why
        message = f'{field}: {value!r}: {why}'
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def run_app(main):
  """`absl.app.run(main)` with one-line flag and config errors, and standard streams that do
  not fail on text they cannot decode or encode (it is replaced or escaped instead)."""
  sys.stdin.reconfigure(errors='replace')
  sys.stdout.reconfigure(errors='backslashreplace')
  sys.stderr.reconfigure(errors='backslashreplace')
  app.run(main, flags_parser=_parse_flags)
