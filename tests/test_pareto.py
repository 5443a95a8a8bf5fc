"""tools/pareto.py: FLOPs and progress per run, the Pareto front, and the plot."""

import os
import subprocess
import sys

from tools import pareto

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_front_keeps_runs_no_other_run_beats():
  runs = [{'name': n, 'forward_flops': f, 'progress': p}
          for n, f, p in [('a', 1, 0.5), ('b', 2, 0.4), ('c', 3, 1.2), ('d', 3, 0.9),
                          ('e', 5, 1.2)]]
  assert [r['name'] for r in pareto.pareto_front(runs)] == ['a', 'c']


def test_plots_a_real_run(traced_run, tmp_path):
  _, workdir = traced_run
  out = tmp_path / 'pareto.png'
  result = subprocess.run([sys.executable, 'tools/pareto.py', workdir, f'--out={out}'],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  row = pareto.summarize_run(workdir)
  assert (row['memory_size'], row['process_size']) == (8, 4)
  assert row['forward_flops'] > 0 and 0 <= row['progress'] <= 7


def test_not_a_workdir_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, 'tools/pareto.py', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr.strip().startswith('error:') and len(result.stderr.splitlines()) == 1
