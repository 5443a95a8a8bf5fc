"""Losses and metrics over answer steps: masked cross-entropy up to and including the first
target EOS, the EOS binary cross-entropy (weight 0.1), position and sequence accuracy.

Shapes: `logits [B, S, 13]`, `targets [B, S]` (PAD where a step predicts nothing).
"""

from typing import Dict

import jax.numpy as jnp
import optax

from ttm_jax import tokens as tok

EOS_LOSS_WEIGHT = 0.1


def find_eos_positions(targets: jnp.ndarray) -> jnp.ndarray:
  """Index of the first EOS per sequence, `[B]`; S where a sequence has none."""
  is_eos = targets == tok.EOS_TOKEN
  return jnp.where(is_eos.any(-1), jnp.argmax(is_eos, axis=-1), targets.shape[-1])


def create_target_mask(targets: jnp.ndarray) -> jnp.ndarray:
  """1.0 at predicted steps up to and including the first EOS, else 0.0: `[B, S]`."""
  steps = jnp.arange(targets.shape[-1])
  upto_eos = steps[None, :] <= find_eos_positions(targets)[:, None]
  return (upto_eos & (targets != tok.PAD_TOKEN)).astype(jnp.float32)


def compute_normalized_ce_loss(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Cross-entropy summed over the target mask, divided by its count (a scalar)."""
  mask = create_target_mask(targets)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return (ce * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def create_eos_target(targets: jnp.ndarray) -> jnp.ndarray:
  """1.0 at each sequence's first target EOS, else 0.0: `[B, S]`."""
  positions = find_eos_positions(targets)
  return (jnp.arange(targets.shape[-1])[None, :] == positions[:, None]).astype(jnp.float32)


def compute_eos_bce(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Binary cross-entropy of the EOS logit against `create_eos_target`, over the mask."""
  mask = create_target_mask(targets)
  bce = optax.sigmoid_binary_cross_entropy(logits[..., tok.EOS_TOKEN],
                                           create_eos_target(targets))
  return (bce * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def compute_total_loss(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """`ce + 0.1 * eos_bce`."""
  return (compute_normalized_ce_loss(logits, targets) +
          EOS_LOSS_WEIGHT * compute_eos_bce(logits, targets))


def accuracy(predictions: jnp.ndarray, targets: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """Position accuracy (correct masked steps / masked steps) and sequence accuracy
  (sequences with every masked step correct / sequences), from `predictions [B, S]`."""
  mask = create_target_mask(targets)
  correct = (predictions == targets).astype(jnp.float32) * mask
  return {
      'position_accuracy': correct.sum() / jnp.maximum(mask.sum(), 1.0),
      'sequence_accuracy': jnp.mean(jnp.all((correct == mask), axis=-1).astype(jnp.float32)),
  }


def metrics(logits: jnp.ndarray, targets: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """Loss parts and accuracies of `logits` (predictions = argmax)."""
  ce = compute_normalized_ce_loss(logits, targets)
  bce = compute_eos_bce(logits, targets)
  return {'loss': ce + EOS_LOSS_WEIGHT * bce, 'ce_loss': ce, 'eos_loss': bce,
          **accuracy(jnp.argmax(logits, -1), targets)}

