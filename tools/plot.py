"""Training curves from a workdir's metrics.jsonl, as PNG files.

  python tools/plot.py WORKDIR [--out DIR]

Writes `training.png` (loss, eval sequence and position accuracy per stage, learning rate,
gradient norm, memory max |x| and std) to DIR (default: WORKDIR, below). `--stages` also prints a
line per start of training (its time, devices, CPU, commit, and the wall clock to its end) and a
Markdown table of the curriculum stages: when each began, how long it took (wall clock of
training and evaluation, carried over resumes), and its best evaluation.

A folder that is not a training workdir (no `checkpoints/`: an export such as the shipped
`checkpoints/mult`) is only read: the PNG goes to `runs/<name>-outputs` (`ttm_jax/outputs.py`).
"""

import argparse
import datetime
import itertools
import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ttm_jax import data  # pylint: disable=g-import-not-at-top  # Light: numpy only.
from ttm_jax import files  # pylint: disable=g-import-not-at-top  # Light: no numpy even.
from ttm_jax import outputs  # pylint: disable=g-import-not-at-top


_WARNED = set()  # Files whose cut last line was reported.


def read_rows(workdir):
  """The rows of `workdir/metrics.jsonl`. A last line cut off by a kill or a full disk (which
  the next training start drops) is left out, with a warning."""
  path = os.path.join(workdir, 'metrics.jsonl')
  try:
    rows, cut = files.read_jsonl(path)
  except OSError as e:
    raise SystemExit(f'error: cannot read {path}: {files.os_error_message(e)}') from None
  except files.JsonLinesError as e:
    raise SystemExit(f'error: {e}') from None
  if cut and path not in _WARNED:
    _WARNED.add(path)
    print(f'warning: {path}: its last line is cut off (an interrupted write; {len(cut)} '
          'characters), left out', file=sys.stderr)
  return [r for r in rows if isinstance(r.get('step'), int)]


def read_metrics(workdir):
  """`(train_rows, eval_rows)` of `workdir/metrics.jsonl` (`read_rows`)."""
  rows = read_rows(workdir)
  return ([r for r in rows if r.get('split') == 'train'],
          [r for r in rows if r.get('split') == 'eval'])


def plot(workdir, out):
  """Draws the curves; returns the PNG's path."""
  train_rows, eval_rows = read_metrics(workdir)
  if not train_rows:
    raise SystemExit(f'error: {workdir}/metrics.jsonl has no training rows yet')
  fig, axes = plt.subplots(2, 3, figsize=(15, 8))
  steps = [r['step'] for r in train_rows]
  axes[0, 0].plot(steps, [r['loss'] for r in train_rows])
  axes[0, 0].set(title='train loss', xlabel='step', yscale='log')
  for stage in sorted({r['stage'] for r in eval_rows}):
    rows = [r for r in eval_rows if r['stage'] == stage]
    axes[0, 1].plot([r['step'] for r in rows], [r['sequence_accuracy'] for r in rows], '.-',
                    label=f'stage {stage}')
    axes[0, 2].plot([r['step'] for r in rows], [r['position_accuracy'] for r in rows], '.-',
                    label=f'stage {stage}')
  axes[0, 1].set(title='eval exact match (greedy)', xlabel='step', ylim=(0, 1.02))
  axes[0, 2].set(title='eval per-position accuracy', xlabel='step', ylim=(0, 1.02))
  axes[0, 1].legend(fontsize=8)
  axes[1, 0].plot(steps, [r['learning_rate'] for r in train_rows])
  axes[1, 0].set(title='learning rate', xlabel='step')
  axes[1, 1].plot(steps, [r['grad_norm'] for r in train_rows])
  axes[1, 1].set(title='gradient global norm (before clipping)', xlabel='step', yscale='log')
  with_memory = [r for r in eval_rows if 'memory_max_abs' in r]
  memory_steps = [r['step'] for r in with_memory]
  axes[1, 2].plot(memory_steps, [r['memory_max_abs'] for r in with_memory], label='max |x|')
  axes[1, 2].plot(memory_steps, [r['memory_std_per_step'][-1] for r in with_memory],
                  label='std after the last step')
  axes[1, 2].set(title='memory values (greedy eval decode)', xlabel='step', yscale='log')
  if with_memory:
    axes[1, 2].legend(fontsize=8)
  if not with_memory:
    axes[1, 2].text(0.5, 0.5, 'no memory statistics in this run', ha='center',
                    transform=axes[1, 2].transAxes)
  fig.tight_layout()
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, 'training.png')
  with files.atomic_file(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=80)
  plt.close(fig)
  return path


def stage_table(eval_rows) -> str:
  """A Markdown table, one row per curriculum stage in the order the run visited them."""
  lines = ['| stage | operands | from step | from minute | steps | minutes | '
           'best eval exact match |',
           '|---|---|---|---|---|---|---|']
  start_step, start_seconds = 0, 0.0
  for stage, rows in itertools.groupby(eval_rows, key=lambda row: row['stage']):
    rows = list(rows)
    low, high = data.STAGES[stage - 1]
    seconds = rows[-1].get('elapsed_seconds', float('nan'))
    lines.append(f'| {stage} | {low}-{high} | {start_step:,} | {start_seconds / 60:.1f} | '
                 f'{rows[-1]["step"] - start_step:,} | {(seconds - start_seconds) / 60:.1f} | '
                 f'{100 * max(r["sequence_accuracy"] for r in rows):.1f}% |')
    start_step, start_seconds = rows[-1]['step'], seconds
  return '\n'.join(lines)


def invocations(rows) -> str:
  """A line per start of training (`start` rows): when, where, which code, and the wall clock
  to its `end` row (none where the run was stopped or still runs)."""
  lines = []
  for i, row in enumerate(rows):
    if row['split'] != 'start':
      continue
    end = next((r for r in rows[i + 1:] if r['split'] in ('start', 'end')), None)
    commit = row['commit'][:12] + ('+dirty' if row['commit'].endswith('+dirty') else '')
    line = (f'start at step {row["step"]:,}: {row["time"]}, {row["devices"]}, {row["cpu"]}, '
            f'commit {commit or "unknown"}, config {row["config_digest"]}; ')
    if end is None or end['split'] == 'start':
      line += 'no end recorded (stopped, or still running)'
    else:
      minutes = (datetime.datetime.fromisoformat(end['time'])
                 - datetime.datetime.fromisoformat(row['time'])).total_seconds() / 60
      line += f'ended at step {end["step"]:,} after {minutes:.1f} min ({end["finished"]})'
    lines.append(line)
  return '\n'.join(lines) or 'no start rows (a run from before they were written)'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--out', default=None, help='folder for the PNG (default: WORKDIR, or '
                      'runs/<name>-outputs for an export such as checkpoints/mult)')
  parser.add_argument('--stages', action='store_true', help='print the table of stages too')
  args = parser.parse_args(argv)
  try:
    print(plot(args.workdir, outputs.output_dir(args.workdir, args.out)))
    if args.stages:
      print(invocations(read_rows(args.workdir)))
      print(stage_table(read_metrics(args.workdir)[1]))
  except OSError as e:  # A read-only or full folder for the PNG.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None


if __name__ == '__main__':
  sys.exit(main())
