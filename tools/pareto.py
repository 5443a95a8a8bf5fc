"""FLOPs against accuracy for training runs that differ in memory size m and read size r.

  python tools/pareto.py RUN_DIR [RUN_DIR ...] [--out docs/pareto.png] [--json FILE]

For each run (a workdir with `config.json` and `metrics.jsonl`): the matmul FLOPs of one
forward step of one example (`ttm_jax.profiling.analytic_forward_flops`) and its curriculum
progress, (stages passed) + eval exact match, at its best evaluation (the measure of 'best' in
training). Runs on the Pareto front (no other run has fewer FLOPs and more progress) are
joined by a line.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # pylint: disable=g-import-not-at-top

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from tools import plot as plot_lib  # pylint: disable=g-import-not-at-top
from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import profiling  # pylint: disable=g-import-not-at-top
from ttm_jax import curriculum  # pylint: disable=g-import-not-at-top
from ttm_jax import files  # pylint: disable=g-import-not-at-top


def summarize_run(workdir):
  """`{name, memory_size, process_size, forward_flops, progress, step, steps_to_1x1,
  examples_per_second}`; `steps_to_1x1`: the first evaluation at >= 99% exact match on 1x1."""
  try:
    config = ckpt.read_config(workdir)
  except ckpt.CheckpointError as e:
    raise SystemExit(f'error: {e}') from None
  train_rows, eval_rows = plot_lib.read_metrics(workdir)
  if not eval_rows:
    raise SystemExit(f'error: {workdir}/metrics.jsonl has no evaluations yet')
  order = curriculum.stage_order(config.train) if 'stages' in config.train else tuple(
      range(1, 8))  # Runs from before config.train.stages went through the stages in order.
  progress = lambda r: curriculum.progress(order, r['stage'], r['sequence_accuracy'])
  best = max(eval_rows, key=lambda r: (progress(r), -r['step']))
  solved = [r['step'] for r in eval_rows if r['stage'] == 1 and r['sequence_accuracy'] >= 0.99]
  return {'steps_to_1x1': solved[0] if solved else None,
          'name': os.path.basename(os.path.normpath(workdir)),
          'memory_size': config.model.memory_size, 'process_size': config.model.process_size,
          'forward_flops': profiling.analytic_forward_flops(config),
          'progress': progress(best), 'step': best['step'],
          'examples_per_second': sum(r['examples_per_second'] for r in train_rows)
                                 / len(train_rows)}


def pareto_front(runs):
  """The runs that no other run beats on both fewer FLOPs and more progress, by FLOPs."""
  ordered = sorted(runs, key=lambda r: (r['forward_flops'], -r['progress']))
  front, best = [], float('-inf')
  for run in ordered:
    if run['progress'] > best:
      front.append(run)
      best = run['progress']
  return front


def draw(runs, out):
  """Progress against FLOPs (with the Pareto front), and the steps each run took to solve 1x1."""
  fig, (ax, ax_steps) = plt.subplots(1, 2, figsize=(12, 4.5))
  for run in runs:
    label = f'm={run["memory_size"]}, r={run["process_size"]}'
    x = run['forward_flops'] / 1e6
    ax.scatter(x, run['progress'], color='tab:blue')
    ax.annotate(label, (x, run['progress']), textcoords='offset points', xytext=(5, 4),
                fontsize=8)
    if run['steps_to_1x1'] is not None:
      ax_steps.scatter(x, run['steps_to_1x1'], color='tab:green')
      ax_steps.annotate(label, (x, run['steps_to_1x1']), textcoords='offset points',
                        xytext=(5, 4), fontsize=8)
  front = pareto_front(runs)
  ax.plot([r['forward_flops'] / 1e6 for r in front], [r['progress'] for r in front],
          color='tab:orange', label='Pareto front')
  ax.set(xscale='log', xlabel='forward MFLOPs per step per example (matmuls)',
         ylabel='best progress: stages passed + exact match', title='Cost vs accuracy')
  ax.legend()
  ax_steps.set(xscale='log', xlabel='forward MFLOPs per step per example (matmuls)',
               ylabel='train steps', title='Steps to 99% exact match on 1×1')
  fig.tight_layout()
  files.save_figure(fig, out, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('runs', nargs='+', help='training workdirs')
  parser.add_argument('--out', default='pareto.png', help='PNG to write')
  parser.add_argument('--json', help='also write the table to this file')
  args = parser.parse_args()
  try:
    files.check_outputs(args.out, args.json)
  except OSError as e:  # A missing folder that cannot be made, a read-only one.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  runs = [summarize_run(workdir) for workdir in args.runs]
  try:
    draw(runs, args.out)
    if args.json:
      files.write_json(args.json, runs)
  except OSError as e:
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  front = {id(r) for r in pareto_front(runs)}
  print(f'{"run":<14} {"m":>4} {"r":>3} {"MFLOPs":>8} {"progress":>9} {"at step":>8} '
        f'{"1x1 at":>7} {"ex/s":>6}  front')
  for r in sorted(runs, key=lambda r: r['forward_flops']):
    print(f'{r["name"]:<14} {r["memory_size"]:>4} {r["process_size"]:>3} '
          f'{r["forward_flops"] / 1e6:>8.2f} {r["progress"]:>9.3f} {r["step"]:>8} '
          f'{str(r["steps_to_1x1"]):>7} {r["examples_per_second"]:>6.0f}  '
          f'{"*" if id(r) in front else ""}')
  print(args.out)


if __name__ == '__main__':
  main()
