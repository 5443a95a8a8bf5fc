"""Tests for ttm_jax.dropout: 16-bit dropout masks from an unrolled threefry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from ttm_jax.dropout import Dropout, keep_mask, random_words


@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_keep_mask_keeps_one_minus_rate(rate):
  n = 200_001  # Odd: the last word gives one half only.
  mask = np.asarray(keep_mask(jax.random.PRNGKey(0), (n,), rate))
  assert mask.shape == (n,) and mask.dtype == bool
  sd = np.sqrt(rate * (1 - rate) / n)
  assert abs(mask.mean() - (1 - rate)) < 4 * sd
  # The two halves of a word are independent: both kept as often as (1 - rate)**2.
  pairs = mask[:n - 1].reshape(-1, 2)
  both = pairs.all(axis=1).mean()
  sd_both = np.sqrt((1 - rate) ** 2 * (1 - (1 - rate) ** 2) / len(pairs))
  assert abs(both - (1 - rate) ** 2) < 4 * sd_both


def test_keep_mask_depends_on_the_key_and_keeps_the_shape():
  a = keep_mask(jax.random.PRNGKey(1), (3, 5, 7), 0.5)
  b = keep_mask(jax.random.PRNGKey(2), (3, 5, 7), 0.5)
  assert a.shape == (3, 5, 7)
  assert not np.array_equal(a, b)


def test_dropout_scales_kept_elements_and_is_identity_outside_training():
  x = jnp.arange(1, 10_001, dtype=jnp.float32).reshape(100, 100)
  module = Dropout(0.25)
  np.testing.assert_array_equal(module.apply({}, x, train=False), x)
  y = np.asarray(module.apply({}, x, train=True, rngs={'dropout': jax.random.PRNGKey(3)}))
  kept = y != 0
  np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
  assert 0.7 < kept.mean() < 0.8
  # The expectation is unchanged: the mean of many masks of ones is 1.
  ones = jnp.ones((1000, 1000))
  mean = Dropout(0.25).apply({}, ones, train=True, rngs={'dropout': jax.random.PRNGKey(4)}).mean()
  assert abs(float(mean) - 1) < 4 * np.sqrt(0.25 / 0.75 / ones.size)


def test_dropout_gradient_is_the_scaled_mask():
  x = jnp.ones((64, 32))
  rngs = {'dropout': jax.random.PRNGKey(5)}
  grad = jax.grad(lambda x: Dropout(0.5).apply({}, x, train=True, rngs=rngs).sum())(x)
  mask = Dropout(0.5).apply({}, x, train=True, rngs=rngs) != 0
  np.testing.assert_array_equal(np.asarray(grad), np.where(mask, 2.0, 0.0))


def test_zero_rate_draws_nothing():
  x = jnp.ones((4, 4))
  # No 'dropout' RNG is given: a zero rate must not ask for one.
  np.testing.assert_array_equal(Dropout(0.0).apply({}, x, train=True), x)


@pytest.mark.parametrize('count', [1, 10, 1001])
def test_random_words_are_jax_threefry_of_the_counters(count):
  key = jax.random.PRNGKey(7)
  half = -(-count // 2)
  expected = threefry_2x32(jax.random.key_data(key), jnp.arange(2 * half, dtype=jnp.uint32))
  np.testing.assert_array_equal(random_words(key, count), expected[:count])
  typed = jax.random.key(7)  # New-style typed keys give the same words.
  np.testing.assert_array_equal(random_words(typed, count), expected[:count])
