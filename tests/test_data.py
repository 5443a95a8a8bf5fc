"""Curriculum data, framings and augmentation (checklist Phase 2)."""

import zlib

import numpy as np
import pytest

from ttm_jax import data
from ttm_jax.curriculum import Curriculum
from ttm_jax import tokens as tok


def test_stages():
  assert data.STAGES == (
      (1, 9), (10, 99), (100, 999), (1000, 9999), (1, 99), (1, 999), (1, 9999))


def _decode_targets(framing, batch, digits):
  start = framing.answer_start(digits)
  return [framing.answer_to_number(t[start:]) for t in batch['targets']]


@pytest.mark.parametrize('framing_name', data.FRAMINGS)
@pytest.mark.parametrize('order', data.DIGIT_ORDERS)
@pytest.mark.parametrize('stage', [1, 3, 7])
def test_batches_hold_true_products(framing_name, order, stage):
  framing = data.Framing(max_digits=4, framing=framing_name, digit_order=order)
  ds = data.MultiplicationDataset(16, 3, Curriculum(stage=stage), framing)
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


def test_a_short_stream_problem_is_encoded_as_training_batches_hold_it():
  framing = data.Framing(max_digits=4, framing='stream')
  dataset = data.MultiplicationDataset(256, 0, Curriculum((1, 5), stage=5), framing)
  a, b, digits = dataset.draw_operands()
  batch = framing.encode(a, b, digits)
  i = int(np.flatnonzero((a < 10) & (b < 10))[0])  # A 1×1 pair in a 1-99 batch.
  alone = framing.encode(a[i:i + 1], b[i:i + 1], framing.encoding_digits(1, trained_digits=2))
  np.testing.assert_array_equal(alone['inputs'][0], batch['inputs'][i])
  np.testing.assert_array_equal(alone['targets'][0], batch['targets'][i])
  assert framing.encoding_digits(3, trained_digits=2) == 3  # Longer: its own length.
  assert data.Framing(max_digits=4).encoding_digits(1, trained_digits=2) == 1  # Problem framing.


def test_example_pair_from_checklist():
  framing = data.Framing(max_digits=4, digit_order='msb')
  batch = framing.encode(np.array([5]), np.array([7]), 1)
  assert tok.tokens_to_string(batch['inputs'][0, 0, :4]) == '5×7<EOS>'
  assert tok.tokens_to_string(batch['targets'][0]) == '35<EOS>'


def test_generate_batch_is_deterministic_per_seed():
  a = data.MultiplicationDataset(8, 1, Curriculum()).generate_batch()
  b = data.MultiplicationDataset(8, 1, Curriculum()).generate_batch()
  c = data.MultiplicationDataset(8, 2, Curriculum()).generate_batch()
  np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert not np.array_equal(a['a'], c['a'])


def test_augment_swaps_and_permutes_consistently():
  ds = data.MultiplicationDataset(64, 0, Curriculum(stage=3))
  a = np.arange(100, 164)
  b = np.full(64, 999)
  out_a, out_b = ds.augment_operands(a, b)
  pairs = set(zip(out_a.tolist(), out_b.tolist()))
  assert {frozenset(p) for p in pairs} == {frozenset(p) for p in zip(a.tolist(), b.tolist())}
  assert 0 < int(np.sum(out_a == 999)) < 64  # Some swapped, some not.
  assert not np.all(np.diff(out_a) >= 0)  # Permuted (the input was sorted).


def test_held_out_rule_matches_the_formula_on_fixed_pairs():
  # crc32 values computed independently of data.py (zlib, the formula of DESIGN §2).
  for a, b in [(10, 10), (12, 34), (34, 12), (99, 100), (123, 4567), (9999, 9999), (45, 678)]:
    key = f'{min(a, b)}x{max(a, b)}'.encode()
    assert data.is_held_out(a, b) == (zlib.crc32(key) % 10 == 0)
  # Fixed examples, both ways round (found once by scanning the rule; they pin it).
  held = [(a, b) for a in range(10, 40) for b in range(a, 40)
          if zlib.crc32(f'{a}x{b}'.encode()) % 10 == 0]
  assert len(held) > 20
  for a, b in held:
    assert data.is_held_out(a, b) and data.is_held_out(b, a)
  assert not data.is_held_out(5, 12345) and not data.is_held_out(9, 9)  # An operand < 10.
  assert sum(data.is_held_out(a, b) for a in range(10, 100) for b in range(10, 100)) / 8100 \
      == pytest.approx(0.1, abs=0.02)


