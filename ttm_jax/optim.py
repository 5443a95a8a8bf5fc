"""The optimizer: AdamW with weight decay on weight matrices only, global-norm clipping, and a
linear-warmup cosine schedule whose learning rate is set every step (so it can restart at each
curriculum stage)."""

import flax
import ml_collections
import optax


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """0 -> peak_lr linearly over warmup_steps, then cosine to end_lr over decay_steps, then
  constant end_lr (`config` is `config.optim`)."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.peak_lr, warmup_steps=config.warmup_steps,
      decay_steps=config.warmup_steps + config.decay_steps, end_value=config.end_lr)


def decay_mask(params):
  """True for weight matrices (`kernel` leaves); False for biases, norms, embeddings, position
  embeddings, learned queries and the learned initial memory."""
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict({path: path[-1] == 'kernel' for path in flat})


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Clip by global norm, then AdamW; the learning rate lives in
  `opt_state.hyperparams['learning_rate']` (`config` is `config.optim`)."""
  def chain(learning_rate):
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps,
                    weight_decay=config.weight_decay, mask=decay_mask))
  return optax.inject_hyperparams(chain)(learning_rate=config.peak_lr)
