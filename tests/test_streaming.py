"""Streaming inference: state pytree, reset, greedy decoding, save/restore mid-stream."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import mult
from ttm_jax import factory
from ttm_jax import streaming
from ttm_jax import tokens as tok


@pytest.fixture(scope='module')
def setup():
  config = mult.get_config('runlocal')
  model = factory.make_model(config)
  framing = factory.make_framing(config)
  batch = framing.encode(np.array([12, 7, 99, 5]), np.array([34, 8, 99, 1]), 2)
  params = model.init(jax.random.PRNGKey(0), batch['inputs'])['params']
  return model, framing, batch, params


def test_state_equals_scanned_encoder_after_s_steps(setup):
  model, _, batch, params = setup
  state = streaming.init_state(model, params, 4)
  for t in range(batch['inputs'].shape[1]):
    state, _ = streaming.step(model, params, state, jnp.asarray(batch['inputs'][:, t]))

  def scanned(module, inputs):
    x = module.embed(inputs, jnp.arange(inputs.shape[1])[None, :])
    return module.encoder.scan_steps(module.initial_memory(inputs.shape[0]), x)[0]

  final = model.apply({'params': params}, jnp.asarray(batch['inputs']), method=scanned)
  np.testing.assert_allclose(state['memory'], final, atol=1e-5)
  np.testing.assert_array_equal(state['step'], [batch['inputs'].shape[1]] * 4)


def test_greedy_decode_equals_a_python_loop_of_steps(setup):
  model, framing, batch, params = setup
  predictions, _ = streaming.greedy_decode(model, params, jnp.asarray(batch['inputs']), 0)
  state = streaming.init_state(model, params, 4)
  previous = jnp.full((4,), tok.PAD_TOKEN, jnp.int32)
  expected = []
  for t in range(batch['inputs'].shape[1]):
    tokens = jnp.asarray(batch['inputs'][:, t])
    if t > 0:
      tokens = tokens.at[:, -1].set(previous)
    state, logits = streaming.step(model, params, state, tokens)
    previous = jnp.argmax(logits, -1).astype(jnp.int32)
    expected.append(previous)
  np.testing.assert_array_equal(predictions, jnp.stack(expected, 1))


def test_greedy_decode_equals_teacher_forcing_when_fed_its_own_predictions(setup):
  model, framing, batch, params = setup
  predictions, _ = streaming.greedy_decode(model, params, jnp.asarray(batch['inputs']), 0)
  fed = np.array(batch['inputs'])
  fed[:, 1:, -1] = np.asarray(predictions)[:, :-1]
  teacher_forced = model.apply({'params': params}, jnp.asarray(fed))
  np.testing.assert_array_equal(jnp.argmax(teacher_forced, -1), predictions)


def test_decoding_stops_at_eos(setup):
  model, _, batch, params = setup
  forced = jax.tree_util.tree_map(lambda x: x, params)
  forced['head']['eos_head']['bias'] = params['head']['eos_head']['bias'] + 50.0
  predictions, logits = streaming.greedy_decode(model, forced, jnp.asarray(batch['inputs']), 0)
  assert np.all(np.asarray(predictions) == tok.EOS_TOKEN)
  assert np.all(np.asarray(logits)[:, 1:, :10] < -500)


def test_reset_leaves_other_sessions_unchanged(setup):
  model, _, batch, params = setup
  state = streaming.init_state(model, params, 4)
  for t in range(3):
    state, _ = streaming.step(model, params, state, jnp.asarray(batch['inputs'][:, t]))
  reset = streaming.reset(model, params, state, jnp.array([False, True, False, False]))
  fresh = streaming.init_state(model, params, 4)
  for key in state:
    np.testing.assert_array_equal(reset[key][1], fresh[key][1])
    for i in (0, 2, 3):
      np.testing.assert_array_equal(reset[key][i], state[key][i])


def test_state_saved_with_orbax_continues_identically(setup, tmp_path):
  model, _, batch, params = setup
  inputs = jnp.asarray(batch['inputs'])
  state = streaming.init_state(model, params, 4)
  for t in range(2):
    state, _ = streaming.step(model, params, state, inputs[:, t])
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / 'state', state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / 'state', state)
  outputs = {}
  for name, s in (('original', state), ('restored', restored)):
    logits = []
    for t in range(2, inputs.shape[1]):
      s, step_logits = streaming.step(model, params, s, inputs[:, t])
      logits.append(step_logits)
    outputs[name] = jnp.stack(logits)
  np.testing.assert_array_equal(outputs['original'], outputs['restored'])


def test_steps_do_not_recompile(setup):
  model, _, batch, params = setup
  state = streaming.init_state(model, params, 4)
  tokens = jnp.asarray(batch['inputs'][:, 0])
  state, _ = streaming.step(model, params, state, tokens)
  compiled = streaming.step._cache_size()
  for _ in range(30):
    state, _ = streaming.step(model, params, state, tokens)
  assert streaming.step._cache_size() == compiled
  assert int(state['step'][0]) == 31
