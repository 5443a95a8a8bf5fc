"""tools/bench_loop.py: two checkouts' training loops measured side by side."""

import json
import os

import pytest

from tools import bench_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_run():
  assert bench_loop.parse_run('now=.:--a=1,--b=2') == ('now', os.path.abspath('.'),
                                                      ['--a=1', '--b=2'])
  with pytest.raises(Exception, match='NAME=PATH'):
    bench_loop.parse_run('just-a-path')


@pytest.mark.slow  # Two short training runs.
def test_two_runs_side_by_side(tmp_path, capsys):
  out = tmp_path / 'loop.json'
  bench_loop.main([f'--run=k1={ROOT}:--config.train.steps_per_call=1',
                   f'--run=k5={ROOT}:--config.train.steps_per_call=5',
                   '--config=configs/mult.py:runlocal', '--steps=30', '--epoch=10',
                   '--rounds=1', f'--json={out}'])
  saved = json.load(open(out))
  assert set(saved['runs']) == {'k1', 'k5'}
  assert all(len(r['examples_per_second']) == 2 and min(r['examples_per_second']) > 0
             for r in saved['runs'].values())
  printed = capsys.readouterr().out
  assert 'median examples/s' in printed and '1.00x' in printed
