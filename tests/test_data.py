"""Curriculum data, framings and augmentation (checklist Phase 2)."""

import numpy as np
import pytest

from ttm_jax import data
from ttm_jax import tokens as tok


def test_stages():
  assert data.MultiplicationDataset.stages == (
      (1, 9), (10, 99), (100, 999), (1000, 9999), (1, 99), (1, 999), (1, 9999))


def _decode_targets(framing, batch, digits):
  start = framing.answer_start(digits)
  return [framing.answer_to_number(t[start:]) for t in batch['targets']]


@pytest.mark.parametrize('framing_name', data.FRAMINGS)
@pytest.mark.parametrize('order', data.DIGIT_ORDERS)
@pytest.mark.parametrize('stage', [1, 3, 7])
def test_batches_hold_true_products(framing_name, order, stage):
  framing = data.Framing(max_digits=4, framing=framing_name, digit_order=order)
  ds = data.MultiplicationDataset(batch_size=16, seed=3, stage=stage, framing=framing)
  batch = ds.generate_batch()
  digits = data.stage_digits(stage)
  steps = framing.num_steps(digits)
  assert batch['inputs'].shape == (16, steps, framing.tokens_per_step)
  assert batch['targets'].shape == (16, steps)
  low, high = data.STAGES[stage - 1]
  assert np.all((batch['a'] >= low) & (batch['a'] <= high))
  assert _decode_targets(framing, batch, digits) == list(batch['a'] * batch['b'])


def test_problem_framing_layout_lsb():
  framing = data.Framing(max_digits=4, framing='problem', digit_order='lsb')
  batch = framing.encode(np.array([12]), np.array([34]), 2)
  # 12×34 = 408: lsb-first answer 8 0 4 EOS, then PAD.
  assert batch['targets'][0].tolist() == [8, 0, 4, 11, 12]
  problem = [2, 1, 10, 4, 3, 11] + [12] * 4
  assert batch['inputs'][0, :, :10].tolist() == [problem] * 5
  # The last slot holds the previous answer token (teacher forcing).
  assert batch['inputs'][0, :, 10].tolist() == [12, 8, 0, 4, 12]


@pytest.mark.parametrize('order', data.DIGIT_ORDERS)
def test_aligned_layout_gives_each_place_value_a_fixed_slot(order):
  framing = data.Framing(max_digits=4, digit_order=order, layout='aligned')
  batch = framing.encode(np.array([12, 3]), np.array([4, 567]), 3)
  pad = 12
  if order == 'lsb':
    assert batch['inputs'][0, 0, :10].tolist() == [2, 1, pad, pad, 10, 4, pad, pad, pad, 11]
    assert batch['inputs'][1, 0, :10].tolist() == [3, pad, pad, pad, 10, 7, 6, 5, pad, 11]
  else:
    assert batch['inputs'][0, 0, :10].tolist() == [pad, pad, 1, 2, 10, pad, pad, pad, 4, 11]
  assert _decode_targets(framing, batch, 3) == [48, 1701]


def test_aligned_layout_is_for_the_problem_framing():
  with pytest.raises(ValueError, match='aligned'):
    data.Framing(framing='stream', layout='aligned')


def test_stream_framing_layout_msb():
  framing = data.Framing(max_digits=4, framing='stream', digit_order='msb')
  batch = framing.encode(np.array([5]), np.array([7]), 1)
  assert framing.answer_start(1) == 3
  assert batch['inputs'][0, :, 0].tolist() == [5, 10, 7, 11, 3, 5, 12]
  assert batch['targets'][0].tolist() == [12, 12, 12, 3, 5, 11, 12]


def test_example_pair_from_checklist():
  framing = data.Framing(max_digits=4, digit_order='msb')
  batch = framing.encode(np.array([5]), np.array([7]), 1)
  assert tok.tokens_to_string(batch['inputs'][0, 0, :4]) == '5×7<EOS>'
  assert tok.tokens_to_string(batch['targets'][0]) == '35<EOS>'


