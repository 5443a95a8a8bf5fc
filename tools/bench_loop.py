"""Training-loop throughput of two or more checkouts, side by side on one machine.

  git worktree add /tmp/before <commit>
  python tools/bench_loop.py --run before=/tmp/before --run now=. \
      --config=configs/mult.py:stage=2 --steps=1200 --epoch=200 --rounds=3 --json=out.json

Each round runs every checkout's `main.py` once (in turn, so that a slower or busier moment of
the machine falls on all of them) for `--steps` steps from scratch in a temporary workdir, and
reads the examples/s of each epoch from its `metrics.jsonl` (the training part of the epoch:
data, dispatch and updates; not the evaluation). The first epoch (compilation) is left out;
the table gives the median over the remaining epochs of all rounds. `--run NAME=PATH:FLAGS`
adds flags for that checkout only (comma separated, e.g. `now=.:--config.train.steps_per_call=1`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ttm_jax import files  # pylint: disable=g-import-not-at-top  # Light: no JAX.


def parse_run(text: str):
  """`NAME=PATH[:FLAG,FLAG]` -> `(name, path, [flags])`."""
  name, sep, rest = text.partition('=')
  if not sep or not name:
    raise argparse.ArgumentTypeError(f'expected NAME=PATH[:FLAGS], got {text!r}')
  path, _, flags = rest.partition(':')
  return name, os.path.abspath(path), [f for f in flags.split(',') if f]


def run_once(path: str, config: str, steps: int, epoch: int, flags: List[str]) -> List[float]:
  """Trains `steps` steps with the checkout at `path`; the examples/s of each epoch."""
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, 'main.py', f'--config={config}', f'--workdir={workdir}',
               f'--config.train.num_steps={steps}', f'--config.train.steps_per_epoch={epoch}',
               '--config.eval.num_examples=32', '--config.trace.num_examples=0',
               '--config.train.patience=100000', '--config.train.threshold=1.0', *flags]
    done = subprocess.run(command, cwd=path, capture_output=True, text=True)
    if done.returncode:
      raise RuntimeError(f'{path}: {" ".join(command)} failed:\n{done.stderr[-2000:]}')
    rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  return [r['examples_per_second'] for r in rows if r['split'] == 'train']


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--run', type=parse_run, action='append', required=True,
                      help='NAME=PATH[:FLAGS]: a checkout to measure (repeat)')
  parser.add_argument('--config', default='configs/mult.py:stage=2')
  parser.add_argument('--steps', type=int, default=1200)
  parser.add_argument('--epoch', type=int, default=200, help='steps per measured epoch')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--json', help='write the per-epoch measurements here')
  args = parser.parse_args(argv)
  try:
    files.check_outputs(args.json)
  except OSError as e:  # A missing folder that cannot be made, a read-only one.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  measured: Dict[str, List[float]] = {name: [] for name, _, _ in args.run}
  for round_index in range(args.rounds):
    for name, path, flags in args.run:
      per_epoch = run_once(path, args.config, args.steps, args.epoch, flags)
      measured[name] += per_epoch[1:]
      print(f'round {round_index + 1} {name}: ' + ' '.join(f'{x:.0f}' for x in per_epoch),
            flush=True)
  base = statistics.median(measured[args.run[0][0]])
  print(f'{"run":>12} {"epochs":>7} {"median examples/s":>18} {"vs " + args.run[0][0]:>12}')
  for name, values in measured.items():
    median = statistics.median(values)
    print(f'{name:>12} {len(values):>7} {median:>18.0f} {median / base:>11.2f}x')
  if args.json:
    files.write_json(args.json, {
        'config': args.config, 'steps': args.steps, 'epoch': args.epoch,
        'runs': {name: {'path': path, 'flags': flags, 'examples_per_second': measured[name]}
                 for name, path, flags in args.run}})
  return 0


if __name__ == '__main__':
  sys.exit(main())
