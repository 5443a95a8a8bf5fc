"""tools/bench.py runs the three step loops and writes one JSON row per (config, S, loop)."""

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
       '--reps=1', f'--json={out}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = json.loads(out.read_text())
  measured = [(r['steps'], r['loop']) for r in rows if 'same_as' not in r]
  assert measured == [(steps, loop) for steps in (2, 3) for loop in ('scan', 'unrolled', 'python')]
  assert len(rows) == 12  # The repeated config is reported, not measured again.
  for row in rows:
    assert row['compile_seconds'] > 0 and row['examples_per_second'] > 0
    assert row['batch_size'] == 16
  assert 'same model and batch as runlocal' in result.stdout
