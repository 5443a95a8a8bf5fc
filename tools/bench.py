"""Training throughput: the train step scanned (`nn.scan`, one step per iteration), scanned with
all steps in one iteration (`scan_unroll=0`), and unrolled in a Python loop over steps (as
Scenic does): compile time and step time at several sequence lengths S.

  python tools/bench.py [--configs=paper,default] [--steps=8,16,32,64] [--reps=5]
                        [--json=docs/bench_train_cpu.json] [--plot=docs/bench_train_cpu.png]
  python tools/bench.py --replot --json=ROWS.json --plot=OUT.png   # draw saved rows again

Each row compiles `train.make_train_step` for a batch of `config.train.batch_size` random
problems of S steps, then times `--reps` steps (median); `row total` is the wall clock of the
whole row (building, compiling and timing). Configs whose model and batch are
the same as an earlier one are measured once. `--plot` draws compile time and step time
against S, a line per config and loop.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ttm_jax import host_memory  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  host_memory.restart_with_huge_pages()  # Before JAX loads (ttm_jax/host_memory.py).

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import mult
from ttm_jax import factory
from ttm_jax import files
from ttm_jax import profiling
from ttm_jax import tokens as tok

# Loop name -> model fields.
LOOPS = {'scan': dict(scan=True, scan_unroll=1), 'unrolled': dict(scan=True, scan_unroll=0),
         'python': dict(scan=False)}


def random_batch(config, batch_size: int, steps: int, seed: int = 0):
  """`{'inputs' [B, S, n], 'targets' [B, S]}`: random tokens, targets digits then an EOS."""
  rng = np.random.default_rng(seed)
  n = factory.make_framing(config).tokens_per_step
  inputs = rng.integers(0, tok.VOCAB_SIZE, (batch_size, steps, n)).astype(np.int32)
  targets = rng.integers(0, 10, (batch_size, steps)).astype(np.int32)
  targets[:, -1] = tok.EOS_TOKEN
  return {'inputs': inputs, 'targets': targets}


def bench_one(config, steps: int, loop: str, reps: int):
  """Compile seconds, median step seconds and examples/s of one configuration."""
  config = profiling.with_model(config, **LOOPS[loop])
  batch = jax.device_put(random_batch(config, config.train.batch_size, steps))
  program = profiling.TrainStepProgram(config, batch)
  step_seconds = profiling.time_call(lambda: program.run(1), reps)
  return {'steps': steps, 'loop': loop, 'compile_seconds': program.compile_seconds,
          'step_seconds': step_seconds,
          'examples_per_second': config.train.batch_size / step_seconds}


def save(rows, path):
  """Writes the rows so far (after every row: an interrupted run keeps what it measured)."""
  if path:
    files.write_json(path, rows)


def plot(rows, path):
  """Compile seconds and step milliseconds against S: a line per (config, loop)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  measured = [r for r in rows if 'same_as' not in r]  # Repeated configs: drawn once.
  configs = list(dict.fromkeys(r['config'] for r in measured))
  for config, loop in ((c, loop) for c in configs for loop in LOOPS):
    points = sorted((r['steps'], r['compile_seconds'], r['step_seconds']) for r in measured
                    if (r['config'], r['loop']) == (config, loop))
    if not points:
      continue
    steps, compile_s, step_s = zip(*points)
    style = dict(color=f'C{configs.index(config)}', label=f'{config}: {loop}',
                 marker={'scan': 'o', 'unrolled': 's', 'python': '^'}[loop],
                 linestyle={'scan': '-', 'unrolled': '--', 'python': ':'}[loop])
    axes[0].plot(steps, compile_s, **style)
    axes[1].plot(steps, [1e3 * t for t in step_s], **style)
  device = rows[0]['device']
  axes[0].set(xlabel='steps per example (S)', ylabel='compile time (s)',
              title=f'compile time ({device})')
  axes[1].set(xlabel='steps per example (S)', ylabel='train step (ms)', yscale='log',
              title=f'train step ({device})')
  for ax in axes:
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  files.save_figure(fig, path, dpi=90)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', default='paper,default',
                      help="comma-separated arguments of configs/mult.py ('default' for none)")
  parser.add_argument('--steps', default='8,16,32,64', help='comma-separated S')
  parser.add_argument('--reps', type=int, default=5, help='timed steps per row')
  parser.add_argument('--json', help='also write the rows to this file')
  parser.add_argument('--plot', help='also draw the rows to this PNG')
  parser.add_argument('--replot', action='store_true',
                      help='measure nothing: draw the rows saved in --json to --plot')
  args = parser.parse_args()
  try:
    files.check_outputs(None if args.replot else args.json, args.plot)
  except OSError as e:  # A missing folder that cannot be made, a read-only one.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  if args.replot:
    if not (args.json and args.plot):
      parser.error('--replot needs --json (the rows) and --plot')
    try:
      with open(args.json) as f:
        plot(json.load(f), args.plot)
    except (OSError, ValueError, KeyError, IndexError) as e:
      sys.exit(f'error: cannot draw {args.json}: {e!r}')
    return
  rows, seen = [], {}
  print(f'{"config":<10} {"S":>4} {"loop":<8} {"compile (s)":>11} {"step (ms)":>10} '
        f'{"examples/s":>10} {"row total (s)":>13}', flush=True)
  for name in args.configs.split(','):
    config = mult.get_config(None if name == 'default' else name)
    key = json.dumps([config.model.to_dict(), config.train.batch_size], sort_keys=True)
    if key in seen:
      print(f'{name:<10} same model and batch as {seen[key]}')
      rows += [dict(row, config=name, same_as=seen[key]) for row in rows
               if row['config'] == seen[key]]
      save(rows, args.json)
      continue
    seen[key] = name
    for steps in (int(s) for s in args.steps.split(',')):
      for loop in LOOPS:
        start = time.perf_counter()
        row = dict(bench_one(config, steps, loop, args.reps), config=name,
                   device=jax.devices()[0].device_kind, batch_size=config.train.batch_size)
        rows.append(row)
        save(rows, args.json)
        print(f'{name:<10} {steps:>4} {loop:<8} {row["compile_seconds"]:>11.2f} '
              f'{row["step_seconds"] * 1e3:>10.1f} {row["examples_per_second"]:>10.0f} '
              f'{time.perf_counter() - start:>13.0f}', flush=True)
  if args.plot:
    plot(rows, args.plot)


if __name__ == '__main__':
  main()
