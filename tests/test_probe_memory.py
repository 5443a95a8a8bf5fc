"""tools/probe_memory.py and `streaming.decode_with_memory_reset`: the memory knock-out probe."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mult
from tools import probe_memory
from ttm_jax import checkpoint as ckpt
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import losses
from ttm_jax import streaming
from ttm_jax import tokens as tok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


@pytest.fixture(scope='module')
def tiny():
  """`(model, params, inputs [4, 5, n])`: the runlocal model at its random init, 2x2 problems."""
  config = mult.get_config('runlocal')
  model, framing = factory.make_model(config), factory.make_framing(config)
  inputs = framing.encode(np.array([12, 7, 99, 5]), np.array([34, 8, 99, 1]), 2)['inputs']
  params = model.init(jax.random.PRNGKey(0), inputs)['params']
  return model, params, jnp.asarray(inputs)


def reset_before(inputs, step):
  """The mask `[B, S]` that resets every session before `step` (none where `step` is None)."""
  mask = np.zeros(inputs.shape[:2], bool)
  if step is not None:
    mask[:, step] = True
  return jnp.asarray(mask)


def test_no_reset_and_a_reset_before_the_first_step_equal_the_plain_decode(tiny):
  model, params, inputs = tiny
  plain_predictions, plain_logits = streaming.greedy_decode(model, params, inputs, 0)
  for step in (None, 0):
    predictions, logits = streaming.decode_with_memory_reset(model, params, inputs, 0,
                                                             reset_before(inputs, step))
    np.testing.assert_array_equal(predictions, plain_predictions)
    np.testing.assert_allclose(logits, plain_logits, rtol=0, atol=1e-6)


def test_a_reset_mid_sequence_changes_the_logits_from_that_step_on(tiny):
  model, params, inputs = tiny
  _, plain = streaming.greedy_decode(model, params, inputs, 0)
  _, reset = streaming.decode_with_memory_reset(model, params, inputs, 0,
                                                reset_before(inputs, 2))
  np.testing.assert_allclose(reset[:, :2], plain[:, :2], rtol=0, atol=1e-6)
  assert np.abs(np.asarray(reset[:, 2]) - np.asarray(plain[:, 2])).max(-1).min() > 1e-3


def test_one_compiled_program_serves_every_reset_step(tiny):
  model, params, inputs = tiny
  streaming.decode_with_memory_reset(model, params, inputs, 0, reset_before(inputs, 0))
  compiled = streaming.decode_with_memory_reset._cache_size()
  for step in range(1, inputs.shape[1]):
    streaming.decode_with_memory_reset(model, params, inputs, 0, reset_before(inputs, step))
  assert streaming.decode_with_memory_reset._cache_size() == compiled


@pytest.fixture(scope='module')
def shipped():
  """`(model, params, framing, a, b)`: the shipped model and 64 held-out 2x2 problems."""
  model, params, config, _ = ckpt.load_for_inference(SHIPPED)
  a, b, _ = evaluate.evaluation_problems(np.random.default_rng(0), 10, 99, 10, 99, 64)
  return model, params, factory.make_framing(config), a, b


def test_a_reset_after_the_answer_changes_nothing(shipped):
  """A session whose EOS was predicted before the reset stays done: its decode is unchanged,
  while the sessions still answering do change (on 3-digit vs 4-digit products)."""
  model, params, framing, a, b = shipped
  inputs = jnp.asarray(framing.encode(a, b, 2)['inputs'])
  plain, _ = streaming.greedy_decode(model, params, inputs, 0)
  plain = np.asarray(plain)
  first_eos = losses.find_eos_positions(plain)  # Shape: [N].
  assert {3, 4} <= set(first_eos.tolist())
  for step in range(1, inputs.shape[1]):
    reset, _ = streaming.decode_with_memory_reset(model, params, inputs, 0,
                                                  reset_before(inputs, step))
    reset = np.asarray(reset)
    answered = first_eos < step
    np.testing.assert_array_equal(reset[answered], plain[answered])
    if step < 4:  # (Before step 4, the 4-digit products' EOS step, the reset has its effect.)
      assert np.any(reset[~answered] != plain[~answered])


def test_score_counts_digits_and_eos_per_answer_position():
  eos, pad = tok.EOS_TOKEN, tok.PAD_TOKEN
  targets = np.array([[1, 2, 3, eos], [4, 5, eos, pad]])
  predictions = np.array([[1, 2, 0, eos], [4, 5, eos, eos]])
  scored = probe_memory.score(predictions, targets)
  assert scored['exact_match'] == 0.5
  assert scored['position_accuracy'] == [1.0, 1.0, 0.0, 1.0]
  assert scored['position_count'] == [2, 2, 1, 2]


def test_the_probe_of_the_shipped_model(tmp_path, capsys):
  out = tmp_path / 'probe.json'
  assert probe_memory.main([f'--workdir={SHIPPED}', '--size=2x2', '--count=40',
                            f'--json={out}']) == 0
  result = json.loads(out.read_text())
  rows = {row['reset_before_step']: row for row in result['rows']}
  assert list(rows) == [0, 1, 2, 3, 4, None]
  assert result['count'] == 40 and result['positions'] == ['d1', 'd2', 'd3', 'd4', 'EOS']
  same = lambda row: {k: v for k, v in row.items() if k != 'reset_before_step'}
  assert same(rows[0]) == same(rows[None]) and rows[None]['exact_match'] >= 0.9
  assert rows[1]['position_accuracy'][0] == rows[None]['position_accuracy'][0]
  # Issue 34: what the probe is for. The shipped model keeps the problem in its memory: a reset
  # at any step before the answer ends wrecks the answer (exact match 100% -> at most 20%), and
  # the digit at the step of the reset is the first to go wrong (the ones before it stay
  # right; the memory-less first digit is untouched).
  for step in (1, 2, 3, 4):
    assert rows[step]['exact_match'] <= 0.2, (step, rows[step])
    accuracy = rows[step]['position_accuracy']
    assert accuracy[:step] == [1.0] * step and accuracy[step] <= 0.5, (step, accuracy)
  printed = capsys.readouterr().out
  assert '      step 0' in printed and '        none' in printed


@pytest.mark.parametrize('argv, message', [
    (['--size=3y3'], "--size='3y3': '3y3': expected rows like"),
    (['--size=2x2,3x3'], 'give one size'),
    (['--size=6x6'], 'operands of 6 digits'),
    (['--count=0'], 'decode at least 1 problem'),
    (['--json=/proc/none/probe.json'], '/proc/none: No such file or directory'),  # Before work.
])
def test_bad_arguments_give_one_error_line(argv, message):
  with pytest.raises(SystemExit) as raised:
    probe_memory.main([f'--workdir={SHIPPED}', *argv])
  text = str(raised.value.code)
  assert text.startswith('error: ') and message in text and '\n' not in text


def test_a_workdir_without_a_checkpoint_gives_one_error_line(tmp_path):
  for workdir in (tmp_path, tmp_path / 'with_config'):
    if workdir != tmp_path:
      ckpt.write_config(str(workdir), mult.get_config())
    with pytest.raises(SystemExit) as raised:
      probe_memory.main([f'--workdir={workdir}', '--size=2x2'])
    text = str(raised.value.code)
    assert text.startswith('error: ') and str(workdir) in text and '\n' not in text
