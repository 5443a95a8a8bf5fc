"""Token summarization (checklist Phase 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import summarize


def test_normalize_weights_sum_to_one():
  logits = jax.random.normal(jax.random.PRNGKey(0), (10, 5))
  weights = summarize.normalize_weights(logits)
  assert weights.shape == (5, 10)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


def test_weighted_sum_matches_loop_and_vmaps():
  tokens = jax.random.normal(jax.random.PRNGKey(1), (3, 10, 8))
  weights = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (3, 5, 10)), -1)
  out = jax.jit(jax.vmap(summarize.weighted_sum))(tokens, weights)
  assert out.shape == (3, 5, 8)
  expected = np.einsum('bkn,bnd->bkd', weights, tokens)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('n, k', [(10, 5), (3, 8), (7, 7), (1, 4)])
def test_pooling_weights_rows_average_contiguous_groups(n, k):
  weights = summarize.pooling_weights(n, k)
  assert weights.shape == (k, n)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  assert (weights > 0).any(axis=0).all()  # Every token is used.
  for row in weights:
    used = np.flatnonzero(row)
    assert np.all(np.diff(used) == 1)


@pytest.mark.parametrize('kind', summarize.SUMMARIZERS)
def test_summarizers_reduce_any_count_to_k(kind):
  module = summarize.make_summarizer(kind, 5)
  for n in (10, 3):
    tokens = jax.random.normal(jax.random.PRNGKey(n), (2, n, 128))
    params = module.init(jax.random.PRNGKey(0), tokens)
    assert module.apply(params, tokens).shape == (2, 5, 128)


def test_token_learner_outputs_are_weighted_sums_of_inputs():
  module = summarize.TokenLearner(4)
  tokens = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 16))
  params = module.init(jax.random.PRNGKey(0), tokens)
  out, state = module.apply(params, tokens, mutable=['intermediates'])
  (weights,) = state['intermediates']['weights']
  assert weights.shape == (2, 4, 9)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out, jnp.einsum('bkn,bnd->bkd', weights, tokens), rtol=1e-5,
                             atol=1e-6)


def test_token_learner_dropout_only_in_train():
  module = summarize.TokenLearner(4, dropout_rate=0.5)
  tokens = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 16))
  params = module.init(jax.random.PRNGKey(0), tokens)
  eval_a = module.apply(params, tokens)
  eval_b = module.apply(params, tokens, train=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  trained = module.apply(params, tokens, train=True, rngs={'dropout': jax.random.PRNGKey(1)})
  assert not np.allclose(trained, eval_a)


def test_mha_queries_are_learned_parameters():
  module = summarize.TokenLearnerMHA(5, num_heads=4)
  params = module.init(jax.random.PRNGKey(0), jnp.ones((2, 10, 128)))['params']
  assert params['queries'].shape == (5, 128)
  assert 0.01 < float(jnp.std(params['queries'])) < 0.03


@pytest.mark.parametrize('kind', ['mlp', 'mha'])
def test_masked_tokens_get_no_weight(kind):
  module = summarize.make_summarizer(kind, 3)
  tokens = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 8))
  keep = np.array([True, True, False, True, False, True])
  params = module.init(jax.random.PRNGKey(1), tokens)
  masked = module.apply(params, tokens, False, jnp.broadcast_to(keep, (2, 6)))
  np.testing.assert_allclose(masked, module.apply(params, tokens[:, keep]), atol=1e-6)
  assert not np.allclose(masked, module.apply(params, tokens), atol=1e-6)


def test_pooling_refuses_a_mask():
  module = summarize.make_summarizer('pool', 2)
  tokens = jnp.ones((1, 4, 8))
  params = module.init(jax.random.PRNGKey(0), tokens)
  with pytest.raises(ValueError, match='cannot leave tokens out'):
    module.apply(params, tokens, False, jnp.ones((1, 4), bool))
