"""Held-out evaluation: which problems each `--mode=eval` row scores, and the table."""

import jax
import numpy as np
import pytest

from configs import mult
from ttm_jax import data
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax.curriculum import Curriculum


def _rows(sizes, count=2000, seed=0):
  rng = np.random.default_rng(seed)
  return {evaluate.row_name(*r): evaluate.evaluation_problems(rng, *r, count)
          for r in evaluate.parse_sizes(sizes)}


def test_every_evaluated_pair_from_2x2_up_is_held_out():
  rows = _rows('2x2,3x2,3x3,4x4,1-9999,5x5,2x3')
  for name, (a, b, which) in rows.items():
    assert data.held_out_mask(a, b).all(), name
    assert which == ('held-out (all)' if name == '2x2' else 'held-out')
  a, b, _ = rows['2x2']  # Scored whole: every held-out 2x2 pair, once.
  everything = [(x, y) for x in range(10, 100) for y in range(10, 100) if data.is_held_out(x, y)]
  assert sorted(zip(a.tolist(), b.tolist())) == everything
  for name in ('3x2', '3x3', '4x4', '5x5', '1-9999'):
    a, b, _ = rows[name]
    assert len(a) == 2000 and len(set(zip(a.tolist(), b.tolist()))) == 2000
  a, b, _ = rows['3x2']
  assert {len(str(x)) for x in a.tolist()} == {3} and {len(str(x)) for x in b.tolist()} == {2}


def test_sizes_too_small_to_hold_out_score_every_problem():
  rows = _rows('1x1,2x1')
  a, b, which = rows['1x1']
  assert which == 'all' and len(a) == 81 and sorted(set(zip(a.tolist(), b.tolist()))) == [
      (x, y) for x in range(1, 10) for y in range(1, 10)]
  a, b, which = rows['2x1']
  assert which == 'all' and len(a) == 810 and b.max() == 9 and a.min() == 10


def test_held_out_problems_are_never_training_problems():
  a, b, _ = _rows('3x3')['3x3']
  ds = data.MultiplicationDataset(4096, 0, Curriculum(stage=3))
  trained = set()
  for _ in range(50):
    x, y, _ = ds.draw_operands()
    trained |= {frozenset(p) for p in zip(x.tolist(), y.tolist())}
  assert not trained & {frozenset(p) for p in zip(a.tolist(), b.tolist())}


@pytest.mark.parametrize('sizes', ['1x1x1', '0x1', '2-1', 'x', '3', '0-9'])
def test_bad_sizes_are_config_errors(sizes):
  with pytest.raises(factory.ConfigError, match='config.eval.sizes'):
    evaluate.parse_sizes(sizes)


def test_table_says_what_was_scored_and_marks_the_length_test():
  rows = [{'size': '2x2', 'count': 405, 'problems': 'held-out (all)', 'exact_match': 1.0,
           'position_accuracy': 1.0, 'longer_than_trained': False},
          {'size': '5x5', 'count': 2000, 'problems': 'held-out', 'exact_match': 0.0,
           'position_accuracy': 0.25, 'longer_than_trained': True}]
  table = evaluate.format_table(rows).splitlines()
  assert table[0].startswith('held-out evaluation:')
  assert table[2].split() == ['2x2', '405', 'held-out', '(all)', '100.00%', '100.00%']
  assert table[3].split() == ['5x5', '2000', 'held-out,', 'longer', '0.00%', '25.00%']
  assert table[-1].startswith('"longer"')


@pytest.mark.parametrize('framing, expected', [('stream', 2), ('problem', 1)])
def test_tracked_rows_are_decoded_at_the_trained_length(framing, expected, monkeypatch):
  """A stream-framing 1×1 row tracked while the model trains on 2 digits is padded to 2
  (`Framing.encoding_digits`), as training pads it; in the problem framing it keeps 1."""
  config = mult.get_config('runlocal')
  config.task.framing, config.task.layout = framing, 'packed'
  config.eval.track, config.eval.num_examples = '1x1', 4
  model, framing_lib = factory.make_model(config), factory.make_framing(config)
  inputs = framing_lib.encode(np.array([1]), np.array([1]), 1)['inputs']
  params = model.init(jax.random.PRNGKey(0), inputs)['params']
  lengths = []
  decode = evaluate.decode_problems

  def spy(model, params, framing, a, b, digits, batch_size):
    lengths.append(digits)
    return decode(model, params, framing, a, b, digits, batch_size)

  monkeypatch.setattr(evaluate, 'decode_problems', spy)
  assert set(evaluate.track_sizes(model, params, framing_lib, config, trained_digits=2)) == {
      'track/1x1'}
  assert lengths == [expected]


def test_eval_rows_of_a_places_model_go_past_the_trained_length(places_run, tmp_path, capsys):
  config, workdir = places_run  # Trained on 1×1; config.eval.sizes '1x1,2x2,6x6'.
  rows = evaluate.run_eval(config, workdir, out=str(tmp_path))
  assert [(r['size'], r['longer_than_trained']) for r in rows] == [
      ('1x1', False), ('2x2', True), ('6x6', True)]
  assert rows[2]['count'] == 10 and 0 <= rows[2]['position_accuracy'] <= 1
  assert '6x6' in capsys.readouterr().out and (tmp_path / 'eval.json').exists()
