"""The causal Transformer baseline: KV-cache decoding equals the full pass; causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mult
from ttm_jax import data
from ttm_jax.curriculum import Curriculum
from ttm_jax import factory
from ttm_jax.baseline import CausalTransformer


def _model():
  model = CausalTransformer(hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, max_len=16)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 9), 0, 13)
  return model, tokens, model.init(jax.random.PRNGKey(1), tokens)


def test_cached_decoding_equals_the_full_pass():
  model, tokens, params = _model()
  full = model.apply(params, tokens)
  cache = model.apply(params, 2, 12, method=model.init_cache)
  step = jax.jit(lambda c, t, p: model.apply(params, c, t, p, method=model.decode_step))
  for position in range(tokens.shape[1]):
    cache, logits = step(cache, tokens[:, position], position)
    np.testing.assert_allclose(logits, full[:, position], atol=1e-5)


def test_causal():
  model, tokens, params = _model()
  changed = tokens.at[:, 6].set((tokens[:, 6] + 1) % 13)
  a, b = model.apply(params, tokens), model.apply(params, changed)
  np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
  assert not np.allclose(a[:, 6:], b[:, 6:])


def _multiplication_transformer():
  config = mult.get_config('runlocal')
  config.model.kind, config.task.framing, config.task.layout = 'transformer', 'stream', 'packed'
  model, framing = factory.make_model(config), factory.make_framing(config)
  batch = data.MultiplicationDataset(4, 0, Curriculum(stage=2), framing).generate_batch()
  inputs = jnp.asarray(batch['inputs'])
  return model, inputs, model.init(jax.random.PRNGKey(0), inputs)['params']


def test_multiplication_transformer_streams_like_its_full_pass():
  # Its key/value cache is the streaming "memory", so the TTM's streaming code runs it.
  model, inputs, params = _multiplication_transformer()
  full = model.apply({'params': params}, inputs, train=True)
  memory = model.apply({'params': params}, 4, method=model.initial_memory)
  step = jax.jit(lambda m, tokens, t: model.apply({'params': params}, m, tokens, t,
                                                  method=model.step))
  for t in range(inputs.shape[1]):
    memory, logits = step(memory, inputs[:, t], jnp.full(4, t))
    np.testing.assert_allclose(logits, full[:, t], atol=1e-5)
  assert full.shape == inputs.shape[:2] + (13,)
  # Each step wrote its own cache position and nothing beyond.
  layers, length = 1, model.max_len
  cache = memory.reshape(4, 2, layers, length, -1)
  assert np.all(np.abs(cache[:, :, :, :inputs.shape[1]]).max(-1) > 0)
  assert np.all(cache[:, :, :, inputs.shape[1]:] == 0)


def test_multiplication_transformer_needs_the_stream_framing():
  config = mult.get_config('runlocal')
  config.model.kind = 'transformer'
  with pytest.raises(factory.ConfigError, match="framing='stream'"):
    factory.make_model(config)
