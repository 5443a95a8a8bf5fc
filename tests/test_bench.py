"""tools/bench.py runs the three step loops and writes one JSON row per (config, S, loop), and
draws them."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # Compiles six train steps.
def test_bench_rows(tmp_path):
  out = tmp_path / 'bench.json'
  result = subprocess.run(
      [sys.executable, 'tools/bench.py', '--configs=runlocal,runlocal', '--steps=2,3',
       '--reps=1', f'--json={out}', f'--plot={tmp_path / "bench.png"}'], cwd=ROOT,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = json.loads(out.read_text())
  measured = [(r['steps'], r['loop']) for r in rows if 'same_as' not in r]
  assert measured == [(steps, loop) for steps in (2, 3) for loop in ('scan', 'unrolled', 'python')]
  assert len(rows) == 12  # The repeated config is reported, not measured again.
  for row in rows:
    assert row['compile_seconds'] > 0 and row['examples_per_second'] > 0
    assert row['batch_size'] == 16
  assert 'same model and batch as runlocal' in result.stdout
  header, first = result.stdout.splitlines()[:2]  # Every column has a header.
  assert header.split() == ['config', 'S', 'loop', 'compile', '(s)', 'step', '(ms)',
                            'examples/s', 'row', 'total', '(s)']
  assert len(first.split()) == 7 and first.split()[-1].isdigit()
  assert (tmp_path / 'bench.png').stat().st_size > 10_000
  # --replot draws saved rows without measuring.
  replot = subprocess.run(
      [sys.executable, 'tools/bench.py', '--replot', f'--json={out}',
       f'--plot={tmp_path / "again.png"}'], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert replot.returncode == 0 and replot.stdout == '', replot.stderr[-2000:]
  assert (tmp_path / 'again.png').stat().st_size > 10_000
  # A file that is not rows: one error line.
  (tmp_path / 'bad.json').write_text('{"not": "rows"')
  bad = subprocess.run(
      [sys.executable, 'tools/bench.py', '--replot', f'--json={tmp_path / "bad.json"}',
       f'--plot={tmp_path / "bad.png"}'], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert bad.returncode == 1 and bad.stderr.startswith('error: cannot draw'), bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1
