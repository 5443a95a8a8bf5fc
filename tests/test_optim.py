"""Optimizer: schedule values, clipping, weight-decay mask (configs/mult.py defaults)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import mult
from ttm_jax import data
from ttm_jax.curriculum import Curriculum
from ttm_jax import factory
from ttm_jax import optim
from ttm_jax import train


@pytest.fixture(scope='module')
def config():
  return mult.get_config('paper')


def test_schedule_values(config):
  schedule = optim.make_schedule(config.optim)
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(1e-3)
  assert float(schedule(100)) == pytest.approx(2e-3)
  assert float(schedule(600)) == pytest.approx(1e-4 + 0.5 * (2e-3 - 1e-4), rel=1e-5)
  assert float(schedule(1100)) == pytest.approx(1e-4)
  assert float(schedule(5000)) == pytest.approx(1e-4)
  lrs = [float(schedule(s)) for s in range(0, 101, 10)]
  assert lrs == sorted(lrs)


def test_adamw_hyperparameters(config):
  assert (config.optim.b1, config.optim.b2, config.optim.eps) == (0.9, 0.99, 1e-8)
  assert (config.optim.weight_decay, config.optim.clip_norm) == (1e-4, 1.0)
  assert config.model.dropout_rate == 0.1


def _params(config):
  model = factory.make_model(config)
  framing = factory.make_framing(config)
  tx = optim.make_optimizer(config.optim)
  params, _ = train.init_state(model, tx, framing, 0)
  return params, tx


def test_decay_mask_only_weight_matrices(config):
  params, _ = _params(config)
  mask = optim.decay_mask(params)
  paths = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert any('kernel' in p and v for p, v in paths.items())
  for path, decays in paths.items():
    assert decays == path.endswith("['kernel']"), path
  undecayed = [p for p, v in paths.items() if not v]
  for name in ('embedding', 'bias', 'scale', "['memory']", 'pos_embed'):
    assert any(name in p for p in undecayed), name


def test_weight_decay_applies_to_kernels_only(config):
  params, tx = _params(config)
  state = tx.init(params)
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zero, state, params)
  for (path, update), param in zip(jax.tree_util.tree_leaves_with_path(updates),
                                   jax.tree_util.tree_leaves(params)):
    if jax.tree_util.keystr(path).endswith("['kernel']"):
      np.testing.assert_allclose(update, -config.optim.peak_lr * 1e-4 * param, rtol=1e-5,
                                 atol=1e-12)
    else:
      assert not np.any(np.asarray(update)), path


def test_clipping_bounds_the_gradient_the_optimizer_sees(config):
  params, tx = _params(config)
  state = tx.init(params)
  update = jax.jit(tx.update)
  huge = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e6), params)
  _, state = update(huge, state, params)
  adam_state = state.inner_state[1][0]
  # First moment after one step is (1 - b1) * clipped gradient.
  first_moment_norm = float(optax.tree.norm(adam_state.mu))
  assert first_moment_norm == pytest.approx((1 - config.optim.b1) * config.optim.clip_norm,
                                            rel=1e-4)
  small = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-6), params)
  _, state = update(small, tx.init(params), params)
  assert float(optax.tree.norm(state.inner_state[1][0].mu)) < 0.01


def test_constant_schedule_after_warmup_when_decay_steps_is_zero():
  oc = mult.get_config().optim
  oc.update(decay_steps=0, warmup_steps=100, peak_lr=1e-3)
  schedule = optim.make_schedule(oc)
  assert float(schedule(50)) == pytest.approx(5e-4)
  assert [float(schedule(s)) for s in (100, 1000, 10**6)] == [pytest.approx(1e-3)] * 3


def test_learning_rate_counts_from_the_stage_start_and_scales_down_to_end_lr():
  oc = mult.get_config().optim
  oc.update(decay_steps=0, warmup_steps=100, peak_lr=1e-3, end_lr=1e-4)
  schedule = optim.make_schedule(oc)
  rate = lambda step, start, scale: float(optim.learning_rate(schedule, oc, step, start, scale))
  assert rate(550, 500, 1.0) == pytest.approx(5e-4)  # Warming up again from the stage start.
  assert rate(5000, 500, 0.5) == pytest.approx(5e-4)
  assert rate(5000, 500, 0.01) == pytest.approx(1e-4)  # Not below end_lr...
  assert rate(505, 500, 0.01) == pytest.approx(5e-5)  # ...except while warming up.


def test_the_train_step_reads_the_rate_from_the_train_state():
  config = mult.get_config('runlocal')
  config.optim.update(decay_steps=0, warmup_steps=10, peak_lr=1e-3, end_lr=1e-5)
  model = factory.make_model(config)
  tx = optim.make_optimizer(config.optim)
  params, state = train.init_state(model, tx, factory.make_framing(config), 0)
  assert int(state['stage_start']) == 0 and float(state['lr_scale']) == 1.0
  step = train.make_train_step(model, tx, config.optim)
  batch = data.MultiplicationDataset(4, 0, Curriculum(), factory.make_framing(config)).generate_batch()
  batch = {k: batch[k][None] for k in ('inputs', 'targets')}  # One step: [1, B, ...].
  state = {**state, 'step': jnp.int32(100), 'stage_start': jnp.int32(95),
           'lr_scale': jnp.float32(0.5)}
  _, state, metrics = step(params, state, batch)
  assert float(metrics['learning_rate'][0]) == pytest.approx(5e-4 * 0.5)
  assert int(state['step']) == 101 and int(state['stage_start']) == 95
  assert float(state['lr_scale']) == 0.5


def test_the_moving_average_decay_restarts_with_each_stage():
  config = mult.get_config('runlocal').optim
  config.ema_decay = 0.999
  decay = lambda step, start: float(optim.ema_decay(config, jnp.int32(step), jnp.int32(start)))
  assert decay(0, 0) == pytest.approx(0.1)  # A stage's first step: the average is mostly new.
  assert decay(5100, 5000) == pytest.approx(101 / 110)
  assert decay(5000 + 20000, 5000) == pytest.approx(0.999)  # Capped at ema_decay.
  assert decay(300, 0) == decay(5300, 5000)  # Counted from the stage's start.
