"""tools/length.py: scores per operand length, rows the model cannot encode, the picture,
and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tools import length
from ttm_jax import factory
from ttm_jax import tokens as tok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P, E = tok.PAD_TOKEN, tok.EOS_TOKEN


def test_lengths_read_ranges_and_lists():
  assert length.parse_lengths('1-3,7,2') == [1, 2, 3, 7]
  for bad in ('0-3', '5-2', 'x', '1,,2'):
    with pytest.raises(factory.ConfigError, match='--lengths'):
      length.parse_lengths(bad)


@pytest.mark.parametrize('order', ['lsb', 'msb'])
def test_score_counts_each_place_of_the_answer(order):
  # 56 (2 digits) and 408 (3 digits); the model gets 56's tens digit and 408's units wrong.
  written = lambda digits: digits if order == 'lsb' else digits[::-1]  # Units first -> order.
  targets = np.array([written([6, 5]) + [E, P], written([8, 0, 4]) + [E]])
  predictions = np.array([written([6, 1]) + [E, E], written([9, 0, 4]) + [E]])
  scores = length.score(predictions, targets, order)
  assert scores['place_count'] == [2, 2, 1]
  assert scores['place_accuracy'] == [0.5, 0.5, 1.0]
  assert scores['digit_accuracy'] == pytest.approx(3 / 5) and scores['eos_accuracy'] == 1.0


def test_tool_scores_each_length_and_says_which_it_cannot_encode(places_run, tmp_path):
  _, workdir = places_run  # Operands up to 12 digits, trained on 1×1.
  result = subprocess.run(
      [sys.executable, 'tools/length.py', workdir, '--lengths=1,2,13', '--count=6',
       f'--out={tmp_path}'], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  saved = json.load(open(tmp_path / 'length.json'))
  assert (saved['positions'], saved['max_digits'], saved['trained_digits']) == ('places', 12, 1)
  one, two, thirteen = saved['rows']
  assert (one['size'], one['count'], one['problems'], one['encodable']) == ('1x1', 6, 'random',
                                                                            True)
  assert two['problems'] == 'held-out' and two['longer_than_trained']
  assert len(two['place_accuracy']) == 4 and two['place_count'][0] == 6
  assert 0 <= two['exact_match'] <= 1 and 0 <= two['digit_accuracy'] <= 1
  assert not thirteen['encodable'] and 'exact_match' not in thirteen
  assert thirteen['reason'].startswith('cannot encode: operands of 13 digits')
  assert '| 13x13 (longer than trained) | - | cannot encode' in result.stdout
  with open(tmp_path / 'length.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  (best,) = [int(name) for name in os.listdir(os.path.join(workdir, 'best')) if name.isdigit()]
  assert saved['step'] == best and f'lengths of step {best} ' in result.stdout


def test_tool_scores_a_chosen_step_and_names_a_missing_one(places_run, tmp_path):
  _, workdir = places_run  # Saved steps 10 and 20.
  tool = lambda step: subprocess.run(
      [sys.executable, 'tools/length.py', workdir, '--lengths=1', '--count=4', f'--step={step}',
       f'--out={tmp_path}'], cwd=ROOT, capture_output=True, text=True)
  result = tool(10)
  assert result.returncode == 0, result.stderr
  assert json.load(open(tmp_path / 'length.json'))['step'] == 10
  result = tool(15)
  assert result.returncode == 1 and result.stderr.startswith('error: ') and 'no saved step 15' \
      in result.stderr


def test_a_bad_workdir_is_one_error_line(tmp_path):
  for workdir in (str(tmp_path / 'missing'), str(tmp_path)):
    result = subprocess.run([sys.executable, 'tools/length.py', workdir, '--lengths=1'],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith('error: ')
    assert len(result.stderr.splitlines()) == 1, result.stderr
  assert not os.listdir(tmp_path)  # Nothing was written, there or in runs/.
  assert not os.path.exists(os.path.join(ROOT, 'runs', f'{tmp_path.name}-outputs'))
