"""--mode=demo answers a scripted session and rejects bad lines."""

import io
import os
import subprocess
import sys

import pytest

from configs import mult
from ttm_jax import checkpoint
from ttm_jax import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


@pytest.fixture(scope='module')
def workdir(traced_run):
  return traced_run[1]


def test_sparkline():
  assert demo.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == '▁▂▃▄▅▆▇█'
  assert demo.sparkline([2.0, 2.0]) == '▁▁'
  assert demo.sparkline([]) == ''


def test_scripted_session_with_the_shipped_checkpoint():
  config = mult.get_config()  # checkpoints/mult: right on every 1×1 and 2×2 problem.
  out = io.StringIO()
  code = demo.run_demo(config, SHIPPED, io.StringIO('12x3\nfoo\n\n7*8\n١٢×٣\n12345x2\nquit\n'),
                       out)
  assert code == 0
  lines = out.getvalue().splitlines()
  assert lines[0].endswith('(operands up to 4 digits), or quit.')
  shown = [line.lstrip('> ') for line in lines if line.lstrip('> ')[:1] in ('1', '7', 'e')]
  assert shown == [
      '12×3 = 36   right',
      "error: malformed problem 'foo': expected two non-negative integers (ASCII digits) "
      'joined by ×, * or x, like 123×45',
      'error: empty line: expected a problem like 123×45',
      '7×8 = 56   right',
      "error: malformed problem '١٢×٣': expected two non-negative integers (ASCII digits) "
      'joined by ×, * or x, like 123×45',
      "error: problem '12345x2': an operand has 5 digits; the model was trained on operands up "
      'to 4 digits']
  assert sum('ms/step' in line for line in lines) == 2
  assert sum('memory |M|' in line for line in lines) == 2
  assert lines[-1] == '> '


def test_a_wrong_answer_says_the_right_one(workdir):
  config = mult.get_config('runlocal')  # 20 training steps: wrong on 12×3.
  model, params, _, _ = checkpoint.load_for_inference(workdir)
  session = demo.Demo(model, params, config)
  answer = session.answer(12, 3)['answer']
  assert answer != 36
  assert session.report(12, 3)[0] == f'12×3 = {"(no number)" if answer is None else answer}' \
      '   wrong, 12×3 = 36'


def test_piped_stdin_and_ctrl_d(workdir):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/mult.py:runlocal', f'--workdir={workdir}',
       '--mode=demo'], input='5x6\n', cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert '5×6 =' in result.stdout
  assert 'ms/step' in result.stdout
