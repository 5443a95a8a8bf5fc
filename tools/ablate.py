"""Ablations on one training budget: each variant trains for the same number of steps (same
batch, curriculum and optimizer as the default config), then is evaluated per digit size.

  python tools/ablate.py --workdir=/tmp/ablations --steps=6000 [--variants=TL,none,...]
  python tools/ablate.py --workdir=/tmp/ablations --report --out=docs/ablations \
      --shipped=checkpoints/mult

Variants: `TL`, `TL-MHA`, `TL-AddErase` (memory modes), `none` (the memory-less TTM) and
`transformer` (a causal Transformer over the whole token stream, `ttm_jax/baseline.py`).
Each trains in `WORKDIR/VARIANT` (resuming if interrupted) and writes `eval.json` there;
`--report` gathers them into `OUT.json`, a Markdown table `OUT.md` and a plot `OUT.png`.
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
import matplotlib  # pylint: disable=g-import-not-at-top

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from configs import mult  # pylint: disable=g-import-not-at-top
from tools import plot as plot_lib  # pylint: disable=g-import-not-at-top
from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import evaluate  # pylint: disable=g-import-not-at-top
from ttm_jax import factory  # pylint: disable=g-import-not-at-top
from ttm_jax import train  # pylint: disable=g-import-not-at-top

VARIANTS = {
    'TL': {},
    'TL-MHA': {'model.memory_mode': 'TL-MHA'},
    'TL-AddErase': {'model.memory_mode': 'TL-AddErase'},
    'none': {'model.memory_mode': 'none'},
    'transformer': {'model.kind': 'transformer', 'task.framing': 'stream',
                    'task.layout': 'packed'},
}


def variant_config(name: str, steps: int, arg: str = None):
  """The config `configs/mult.py:arg` with the variant's changes, trained for `steps` steps
  with no early end."""
  config = mult.get_config(arg)
  for field, value in VARIANTS[name].items():
    section, key = field.split('.')
    config[section][key] = value
  config.train.update(num_steps=steps, patience=steps)
  config.trace.num_examples = 0
  return config


def run_variant(name: str, workdir: str, steps: int, arg: str = None):
  """Trains and evaluates one variant; returns its `eval.json` contents."""
  config = variant_config(name, steps, arg)
  start = time.perf_counter()
  summary = train.train_and_evaluate(config, workdir)
  seconds = time.perf_counter() - start
  model = factory.make_model(config)
  params, meta = ckpt.load_params(workdir, config, which='latest')
  rows = evaluate.evaluate_sizes(model, params, config,
                                 evaluate.checkpoint_digits(workdir, meta, config))
  print(f'{name}:\n{evaluate.format_table(rows)}', flush=True)
  train_rows, _ = plot_lib.read_metrics(workdir)
  result = {
      'variant': name, 'steps': summary['step'], 'stage': summary['stage'],
      'examples': summary['step'] * config.train.batch_size, 'train_seconds': seconds,
      # The first epoch's rate includes compilation, so it is left out.
      'examples_per_second': sum(r['examples_per_second'] for r in train_rows[1:])
                             / max(len(train_rows) - 1, 1),
      'parameters': sum(x.size for x in jax.tree_util.tree_leaves(params)),
      'rows': rows}
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  return result


def report(results, out: str, shipped: str = None):
  """Writes `out.json`, `out.md` (one row per variant) and `out.png` (exact match per size,
  with the `--mode=eval` table of the `shipped` workdir as one more line, when given)."""
  with open(out + '.json', 'w') as f:
    json.dump(results, f, indent=2)
  sizes = [row['size'] for row in results[0]['rows']]
  lines = ['| variant | parameters | examples/s | ' + ' | '.join(sizes) + ' |',
           '|---|---|---|' + '---|' * len(sizes)]
  for r in results:
    cells = ' | '.join(f'{100 * row["exact_match"]:.1f}%' for row in r['rows'])
    lines.append(f'| {r["variant"]} | {r["parameters"]:,} | {r["examples_per_second"]:.0f} | '
                 f'{cells} |')
  with open(out + '.md', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for r in results:
    ax.plot(sizes, [100 * row['exact_match'] for row in r['rows']], 'o-', label=r['variant'])
  if shipped:
    with open(os.path.join(shipped, 'eval.json')) as f:
      rows = {row['size']: row for row in json.load(f)['rows']}
    ax.plot(sizes, [100 * rows[size]['exact_match'] for size in sizes], 'k*--', ms=10,
            label=f'shipped model ({shipped}, longer training)')
  ax.set(xlabel='operand digits', ylabel='exact match (%), greedy, fresh problems',
         ylim=(-2, 102),
         title=f'ablations: {results[0]["steps"]} steps × batch '
               f'{results[0]["examples"] // max(results[0]["steps"], 1)} each')
  ax.legend()
  fig.tight_layout()
  fig.savefig(out + '.png', dpi=110)
  print('\n'.join(lines))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=6000)
  parser.add_argument('--config_arg', help='argument of configs/mult.py, e.g. runlocal')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--report', action='store_true', help='only gather finished variants')
  parser.add_argument('--out', default='docs/ablations')
  parser.add_argument('--shipped', help='a workdir whose eval.json (--mode=eval) to plot too')
  args = parser.parse_args()
  names = args.variants.split(',')
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise SystemExit(f'error: unknown variants {unknown}; known: {", ".join(VARIANTS)}')
  results = []
  for name in names:
    workdir = os.path.join(args.workdir, name)
    path = os.path.join(workdir, 'eval.json')
    if os.path.exists(path):
      with open(path) as f:
        results.append(json.load(f))
    elif not args.report:
      try:
        results.append(run_variant(name, workdir, args.steps, args.config_arg))
      except (factory.ConfigError, ckpt.CheckpointError) as e:
        raise SystemExit(f'error: {e}') from None
  if results:
    report(results, args.out, args.shipped)


if __name__ == '__main__':
  main()
