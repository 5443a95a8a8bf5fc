"""Losses and metrics (checklist Phases 8 and 10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import losses

E, P = 11, 12  # EOS, PAD.


def test_target_mask_up_to_and_including_first_eos():
  targets = jnp.array([[3, 5, E, P, P], [P, P, 4, E, 2], [1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(losses.create_target_mask(targets),
                                [[1, 1, 1, 0, 0], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1]])


def test_find_eos_positions():
  targets = jnp.array([[3, E, P], [E, E, P], [1, 2, 3]])
  np.testing.assert_array_equal(losses.find_eos_positions(targets), [1, 0, 3])


def test_ce_is_normalized_by_valid_tokens():
  logits = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 13))
  targets = jnp.array([[3, E, P, P], [1, 2, 4, E]])
  log_probs = jax.nn.log_softmax(logits)
  picks = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
  expected = -np.mean([log_probs[b, s, targets[b, s]] for b, s in picks])
  assert float(losses.compute_normalized_ce_loss(logits, targets)) == pytest.approx(
      float(expected), rel=1e-5)


def test_eos_bce_and_total():
  logits = jax.random.normal(jax.random.PRNGKey(1), (1, 3, 13))
  targets = jnp.array([[7, E, P]])
  np.testing.assert_array_equal(losses.create_eos_target(targets), [[0, 1, 0]])
  eos = logits[0, :2, E]
  expected_bce = np.mean([np.log1p(np.exp(eos[0])), np.log1p(np.exp(-eos[1]))])
  assert float(losses.compute_eos_bce(logits, targets)) == pytest.approx(expected_bce, rel=1e-5)
  total = losses.compute_total_loss(logits, targets)
  assert float(total) == pytest.approx(
      float(losses.compute_normalized_ce_loss(logits, targets)) + 0.1 * expected_bce, rel=1e-5)
  assert losses.EOS_LOSS_WEIGHT == 0.1


def test_position_and_sequence_accuracy():
  targets = jnp.array([[3, 5, E, P], [4, E, P, P]])
  predictions = jnp.array([[3, 5, E, 9], [4, 7, E, 1]])  # After-EOS steps do not count.
  acc = losses.accuracy(predictions, targets)
  assert float(acc['position_accuracy']) == pytest.approx(4 / 5)
  assert float(acc['sequence_accuracy']) == pytest.approx(1 / 2)


def test_metrics_keys():
  logits = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 13))
  out = losses.metrics(logits, jnp.array([[1, E, P], [2, 3, E]]))
  assert set(out) == {'loss', 'ce_loss', 'eos_loss', 'position_accuracy', 'sequence_accuracy'}
