"""tools/ablate.py: a variant trains on the budget, is evaluated per size, and is reported."""

import json
import os

import pytest

from tools import ablate


@pytest.mark.slow  # About 25 s.
def test_transformer_variant_trains_evaluates_and_reports(tmp_path):
  workdir = str(tmp_path / 'transformer')
  result = ablate.run_variant('transformer', workdir, steps=10, arg='runlocal')
  assert result['steps'] == 10 and result['examples'] == 10 * 16
  assert [row['size'] for row in result['rows']] == [
      '1x1', '2x1', '2x2', '3x2', '3x3', '4x4', '5x5']
  assert all(0 <= row['exact_match'] <= 1 for row in result['rows'])
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  assert (config['model']['kind'], config['task']['framing']) == ('transformer', 'stream')
  other = dict(result, variant='TL', examples_per_second=123.0)
  out = str(tmp_path / 'report')
  ablate.report([result, other], out)
  table = open(out + '.md').read().splitlines()
  assert table[0].startswith('| variant | parameters | examples/s | 1x1 |')
  assert table[3].startswith('| TL |') and '| 123 |' in table[3]
  assert os.path.getsize(out + '.png') > 0
  assert json.load(open(out + '.json'))[1]['variant'] == 'TL'
