"""tools/plot.py draws a workdir's training curves."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_metrics(workdir):
  rows = []
  for step in (10, 20, 30):
    rows.append({'step': step, 'split': 'train', 'loss': 1.0 / step, 'learning_rate': 1e-3,
                 'grad_norm': 0.5, 'stage': 1})
    rows.append({'step': step, 'split': 'eval', 'stage': 1 + step // 30,
                 'sequence_accuracy': step / 30, 'position_accuracy': 0.5,
                 'memory_max_abs': 1.0, 'memory_std_per_step': [0.1, 0.2]})
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_plot_writes_png_into_a_training_workdir(tmp_path):
  write_metrics(tmp_path)
  (tmp_path / 'checkpoints').mkdir()
  result = subprocess.run([sys.executable, 'tools/plot.py', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  png = tmp_path / 'training.png'
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert result.stdout.strip() == str(png)


def test_plot_of_an_export_writes_beside_it_not_into_it(tmp_path, digest):
  """An export (`best/`, no `checkpoints/`, like the shipped `checkpoints/mult`) is only read:
  the PNG goes to runs/<name>-outputs under the current directory."""
  export = tmp_path / 'shipped' / 'mult'
  (export / 'best').mkdir(parents=True)
  write_metrics(export)
  before = digest(export)
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'plot.py'),
                           'shipped/mult', '--stages'], cwd=tmp_path, capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0] == os.path.join('runs', 'mult-outputs', 'training.png')
  assert (tmp_path / 'runs' / 'mult-outputs' / 'training.png').exists()
  assert digest(export) == before


def test_plot_missing_metrics_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, 'tools/plot.py', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr.strip().startswith('error: cannot read')
  assert len(result.stderr.strip().splitlines()) == 1


def test_stage_table_spans_each_visited_stage():
  from tools import plot  # pylint: disable=g-import-not-at-top
  rows = [{'step': step, 'stage': stage, 'sequence_accuracy': acc, 'elapsed_seconds': 60 * step}
          for step, stage, acc in [(1, 1, 0.5), (2, 1, 1.0), (3, 5, 0.2), (4, 5, 0.9),
                                   (5, 5, 0.8), (6, 2, 0.95)]]
  table = plot.stage_table(rows).splitlines()
  assert table[2:] == ['| 1 | 1-9 | 0 | 0.0 | 2 | 2.0 | 100.0% |',
                       '| 5 | 1-99 | 2 | 2.0 | 3 | 3.0 | 90.0% |',
                       '| 2 | 10-99 | 5 | 5.0 | 1 | 1.0 | 95.0% |']
