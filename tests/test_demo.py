"""--mode=demo answers a scripted session and rejects bad lines."""

import io
import os
import subprocess
import sys

import pytest

from configs import mult
from ttm_jax import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def workdir(traced_run):
  return traced_run[1]


def test_sparkline():
  assert demo.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == '▁▂▃▄▅▆▇█'
  assert demo.sparkline([2.0, 2.0]) == '▁▁'
  assert demo.sparkline([]) == ''


def test_scripted_session(workdir):
  config = mult.get_config('runlocal')
  out = io.StringIO()
  code = demo.run_demo(config, workdir, io.StringIO('12x3\nfoo\n\n7*8\n123456x2\nquit\n'), out)
  assert code == 0
  lines = out.getvalue().splitlines()
  answers = [line for line in lines if line.lstrip('> ').startswith(('12×3 =', '7×8 ='))]
  assert len(answers) == 2
  for line in answers:
    assert line.endswith('right') or 'wrong, ' in line
  errors = [line for line in lines if 'error:' in line]
  assert len(errors) == 2 and 'malformed problem' in errors[0] and 'more than' in errors[1]
  assert sum('ms/step' in line for line in lines) == 2
  assert sum('memory |M|' in line for line in lines) == 2


def test_piped_stdin_and_ctrl_d(workdir):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/mult.py:runlocal', f'--workdir={workdir}',
       '--mode=demo'], input='5x6\n', cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert '5×6 =' in result.stdout
  assert 'ms/step' in result.stdout
