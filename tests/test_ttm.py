"""The TTM unit, simplified unit and encoder: Scenic's interface, every memory mode and
processing unit, scan-vs-step parity, the memory-less ablation, learned initial memory,
parameter count and gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import TokenTuringMachineEncoder
from ttm_jax import TokenTuringMachineSimpleUnit
from ttm_jax import TokenTuringMachineUnit
from ttm_jax import processing
from ttm_jax import ttm

TINY = dict(process_size=4, memory_size=8, num_layers=1, num_heads=2, mlp_dim=32)


def _inputs(seed=0, batch=2, steps=3, n=5, d=32):
  return jax.random.normal(jax.random.PRNGKey(seed), (batch, steps, n, d))


def _defaults(cls):
  return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ('parent', 'name')}


def test_scenic_attribute_names_and_defaults():
  assert _defaults(TokenTuringMachineUnit) == dict(
      process_size=8, memory_size=64, memory_mode='TL', processing_unit='transformer',
      num_layers=1, mlp_dim=512, num_heads=12, use_positional_embedding=False, dropout_rate=0.0,
      input_positions=True)  # (Ours, Scenic's behaviour: 'places' sets it False, issue 36.)
  assert _defaults(TokenTuringMachineSimpleUnit) == dict(
      process_size=16, memory_size=96, processing_unit='transformer', num_layers=1,
      mlp_dim=512, num_heads=12, dropout_rate=0.0, scenic_split=False)
  encoder = _defaults(TokenTuringMachineEncoder)
  assert {k: encoder[k] for k in ('process_size', 'memory_size', 'memory_mode',
                                  'processing_unit', 'num_layers', 'dropout_rate')} == dict(
      process_size=8, memory_size=64, memory_mode='TL', processing_unit='transformer',
      num_layers=4, dropout_rate=0.0)
  assert encoder['memory_init'] == 'zeros'  # As Scenic.


# Every memory mode with the Transformer and every unit with 'TL' by default; the whole
# cross product with `-m slow`.
COMBINATIONS = sorted({(mode, 'transformer') for mode in ttm.MEMORY_MODES} |
                      {('TL', unit) for unit in processing.PROCESSING_UNITS})
ALL_COMBINATIONS = [pytest.param(mode, unit, marks=[] if (mode, unit) in COMBINATIONS else
                                 [pytest.mark.slow])
                    for mode in ttm.MEMORY_MODES for unit in processing.PROCESSING_UNITS]


@pytest.mark.parametrize('mode, unit', ALL_COMBINATIONS)
def test_unit_shapes_train_and_eval(mode, unit):
  module = TokenTuringMachineUnit(memory_mode=mode, processing_unit=unit, dropout_rate=0.1,
                                  use_positional_embedding=True, **TINY)
  m = 0 if mode == 'none' else 8
  memory = jax.random.normal(jax.random.PRNGKey(1), (2, m, 32))
  inputs = _inputs()[:, 0]
  params = module.init(jax.random.PRNGKey(0), memory, inputs)
  for train in (False, True):
    new_memory, outputs = module.apply(params, memory, inputs, train,
                                       rngs={'dropout': jax.random.PRNGKey(2)})
    assert new_memory.shape == (2, m, 32)
    assert outputs.shape == (2, 4, 32)
    assert np.all(np.isfinite(new_memory)) and np.all(np.isfinite(outputs))


@pytest.mark.parametrize('mode', ['TL', 'TL-MHA', 'TL-AddErase', 'none'])
def test_encoder_shapes(mode):
  encoder = TokenTuringMachineEncoder(memory_mode=mode, **TINY)
  x = _inputs()
  params = encoder.init(jax.random.PRNGKey(0), x)
  assert encoder.apply(params, x).shape == (2, 3, 4, 32)


def test_simple_unit_shapes():
  encoder = TokenTuringMachineEncoder(simple_unit=True, **TINY)
  x = _inputs()
  params = encoder.init(jax.random.PRNGKey(0), x)
  assert encoder.apply(params, x).shape == (2, 3, 4, 32)


@pytest.mark.parametrize('mode', ['TL', 'TL-AddErase', 'TL-AddErase-NTM', 'fifo'])
def test_scan_equals_streaming_steps(mode):
  encoder = TokenTuringMachineEncoder(memory_mode=mode, memory_init='learned',
                                      use_positional_embedding=True, **TINY)
  x = _inputs(steps=6)
  params = encoder.init(jax.random.PRNGKey(0), x)
  scanned = encoder.apply(params, x)
  memory = encoder.apply(params, 2, 32, method='initial_memory')
  final_memory, _ = encoder.apply(params, memory, x, method='scan_steps')
  outputs = []
  for t in range(6):
    memory, out = encoder.apply(params, memory, x[:, t], method='step')
    outputs.append(out)
  # Scenic's erase/add write (raw erase vectors) amplifies the compiled loop's rounding.
  tolerance = dict(rtol=1e-3, atol=1e-3) if mode == 'TL-AddErase' else dict(atol=1e-5)
  np.testing.assert_allclose(jnp.stack(outputs, 1), scanned, **tolerance)
  np.testing.assert_allclose(memory, final_memory, **tolerance)


def test_python_loop_and_unrolled_scan_equal_the_scan():
  encoder = TokenTuringMachineEncoder(memory_init='learned', use_positional_embedding=True,
                                      **TINY)
  x = _inputs(steps=5)
  params = encoder.init(jax.random.PRNGKey(0), x)
  scanned = encoder.apply(params, x)
  for variant in (dict(scan=False), dict(scan_unroll=2), dict(scan_unroll=0)):
    other = encoder.clone(**variant)
    other_params = other.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_structure(other_params) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(other.apply(params, x), scanned, atol=1e-5)


def test_fully_unrolled_scan_draws_the_same_dropout_masks():
  encoder = TokenTuringMachineEncoder(memory_init='learned', dropout_rate=0.3, **TINY)
  x = _inputs(steps=3)
  params = encoder.init(jax.random.PRNGKey(0), x)
  rngs = {'dropout': jax.random.PRNGKey(4)}
  scanned = encoder.apply(params, x, True, rngs=rngs)
  unrolled = encoder.clone(scan_unroll=0).apply(params, x, True, rngs=rngs)
  assert not np.allclose(scanned, encoder.apply(params, x))  # Dropout is on.
  np.testing.assert_allclose(unrolled, scanned, atol=1e-5)


@pytest.mark.slow  # About a minute of compiling.
def test_remat_gives_the_same_outputs_and_gradients():
  encoder = TokenTuringMachineEncoder(memory_init='learned', use_positional_embedding=True,
                                      dropout_rate=0.1, **TINY)
  x = _inputs(steps=4)
  params = encoder.init(jax.random.PRNGKey(0), x)

  def loss(p, model):  # Dropout on: the recomputed steps must draw the same masks.
    out = model.apply(p, x, True, rngs={'dropout': jax.random.PRNGKey(5)})
    return jnp.sum(out ** 2)

  rematted = encoder.clone(remat=True)
  program = str(jax.make_jaxpr(lambda p: loss(p, rematted))(params))
  assert 'remat' in program or 'checkpoint' in program
  expected = jax.jit(jax.grad(loss), static_argnums=1)(params, encoder)
  grads = jax.jit(jax.grad(loss), static_argnums=1)(params, rematted)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(expected))
  assert scale > 1.0
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale),
      grads, expected)


def test_dropout_rng_differs_per_step():
  encoder = TokenTuringMachineEncoder(memory_mode='none', dropout_rate=0.5, **TINY)
  step = _inputs(steps=1)
  x = jnp.repeat(step, 4, axis=1)  # The same input at every step.
  params = encoder.init(jax.random.PRNGKey(0), x)
  out = encoder.apply(params, x, True, rngs={'dropout': jax.random.PRNGKey(3)})
  # Memory-less and identical inputs: only per-step dropout can make the steps differ.
  assert not np.allclose(out[:, 0], out[:, 1])
  evaluated = encoder.apply(params, x)
  np.testing.assert_allclose(evaluated[:, 0], evaluated[:, 1], atol=1e-6)


def _first_step_sensitivity(mode):
  encoder = TokenTuringMachineEncoder(memory_mode=mode, **TINY)
  x = _inputs(steps=3)
  params = encoder.init(jax.random.PRNGKey(0), x)
  grad = jax.grad(lambda x: encoder.apply(params, x)[:, 2].sum())(x)
  return float(jnp.abs(grad[:, 0]).sum())


def test_memory_less_ablation_forgets_earlier_steps():
  encoder = TokenTuringMachineEncoder(memory_mode='none', **TINY)
  params = encoder.init(jax.random.PRNGKey(0), _inputs())
  assert encoder.apply(params, 2, 32, method='initial_memory').shape == (2, 0, 32)
  assert _first_step_sensitivity('none') == 0.0
  assert _first_step_sensitivity('TL') > 0.0


def test_learned_initial_memory():
  encoder = TokenTuringMachineEncoder(memory_init='learned', process_size=16, memory_size=96,
                                      num_layers=1, num_heads=4, mlp_dim=64)
  params = encoder.init(jax.random.PRNGKey(0), jnp.ones((4, 1, 3, 128)))['params']
  init = params['initial']['memory']
  assert init.shape == (96, 128)
  assert float(jnp.abs(init).mean()) == pytest.approx(0.008, abs=0.002)
  memory = encoder.apply({'params': params}, 4, 128, method='initial_memory')
  assert memory.shape == (4, 96, 128)
  np.testing.assert_array_equal(memory[3], init)
  zeros = TokenTuringMachineEncoder(**TINY)
  assert 'initial' not in zeros.init(jax.random.PRNGKey(0), _inputs())['params']


def _unit_param_count(d, m, r, n, layers, mlp, bottleneck=64):
  """The paper unit ('TL', transformer, positional embeddings), counted by hand."""
  layer_norm = 2 * d
  token_learner = lambda k: layer_norm + d * bottleneck + bottleneck + bottleneck * k + k
  attention = 4 * (d * d + d)
  block = layer_norm + attention + layer_norm + (d * mlp + mlp) + (mlp * d + d)
  transformer = r * d + layers * block + layer_norm
  return ((m + n) * d + token_learner(r) + transformer + (m + n + r) * d + token_learner(m))


def test_paper_config_parameter_count():
  d, m, r, n = 128, 96, 16, 11
  encoder = TokenTuringMachineEncoder(process_size=r, memory_size=m, num_layers=4, num_heads=4,
                                      mlp_dim=512, use_positional_embedding=True,
                                      memory_init='learned')
  shapes = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, 2, n, d))))['params']
  count = sum(x.size for x in jax.tree_util.tree_leaves(shapes))
  assert count == _unit_param_count(d, m, r, n, 4, 512) + m * d
  assert count == 861424


@pytest.mark.parametrize('mode', ['TL', 'TL-MHA', 'TL-AddErase'])
def test_gradients_finite_and_nonzero_for_every_parameter(mode):
  encoder = TokenTuringMachineEncoder(memory_mode=mode, memory_init='learned',
                                      use_positional_embedding=True, **TINY)
  x = _inputs(steps=3)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  grads = jax.grad(lambda p: jnp.sum(encoder.apply({'params': p}, x) ** 2))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    assert np.any(g != 0), jax.tree_util.keystr(path)
