"""What the memory buys: variants of the default config trained on one budget through the same
curriculum, each scored on held-out problems per size, with learning curves.

  python tools/ablate.py --workdir=/tmp/abl --steps=60000         # equal examples per run
  python tools/ablate.py --workdir=/tmp/abl --minutes=60          # equal wall clock per run
  python tools/ablate.py --workdir=/tmp/abl-stream --task=stream --steps=20000
  python tools/ablate.py --workdir=/tmp/abl --report --out=docs/ablations

Variants: `TL`, `TL-MHA`, `TL-AddErase` (Scenic's memory modes), `TL-AddErase-NTM` (the
NTM's erase/add: slots no write head selects keep their content), `TL-m32` and `TL-m64` (`TL`
with two and four times the memory tokens), `none` (the memory-less TTM) and `transformer` (a
causal Transformer over the token stream, `ttm_jax/baseline.py`).
`--variants` lists `NAME`, `NAME:SEEDS` (that many runs, seeds 0, 1, ...) or `NAME:A-B`
(seeds A to B), so that two processes, one core each, can train two seeds of one variant in
one workdir; a run that another process is training stops the command with an error.
`--task=stream` trains every variant on the stream framing (operands one digit per step, so
after reading them only the memory holds them) through stages 1, 5 and 2 (1×1, 1-99, 2×2);
`--task=stream-1-999` through 1×1, 1-99 (at most 20,000 steps) and on 1-999, which is too
large to memorize.
Each run trains in `WORKDIR/NAME-sSEED` (resuming if interrupted; a run finished on the same
budget is not retrained, one finished on a smaller budget resumes to the new one) and writes
`result.json` there: the `--mode=eval` rows of its last step, parameters, forward FLOPs,
examples/s and the learning curve (`config.eval.track`: the same held-out problems of `--track`
scored at every evaluation). `--report` (also run after training)
gathers them into `OUT.json`, `OUT.md` (one row per variant, the spread over seeds as
min-max), `OUT.png` (exact match per size) and `OUT-curves.png`.
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ttm_jax import host_memory  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  host_memory.restart_with_huge_pages()  # Before JAX loads (ttm_jax/host_memory.py).

import jax  # pylint: disable=g-import-not-at-top
import matplotlib  # pylint: disable=g-import-not-at-top

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from configs import mult  # pylint: disable=g-import-not-at-top
from tools import plot as plot_lib  # pylint: disable=g-import-not-at-top
from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import cli  # pylint: disable=g-import-not-at-top
from ttm_jax import config_check  # pylint: disable=g-import-not-at-top
from ttm_jax import evaluate  # pylint: disable=g-import-not-at-top
from ttm_jax import factory  # pylint: disable=g-import-not-at-top
from ttm_jax import files  # pylint: disable=g-import-not-at-top
from ttm_jax import profiling  # pylint: disable=g-import-not-at-top
from ttm_jax import train  # pylint: disable=g-import-not-at-top

VARIANTS = {
    'TL': {},
    'TL-MHA': {'model.memory_mode': 'TL-MHA'},
    'TL-AddErase': {'model.memory_mode': 'TL-AddErase'},
    'TL-AddErase-NTM': {'model.memory_mode': 'TL-AddErase-NTM'},
    'TL-m32': {'model.memory_size': 32},
    'TL-m64': {'model.memory_size': 64},
    'none': {'model.memory_mode': 'none'},
    'transformer': {'model.kind': 'transformer', 'task.framing': 'stream',
                    'task.layout': 'packed'},
}
TASKS = {
    'problem': ({}, '2x2,3x3'),  # The default framing and curriculum; tracked rows.
    'stream': ({'task.framing': 'stream', 'task.layout': 'packed', 'train.stages': '1,5,2',
                'train.last_stage': 2, 'eval.sizes': '1x1,2x1,2x2'}, '2x2'),
    # The stream framing through 1-999, which (unlike the ~9,000 trainable pairs of 1-99)
    # cannot be memorized: 1-99 is left after 100 evaluations (20,000 steps), passed or not.
    'stream-1-999': ({'task.framing': 'stream', 'task.layout': 'packed', 'train.stages': '1,5,6',
                      'train.last_stage': 6, 'train.max_epochs_per_stage': 100,
                      'eval.sizes': '1x1,2x1,2x2,3x2,3x3'}, '2x2,3x3'),
}
DEFAULT_VARIANTS = 'TL:3,none:3,TL-AddErase,TL-MHA,transformer'
FLOPS_DIGITS = 3  # FLOPs are counted on one 3×3 problem.


def parse_variants(text: str) -> List[Tuple[str, List[int]]]:
  """`'TL:3,none,TL-m32:1-2'` -> `[('TL', [0, 1, 2]), ('none', [0]), ('TL-m32', [1, 2])]`; an
  unknown name, a bad count or an empty range: ValueError."""
  runs = []
  for item in text.split(','):
    name, _, seeds = item.partition(':')
    if name not in VARIANTS:
      raise ValueError(f'unknown variant {name!r}; known: {", ".join(VARIANTS)}')
    first, dash, last = seeds.partition('-')
    if dash and first.isdigit() and last.isdigit() and int(first) <= int(last):
      runs.append((name, list(range(int(first), int(last) + 1))))
    elif not dash and (not seeds or seeds.isdigit() and int(seeds) >= 1):
      runs.append((name, list(range(int(seeds or 1)))))
    else:
      raise ValueError(f'{item!r}: after ":" a positive seed count N (seeds 0 to N-1) or a '
                       'range A-B of seeds, A <= B')
  return runs


def run_config(name: str, seed: int, budget: Tuple[str, float], task: str = 'problem',
               arg: str = None, track: str = None):
  """`configs/mult.py:arg` with the task's and the variant's changes, seed `seed`, and the
  budget (`('steps', N)` or `('minutes', M)`) as its only end besides passing the last stage."""
  config = mult.get_config(arg)
  changes, default_track = TASKS[task]
  for field, value in {**changes, **VARIANTS[name]}.items():
    section, key = field.split('.')
    config[section][key] = value
  kind, amount = budget
  if kind == 'steps':
    config.train.num_steps = int(amount)
  else:
    config.train.max_seconds = 60.0 * amount
  config.train.patience = 10**9
  config.seed = seed
  config.eval.track = default_track if track is None else track
  config.trace.num_examples = 0
  config_check.check(config)
  return config


def forward_flops(config, digits: int = FLOPS_DIGITS) -> float:
  """XLA's count of floating-point operations of one teacher-forced forward pass over one
  `digits`×`digits` problem (steps unrolled, so that every step is counted)."""
  config = profiling.with_model(config, scan=False)
  model, framing = factory.make_model(config), factory.make_framing(config)
  operand = np.array([10**digits - 1])
  inputs = framing.encode(operand, operand, digits)['inputs']
  params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs)
  return profiling.cost_of(jax.jit(model.apply).lower(params, inputs).compile())['flops']


def run_variant(name: str, seed: int, workdir: str, budget: Tuple[str, float],
                task: str = 'problem', arg: str = None, track: str = None) -> Dict:
  """Trains (or resumes) one run and scores its last step; returns and writes its result."""
  config = run_config(name, seed, budget, task, arg, track)
  start = time.perf_counter()
  summary = train.train_and_evaluate(config, workdir)
  model = factory.make_model(config)
  params, meta = ckpt.load_params(workdir, config, which='latest')
  rows = evaluate.evaluate_sizes(model, params, config,
                                 evaluate.checkpoint_digits(workdir, meta, config))
  print(f'{name} (seed {seed}):\n{evaluate.format_table(rows)}', flush=True)
  train_rows, eval_rows = plot_lib.read_metrics(workdir)
  batch = config.train.batch_size
  result = {
      'variant': name, 'seed': seed, 'task': task, 'budget': list(budget),
      'steps': summary['step'], 'stage': summary['stage'], 'finished': summary['finished'],
      'examples': summary['step'] * batch,
      'train_seconds': eval_rows[-1]['elapsed_seconds'] if eval_rows else 0.0,
      'seconds_this_call': time.perf_counter() - start,
      # The first epoch's rate includes compilation, so it is left out.
      'examples_per_second': float(np.median([r['examples_per_second']
                                              for r in train_rows[1:] or train_rows])),
      'parameters': sum(x.size for x in jax.tree_util.tree_leaves(params)),
      'forward_flops': forward_flops(config),
      'rows': rows,
      'curve': [{'examples': r['step'] * batch, 'stage': r['stage'],
                 **{k: v for k, v in r.items() if k.startswith('track/')}} for r in eval_rows]}
  files.write_json(os.path.join(workdir, 'result.json'), result)
  return result


RESULT_KEYS = ('variant', 'seed', 'task', 'budget', 'steps', 'stage', 'examples',
               'train_seconds', 'examples_per_second', 'parameters', 'forward_flops', 'rows',
               'curve')


def read_result(workdir: str, required: bool) -> Dict:
  """The `result.json` of a run, or None if it has none. One that is cut off or not a result
  (a kill or a full disk before it was written whole, by an earlier version) is an error if
  `required` (`--report`), else None: the run is resumed and scored again."""
  path = os.path.join(workdir, 'result.json')
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      result = json.load(f)
    why = '' if isinstance(result, dict) and all(k in result for k in RESULT_KEYS) else \
        'not the result of a run'
  except (ValueError, UnicodeDecodeError) as e:
    why = f'cut off or not JSON ({e})'
  if not why:
    return result
  if required:
    raise ckpt.CheckpointError(f'{path}: {why}; run the same command without --report to '
                               'score the run again')
  print(f'{path}: {why}; scoring the run again', flush=True)
  return None


def _spread(values: List[float]) -> str:
  mean = 100 * float(np.mean(values))
  if len(values) == 1:
    return f'{mean:.1f}%'
  return f'{mean:.1f}% ({100 * min(values):.1f}-{100 * max(values):.1f})'


def report(results: List[Dict], out: str):
  """Writes `out.json`, `out.md`, `out.png` and `out-curves.png` from run results."""
  files.write_json(out + '.json', results)
  names = list(dict.fromkeys(r['variant'] for r in results))
  groups = {n: [r for r in results if r['variant'] == n] for n in names}
  sizes = [row['size'] for row in results[0]['rows']]
  lines = [f'| variant | seeds | parameters | forward MFLOPs ({FLOPS_DIGITS}×{FLOPS_DIGITS}) | '
           'examples/s | examples | '
           'minutes | stage | ' + ' | '.join(sizes) + ' |', '|---' * (8 + len(sizes)) + '|']
  for name, runs in groups.items():
    cells = [_spread([r['rows'][i]['exact_match'] for r in runs]) for i in range(len(sizes))]
    lines.append(
        f'| {name} | {len(runs)} | {runs[0]["parameters"]:,} | '
        f'{runs[0]["forward_flops"] / 1e6:.2f} | '
        f'{np.median([r["examples_per_second"] for r in runs]):.0f} | '
        f'{np.median([r["examples"] for r in runs]):,.0f} | '
        f'{np.median([r["train_seconds"] for r in runs]) / 60:.0f} | '
        f'{"/".join(str(r["stage"]) for r in runs)} | ' + ' | '.join(cells) + ' |')
  files.write_text(out + '.md', '\n'.join(lines) + '\n')
  colors = dict(zip(names, plt.rcParams['axes.prop_cycle'].by_key()['color']))
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, runs in groups.items():
    values = 100 * np.array([[row['exact_match'] for row in r['rows']] for r in runs])
    mean = values.mean(0)
    ax.errorbar(sizes, mean, yerr=[mean - values.min(0), values.max(0) - mean], fmt='o-',
                capsize=3, color=colors[name], label=f'{name} ({len(runs)} seed(s))')
  ax.set(xlabel='size', ylabel='held-out exact match (%), greedy', ylim=(-2, 102),
         title=f'{results[0]["task"]} framing, budget {results[0]["budget"][1]:g} '
               f'{results[0]["budget"][0]} per run')
  ax.legend(fontsize=8)
  fig.tight_layout()
  with files.atomic_file(out + '.png', 'wb') as f:
    fig.savefig(f, format='png', dpi=110)
  tracked = sorted({k for r in results for row in r['curve'] for k in row
                    if k.startswith('track/')})
  fig, axes = plt.subplots(1, max(len(tracked), 1), figsize=(6 * max(len(tracked), 1), 4.5),
                           squeeze=False)
  for ax, key in zip(axes[0], tracked):
    for name, runs in groups.items():
      for i, r in enumerate(runs):
        points = [(row['examples'], 100 * row[key]) for row in r['curve'] if key in row]
        if points:
          ax.plot(*zip(*points), color=colors[name], lw=1.2, alpha=0.8,
                  label=name if i == 0 else None)
    ax.set(xlabel='training examples', ylabel='held-out exact match (%)', ylim=(-2, 102),
           title=f'{key[len("track/"):]} (the same {results[0]["task"]}-framing problems at '
                 'every evaluation)')
    ax.legend(fontsize=8)
  fig.tight_layout()
  with files.atomic_file(out + '-curves.png', 'wb') as f:
    fig.savefig(f, format='png', dpi=110)
  print('\n'.join(lines))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  budget = parser.add_mutually_exclusive_group()
  budget.add_argument('--steps', type=int, help='equal examples: train steps per run')
  budget.add_argument('--minutes', type=float, help='equal wall clock: minutes per run')
  parser.add_argument('--task', choices=sorted(TASKS), default='problem')
  parser.add_argument('--config_arg', help='argument of configs/mult.py, e.g. runlocal')
  parser.add_argument('--variants', default=DEFAULT_VARIANTS, help='NAME[:SEEDS],...')
  parser.add_argument('--track', help='rows scored at every evaluation (default: the task\'s)')
  parser.add_argument('--report', action='store_true', help='only gather finished runs')
  parser.add_argument('--out', default='docs/ablations')
  args = parser.parse_args(argv)
  try:
    runs = parse_variants(args.variants)
  except ValueError as e:
    raise SystemExit(f'error: {e}') from None
  plan = ('minutes', args.minutes) if args.minutes else ('steps', args.steps or 6000)
  results, workdir = [], args.workdir
  try:
    files.check_writable(os.path.dirname(os.path.abspath(args.out)))  # Before the training.
    for name, seeds in runs:
      for seed in seeds:
        workdir = os.path.join(args.workdir, f'{name}-s{seed}')
        result = read_result(workdir, args.report)
        if result is not None and (args.report or result['budget'] == list(plan)):
          results.append(result)
          continue
        if not args.report:  # New, interrupted, or trained on another budget: (re)sume.
          results.append(run_variant(name, seed, workdir, plan, args.task, args.config_arg,
                                     args.track))
    if not results:
      raise SystemExit(f'error: no finished runs in {args.workdir}')
    report(results, args.out)
  except cli.USER_ERRORS as e:  # A bad config or checkpoint, a held run, a NaN, a full disk.
    raise SystemExit(cli.error_line(e)) from None
  except KeyboardInterrupt:
    return cli.interrupted(workdir)
  return 0


if __name__ == '__main__':
  sys.exit(main())
