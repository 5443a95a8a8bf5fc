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


def test_invocations_give_the_wall_clock_of_each_start():
  from tools import plot  # pylint: disable=g-import-not-at-top
  start = {'split': 'start', 'devices': '2 x cpu', 'cpu': 'AMD EPYC', 'commit': 'abc',
           'config_digest': 'd1'}
  rows = [dict(start, step=0, time='2026-12-07T10:00:00+00:00'),
          {'split': 'train', 'step': 10},
          dict(start, step=10, time='2026-12-07T11:00:00+00:00'),
          {'split': 'end', 'step': 30, 'time': '2026-12-07T11:45:30+00:00',
           'finished': 'passed stage 4'}]
  assert plot.invocations(rows).splitlines() == [
      'start at step 0: 2026-12-07T10:00:00+00:00, 2 x cpu, AMD EPYC, commit abc, config d1; '
      'no end recorded (stopped, or still running)',
      'start at step 10: 2026-12-07T11:00:00+00:00, 2 x cpu, AMD EPYC, commit abc, config d1; '
      'ended at step 30 after 45.5 min (passed stage 4)']


def _rows_text(steps):
  return ''.join(json.dumps({'step': step, 'split': split, 'loss': 1.0, 'learning_rate': 1e-3,
                             'grad_norm': 0.5, 'stage': 1, 'sequence_accuracy': 0.5,
                             'position_accuracy': 0.5}) + '\n'
                 for step in steps for split in ('train', 'eval'))


def test_a_cut_last_line_is_left_out_with_a_warning(tmp_path):
  # Issue 34: a kill or a full disk in the middle of an append leaves a cut last line.
  (tmp_path / 'metrics.jsonl').write_text(_rows_text([10, 20]) + '{"step": 30, "split": "tr')
  result = subprocess.run([sys.executable, 'tools/plot.py', str(tmp_path), '--stages',
                           f'--out={tmp_path}'], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert result.stderr.strip() == (f'warning: {tmp_path}/metrics.jsonl: its last line is cut '
                                   'off (an interrupted write; 25 characters), left out')
  assert '| 1 | 1-9 | 0 | 0.0 | 20 |' in result.stdout


def test_a_damaged_line_before_the_last_is_one_error_naming_it(tmp_path):
  text = _rows_text([10, 20])
  (tmp_path / 'metrics.jsonl').write_text(text[:30] + '\n' + text)
  result = subprocess.run([sys.executable, 'tools/plot.py', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr.startswith(f'error: {tmp_path}/metrics.jsonl, line 1: not JSON')
  assert len(result.stderr.strip().splitlines()) == 1


def test_an_out_folder_that_cannot_be_written_is_one_line(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text(_rows_text([10]))
  (tmp_path / 'file').write_text('')
  result = subprocess.run([sys.executable, 'tools/plot.py', str(tmp_path),
                           f'--out={tmp_path}/file/sub'], cwd=ROOT, capture_output=True,
                          text=True)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.startswith(f'error: {tmp_path}/file/sub: Not a directory')
