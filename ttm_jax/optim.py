"""The optimizer: AdamW with weight decay on weight matrices only, global-norm clipping, and the
learning-rate policy.

The learning rate of a step is `schedule(step - stage_start) * lr_scale`, computed inside the
jitted train step from two scalars of the train state: `stage_start`, the step the schedule
counts from (the current stage's first step with `restart_per_stage`, else 0), and `lr_scale`,
which the curriculum multiplies by `plateau_factor` when the stage's training loss stops
improving (`curriculum.py`) and sets back to 1 at each new stage.
The schedule: linear warmup to `peak_lr`, then cosine to `end_lr` over `decay_steps` (0: stay
at `peak_lr`); `lr_scale` never takes the rate below `end_lr`.
The moving average of the parameters (`ema_decay > 0`) counts from `stage_start` too: its decay
starts low and grows to `ema_decay` (`ema_decay`), so each stage's average is of that stage's
parameters and does not lag behind a promotion.
"""

import flax
import jax.numpy as jnp
import ml_collections
import optax


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """0 -> peak_lr linearly over warmup_steps, then cosine to end_lr over decay_steps, then
  constant end_lr; with decay_steps 0, constant peak_lr after the warmup (`config` is
  `config.optim`)."""
  if not config.decay_steps:
    return optax.linear_schedule(0.0, config.peak_lr, max(config.warmup_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.peak_lr, warmup_steps=config.warmup_steps,
      decay_steps=config.warmup_steps + config.decay_steps, end_value=config.end_lr)


def min_lr_scale(config: ml_collections.ConfigDict) -> float:
  """The smallest `lr_scale`: the one that takes `peak_lr` to `end_lr`."""
  return config.end_lr / config.peak_lr


def learning_rate(schedule: optax.Schedule, config: ml_collections.ConfigDict, step,
                  stage_start, lr_scale):
  """The rate of train step `step` (scalars, traced inside the train step): the schedule
  counted from `stage_start`, times `lr_scale`, never below `end_lr` on account of the scale."""
  rate = schedule(step - stage_start)
  return jnp.minimum(rate, jnp.maximum(rate * lr_scale, config.end_lr))


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


def ema_decay(config: ml_collections.ConfigDict, step, stage_start):
  """The moving average's decay at train step `step`: `min(ema_decay, (1 + n) / (10 + n))`,
  `n = step - stage_start`, so that a new stage's average forgets the last stage's within a
  few dozen steps (0.1 at its first step, 0.92 at its 100th, `ema_decay` = 0.999 from about its
  9,000th)."""
  n = (step - stage_start).astype(jnp.float32)
  return jnp.minimum(config.ema_decay, (1.0 + n) / (10.0 + n))
