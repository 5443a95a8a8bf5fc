"""Processing units (checklist Phase 5)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import processing


@pytest.mark.parametrize('kind', processing.PROCESSING_UNITS)
@pytest.mark.parametrize('train', [False, True])
def test_units_keep_shape(kind, train):
  unit = processing.make_processing_unit(kind, num_layers=2, num_heads=4, mlp_dim=512,
                                         dropout_rate=0.1)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 128))
  params = unit.init(jax.random.PRNGKey(1), x)
  out = unit.apply(params, x, train, rngs={'dropout': jax.random.PRNGKey(2)})
  assert out.shape == (2, 16, 128)
  # Every unit ends in LayerNorm: zero mean, unit variance per token (scale 1, bias 0 at init).
  np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-4)


def test_transformer_stack_sizes():
  unit = processing.TransformerEncoder(num_layers=4, num_heads=4, mlp_dim=512)
  params = unit.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 128)))['params']
  assert sorted(k for k in params if k.startswith('block_')) == [f'block_{i}' for i in range(4)]
  assert params['block_0']['mlp']['hidden']['kernel'].shape == (128, 512)
  assert params['block_0']['attention']['query']['kernel'].shape == (128, 4, 32)


def test_attention_is_scaled_by_inverse_sqrt_head_dim():
  block = processing.TransformerBlock(num_heads=4, mlp_dim=64)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 32))
  params = block.init(jax.random.PRNGKey(1), x)
  _, state = block.apply(params, x, mutable=['intermediates'])
  (weights,) = state['intermediates']['attention']['attention_weights']
  p = params['params']
  y = nn.LayerNorm().apply({'params': p['attention_norm']}, x)
  q = jnp.einsum('btd,dhk->bthk', y, p['attention']['query']['kernel']) + \
      p['attention']['query']['bias']
  k = jnp.einsum('btd,dhk->bthk', y, p['attention']['key']['kernel']) + \
      p['attention']['key']['bias']
  logits = jnp.einsum('bqhk,bshk->bhqs', q, k) / jnp.sqrt(32 / 4)
  np.testing.assert_allclose(weights, jax.nn.softmax(logits, -1), rtol=1e-4, atol=1e-6)


def test_feed_forward_is_per_token():
  ff = processing.FeedForward(hidden_dim=32, out_dim=8)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 16))
  params = ff.init(jax.random.PRNGKey(1), x)
  out = ff.apply(params, x)
  assert out.shape == (3, 5, 8)
  p = params['params']
  hidden = nn.gelu(x @ p['hidden']['kernel'] + p['hidden']['bias'])
  np.testing.assert_allclose(out, hidden @ p['out']['kernel'] + p['out']['bias'], atol=1e-5)
  # Each token on its own gives the same result: tokens do not mix.
  np.testing.assert_allclose(out[1, 2], ff.apply(params, x[1, 2][None])[0], atol=1e-5)


def test_pre_norm_residual():
  block = processing.TransformerBlock(num_heads=2, mlp_dim=16)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 8))
  params = block.init(jax.random.PRNGKey(1), x)
  zeroed = jax.tree_util.tree_map(jnp.zeros_like, params)
  # With every weight zero, both sub-layers add nothing: the residual path returns x.
  np.testing.assert_allclose(block.apply(zeroed, x), x, atol=1e-6)


def test_unknown_unit():
  with pytest.raises(ValueError, match='unknown processing unit'):
    processing.make_processing_unit('rnn', 1, 1, 1, 0.0)