def test_a_million_training_draws_hold_no_held_out_pair():
  order = (1, 2, 5, 3, 6, 4, 7)
  total = 0
  for stage in order:  # 7 stages x 35 batches x 4096 = 1.0M problems, review and swap included.
    ds = data.MultiplicationDataset(4096, stage, Curriculum(order, review=0.3, stage=stage))
    for _ in range(35):
      a, b, _ = ds.draw_operands()
      assert not data.held_out_mask(a, b).any()
      total += len(a)
  assert total >= 1_000_000
  batch = data.MultiplicationDataset(512, 0, Curriculum(order, stage=7)).generate_batch()
  assert not data.held_out_mask(batch['a'], batch['b']).any()


def test_without_held_out_keeps_the_range_and_the_rest_of_the_draw():
  rng = np.random.default_rng(0)
  a = rng.integers(10, 100, 5000)
  b = rng.integers(10, 100, 5000)
  held = data.held_out_mask(a, b)
  assert held.any()
  new_a, new_b = data.without_held_out(rng, a, b, 10, 99)
  assert not data.held_out_mask(new_a, new_b).any()
  np.testing.assert_array_equal(new_a[~held], a[~held])  # Only held-out pairs redrawn.
  assert new_a.min() >= 10 and new_a.max() <= 99 and new_b.min() >= 10 and new_b.max() <= 99


def test_held_out_like_keeps_digit_lengths_and_small_pairs():
  rng = np.random.default_rng(0)
  a = rng.integers(1, 10000, 3000)
  b = rng.integers(1, 100, 3000)
  new_a, new_b = data.held_out_like(rng, a, b)
  lengths = lambda x: [len(str(v)) for v in x.tolist()]
  assert lengths(new_a) == lengths(a) and lengths(new_b) == lengths(b)
  small = np.minimum(a, b) < 10
  np.testing.assert_array_equal(new_a[small], a[small])
  np.testing.assert_array_equal(new_b[small], b[small])
  assert data.held_out_mask(new_a, new_b)[~small].all()


def test_state_resumes_the_rng_exactly():
  ds = data.MultiplicationDataset(8, 5, Curriculum(stage=2))
  ds.generate_batch()
  state = ds.get_state()
  expected = ds.generate_batch()
  other = data.MultiplicationDataset(8, 99, Curriculum(stage=2))
  other.set_state(state)
  np.testing.assert_array_equal(other.generate_batch()['inputs'], expected['inputs'])


def test_the_dataset_draws_the_stage_the_curriculum_is_on():
  curriculum = Curriculum((1, 2, 5, 3), review=0.5)
  ds = data.MultiplicationDataset(512, 0, curriculum)
  assert set(ds.generate_batch()['a'].tolist()) <= set(range(1, 10))
  curriculum.stage = 3
  batch = ds.generate_batch()
  sizes = {(len(str(a)), len(str(b))) for a, b in zip(batch['a'], batch['b'])}
  assert (3, 3) in sizes and (1, 1) in sizes and (2, 2) in sizes
  assert (2, 1) in sizes or (1, 2) in sizes  # From stage 5 (1..99).
  assert not any(max(a, b) >= 1000 for a, b in zip(batch['a'], batch['b']))
  small = np.mean(batch['a'] < 100)
  assert 0.3 < small < 0.7
  assert _decode_targets(ds.framing, batch, 3) == list(batch['a'] * batch['b'])


def test_a_stage_beyond_the_framing_is_refused():
  with pytest.raises(ValueError, match='max_digits'):
    data.MultiplicationDataset(4, 0, Curriculum((1, 4)), data.Framing(max_digits=3))


