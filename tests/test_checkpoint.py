"""The shipped checkpoint (checkpoints/mult): it loads with the default config and multiplies."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import evaluate
from ttm_jax import factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


@pytest.fixture(scope='module')
def shipped():
  """`(model, params, config, eval rows recorded when it was shipped)`."""
  config = mult.get_config()
  params, _ = ckpt.load_params(SHIPPED, config)  # Raises if it does not match the default.
  with open(os.path.join(SHIPPED, 'eval.json')) as f:
    recorded = {row['size']: row for row in json.load(f)['rows']}
  return factory.make_model(config), params, config, recorded


def test_shipped_checkpoint_is_small_and_has_no_optimizer_state():
  files = [os.path.join(root, name) for root, _, names in os.walk(SHIPPED) for name in names]
  assert sum(os.path.getsize(f) for f in files) < 20 * 2**20
  (step,) = os.listdir(os.path.join(SHIPPED, 'best'))
  items = set(os.listdir(os.path.join(SHIPPED, 'best', step)))
  assert {'meta', 'params'} <= items and 'train' not in items


def test_every_one_digit_product(shipped):
  model, params, config, recorded = shipped
  assert recorded['1x1']['exact_match'] == 1.0
  a, b = np.meshgrid(np.arange(1, 10), np.arange(1, 10))
  lines = [f'{x}×{y}' for x, y in zip(a.ravel(), b.ravel())]
  assert evaluate.predict_lines(model, params, config, lines) == [
      str(x * y) for x, y in zip(a.ravel(), b.ravel())]


@pytest.mark.parametrize('size', ['2x1', '2x2'])
def test_fresh_products_as_often_as_the_recorded_table_says(shipped, size):
  # 100 problems the table never saw; the count right is binomial around the recorded rate,
  # so allow 4 standard deviations (and at least 3 problems).
  model, params, config, recorded = shipped
  da, db = (int(d) for d in size.split('x'))
  rng = np.random.default_rng(2026)
  a, b = data.sample_operands(rng, 100, *data.digit_range(da), *data.digit_range(db))
  answers = evaluate.predict_lines(model, params, config, [f'{x}*{y}' for x, y in zip(a, b)])
  right = sum(answer == str(x * y) for answer, x, y in zip(answers, a, b))
  rate = recorded[size]['exact_match']
  assert abs(right - 100 * rate) <= max(4 * np.sqrt(100 * rate * (1 - rate)), 3)


def test_predict_mode_on_the_shipped_checkpoint():
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/mult.py', f'--workdir={SHIPPED}',
       '--mode=predict'], input='7×8\n3*9\n12×\n', cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 1  # One malformed line.
  lines = result.stdout.splitlines()
  assert lines[:2] == ['56', '27'] and lines[2].startswith('error: ')


def test_checkpoints_from_before_a_field_existed_read_as_its_old_value(tmp_path):
  config = mult.get_config('runlocal')
  saved = ckpt.config_sections(config)
  del saved['model']['kind'], saved['model']['token_embed_stddev'], saved['task']['layout']
  with pytest.raises(ckpt.CheckpointError, match='token_embed_stddev: checkpoint 0.01'):
    ckpt.check_config_matches(saved, config, 'old')  # The default is 0.125 now.
  config.model.token_embed_stddev, config.task.layout = 0.01, 'packed'
  ckpt.check_config_matches(saved, config, 'old')
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  read = ckpt.read_config(str(tmp_path))
  assert (read.model.kind, read.model.token_embed_stddev, read.task.layout) == (
      'ttm', 0.01, 'packed')