def test_generate_batch_is_deterministic_per_seed():
  a = data.MultiplicationDataset(8, seed=1).generate_batch()
  b = data.MultiplicationDataset(8, seed=1).generate_batch()
  c = data.MultiplicationDataset(8, seed=2).generate_batch()
  np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert not np.array_equal(a['a'], c['a'])


def test_augment_swaps_and_permutes_consistently():
  ds = data.MultiplicationDataset(64, seed=0, stage=3)
  framing = ds.framing
  a = np.arange(100, 164)
  b = np.full(64, 999)
  batch = framing.encode(a, b, 3)
  out = ds.augment_batch(batch)
  pairs = set(zip(out['a'].tolist(), out['b'].tolist()))
  assert {frozenset(p) for p in pairs} == {frozenset(p) for p in zip(a.tolist(), b.tolist())}
  assert 0 < int(np.sum(out['a'] == 999)) < 64  # Some swapped, some not.
  assert not np.all(np.diff(out['a']) >= 0)  # Permuted (the input was sorted).
  assert _decode_targets(framing, out, 3) == list(out['a'] * out['b'])


def test_difficulty_progression():
  ds = data.MultiplicationDataset(4)
  assert ds.current_stage == 1
  assert ds.increase_difficulty() and ds.current_stage == 2
  ds.current_stage = 7
  assert not ds.increase_difficulty() and ds.current_stage == 7
  should = data.MultiplicationDataset.should_increase_difficulty
  assert not should([0.95] * 4)
  assert should([0.1, 0.9, 0.9, 0.9, 0.9, 0.9])
  assert not should([0.9, 0.9, 0.9, 0.9, 0.89])
  assert should([0.8, 1.0, 0.9, 0.9, 0.9])  # Mean 0.9.


def test_state_resumes_the_rng_exactly():
  ds = data.MultiplicationDataset(8, seed=5, stage=2)
  ds.generate_batch()
  state = ds.get_state()
  expected = ds.generate_batch()
  other = data.MultiplicationDataset(8, seed=99)
  other.set_state(state)
  assert other.current_stage == 2
  np.testing.assert_array_equal(other.generate_batch()['inputs'], expected['inputs'])


def test_stage_order_promotes_and_reviews_in_that_order():
  ds = data.MultiplicationDataset(512, seed=0, stage=1, review=0.5, order=(1, 2, 5, 3))
  visited = [ds.current_stage]
  while ds.increase_difficulty():
    visited.append(ds.current_stage)
  assert visited == [1, 2, 5, 3]
  batch = ds.generate_batch()
  sizes = {(len(str(a)), len(str(b))) for a, b in zip(batch['a'], batch['b'])}
  assert (3, 3) in sizes and (1, 1) in sizes and (2, 2) in sizes
  assert (2, 1) in sizes or (1, 2) in sizes  # From stage 5 (1..99).
  assert not any(max(a, b) >= 1000 for a, b in zip(batch['a'], batch['b']))


@pytest.mark.parametrize('order, stage', [((1, 1, 2), 1), ((1, 8), 1), ((1, 2), 3), ((), 1)])
def test_bad_stage_order(order, stage):
  with pytest.raises(ValueError):
    data.MultiplicationDataset(4, stage=stage, order=order)


def test_review_mixes_earlier_stages():
  ds = data.MultiplicationDataset(256, seed=0, stage=3, review=0.5)
  batch = ds.generate_batch()
  small = np.mean(batch['a'] < 100)
  assert 0.3 < small < 0.7
  assert _decode_targets(ds.framing, batch, 3) == list(batch['a'] * batch['b'])


def test_encode_rejects_too_long_operands():
  with pytest.raises(ValueError, match='5 digits'):
    data.Framing(max_digits=4).encode(np.array([12345]), np.array([1]), 4)