def test_encode_rejects_too_long_operands():
  with pytest.raises(ValueError, match='5 digits'):
    data.Framing(max_digits=4).encode(np.array([12345]), np.array([1]), 4)


def test_size_ranges_read_digit_rows_and_operand_ranges():
  assert data.size_ranges('1x1,3x2,1-9999') == [
      (1, 9, 1, 9), (100, 999, 10, 99), (1, 9999, 1, 9999)]
  for bad in ('1x1x1', '0x1', '2x', '1x1,', '3'):
    with pytest.raises(ValueError, match='expected rows like'):
      data.size_ranges(bad)
  with pytest.raises(ValueError, match='runs from 99 down to 10'):
    data.size_ranges('99-10')


def test_longest_operand_counts_the_digits_of_the_largest():
  assert data.longest_operand(7, 123) == 3
  assert data.longest_operand(np.array([0, 99]), np.array([100])) == 3
  assert data.longest_operand(0) == 1  # Zero is written with one digit.


PLACES = data.Framing(max_digits=12, layout='aligned', positions='places', place_offset=6)


@pytest.mark.parametrize('order', ['lsb', 'msb'])
def test_places_writes_a_problem_at_the_batch_length(order):
  framing = data.Framing(12, 'problem', order, 'aligned', 'places')
  batch = framing.encode(np.array([12]), np.array([345]), 3)
  P, X, E = tok.PAD_TOKEN, tok.TIMES_TOKEN, tok.EOS_TOKEN
  problem = [2, 1, P, X, 5, 4, 3, E] if order == 'lsb' else [P, 1, 2, X, 3, 4, 5, E]
  assert batch['inputs'].shape == (1, 7, 2 * 3 + 3) and framing.step_tokens(3) == 9
  np.testing.assert_array_equal(batch['inputs'][0, 0], problem + [P])
  np.testing.assert_array_equal(batch['offsets'], [0])  # Evaluation: no offset.
  longer = framing.encode(np.array([12]), np.array([345]), 5)['inputs']
  assert longer.shape == (1, 11, 13)  # The same problem, with more padding and steps.
  assert data.Framing().step_tokens(7) == data.Framing().tokens_per_step  # 'slots': fixed.


def test_places_needs_the_aligned_problem_framing_and_offsets_need_places():
  with pytest.raises(ValueError, match="needs the 'aligned' layout"):
    data.Framing(positions='places')
  with pytest.raises(ValueError, match='place_offset'):
    data.Framing(layout='aligned', place_offset=2)
  with pytest.raises(ValueError, match="for positions 'places' only"):
    data.Framing().encode(np.array([1]), np.array([2]), 1, offsets=np.array([1]))


def test_place_offsets_come_from_the_dataset_rng_and_resume_exactly():
  ds = data.MultiplicationDataset(256, 3, Curriculum(stage=2), PLACES)
  batch = ds.generate_batch()
  assert batch['offsets'].dtype == np.int32 and set(batch['offsets'].tolist()) == set(range(7))
  state = ds.get_state()
  expected = ds.generate_batch()
  other = data.MultiplicationDataset(256, 99, Curriculum(stage=2), PLACES)
  other.set_state(state)
  resumed = other.generate_batch()
  for key in ('inputs', 'offsets'):
    np.testing.assert_array_equal(resumed[key], expected[key])
  # The offsets are drawn after a batch's operands: the operands are those of a run without
  # them, and a 'slots' run draws exactly what it drew before 'places' existed.
  no_offsets = data.MultiplicationDataset(
      256, 3, Curriculum(stage=2), data.Framing(12, layout='aligned', positions='places'))
  assert no_offsets.draw_offsets() is None
  slots = data.MultiplicationDataset(256, 3, Curriculum(stage=2), data.Framing(4))
  first = slots.generate_batch()
  np.testing.assert_array_equal(first['a'], no_offsets.generate_batch()['a'])
  np.testing.assert_array_equal(first['a'], batch['a'])
  assert 'offsets' not in first
