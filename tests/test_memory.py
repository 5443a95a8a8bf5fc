"""Memory read and write (checklist Phase 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import memory as mem


def _randn(seed, *shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_concatenations():
  memory, inputs, outputs = _randn(0, 96, 128), _randn(1, 10, 128), _randn(2, 16, 128)
  assert mem.concat_memory_input(memory, inputs).shape[0] == 96 + 10
  assert mem.concat_for_write(memory, inputs, outputs).shape[0] == 96 + 10 + 16


def test_fifo_keeps_the_last_m_tokens():
  memory = jnp.arange(4.0)[:, None] * jnp.ones((4, 2))
  inputs = 10 + jnp.arange(2.0)[:, None] * jnp.ones((2, 2))
  outputs = 20 + jnp.arange(1.0)[:, None] * jnp.ones((1, 2))
  out = mem.fifo_write(memory, inputs, outputs)
  np.testing.assert_array_equal(out[:, 0], [3, 10, 11, 20])


def test_erase_add_by_hand():
  memory = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  select = jnp.array([[1.0, 0.0]])  # One head writes slot 0 only.
  erase = jnp.array([[0.5, 1.0]])
  add = jnp.array([[10.0, 20.0]])
  # The NTM's: slot 0 erased and written, slot 1 kept.
  np.testing.assert_allclose(mem.ntm_erase_add(memory, select, erase, add),
                             [[1 * 0.5 + 10, 2 * 0.0 + 20], [3, 4]])
  # Scenic's adds mean(1 - select*add): one minus the NTM's add, so slot 1 gains 1.
  np.testing.assert_allclose(mem.erase_add(memory, select, erase, add),
                             [[1 * 0.5 - 9, 2 * 0.0 - 19], [4, 5]])
  two = mem.ntm_erase_add(memory, jnp.array([[1.0, 0.0], [1.0, 0.0]]),
                          jnp.array([[0.5, 0.0], [0.5, 0.0]]), jnp.array([[2.0, 0.0], [4.0, 0.0]]))
  # Erase multiplies (0.5 * 0.5), add averages over heads ((2 + 4) / 2).
  np.testing.assert_allclose(two, [[1 * 0.25 + 3, 2], [3, 4]])


def test_scenic_erase_add_write_uses_raw_erase_vectors_and_no_dropout():
  memory, control = _randn(0, 2, 6, 8), _randn(1, 2, 3, 8)
  write = mem.MemoryWrite(6, 'TL-AddErase', dropout_rate=0.5)
  params = write.init(jax.random.PRNGKey(0), memory, None, control)
  evaluated, sown = write.apply(params, memory, None, control, mutable='intermediates')
  trained = write.apply(params, memory, None, control, True,
                        rngs={'dropout': jax.random.PRNGKey(1)})
  np.testing.assert_array_equal(trained, evaluated)  # Scenic's write has no dropout.
  erase = sown['intermediates']['erase_add']['erase'][0]
  assert float(erase.min()) < 0.0  # Not squashed into (0, 1).
  ntm = mem.MemoryWrite(6, 'TL-AddErase-NTM', dropout_rate=0.5)
  ntm_evaluated, sown = ntm.apply(params, memory, None, control, mutable='intermediates')
  erase = sown['intermediates']['erase_add']['erase'][0]
  assert float(erase.min()) > 0.0 and float(erase.max()) < 1.0
  assert not np.allclose(ntm_evaluated, evaluated)
  assert not np.allclose(ntm.apply(params, memory, None, control, True,
                                   rngs={'dropout': jax.random.PRNGKey(1)}), ntm_evaluated)


def test_read_to_r_tokens():
  read = mem.MemoryRead(16)
  memory, inputs = _randn(0, 2, 96, 128), _randn(1, 2, 10, 128)
  params = read.init(jax.random.PRNGKey(0), memory, inputs)
  assert read.apply(params, memory, inputs).shape == (2, 16, 128)
  small = mem.MemoryRead(16)
  assert small.apply(small.init(jax.random.PRNGKey(0), _randn(2, 2, 12, 128), inputs),
                     _randn(2, 2, 12, 128), inputs).shape == (2, 16, 128)


@pytest.mark.parametrize('mode', list(mem.MEMORY_MODES))
def test_write_keeps_memory_shape(mode):
  write = mem.MemoryWrite(96, mode, use_positional_embedding=True)
  memory, outputs, inputs = _randn(0, 2, 96, 128), _randn(1, 2, 16, 128), _randn(2, 2, 10, 128)
  params = write.init(jax.random.PRNGKey(0), memory, inputs, outputs)
  assert write.apply(params, memory, inputs, outputs).shape == (2, 96, 128)


def test_positional_embeddings_per_position():
  read = mem.MemoryRead(4, use_positional_embedding=True)
  memory, inputs = _randn(0, 1, 6, 8), _randn(1, 1, 3, 8)
  params = read.init(jax.random.PRNGKey(0), memory, inputs)['params']
  embedding = params['read_pos_embed']['embedding']
  assert embedding.shape == (9, 8)
  assert len({tuple(np.round(row, 6)) for row in np.asarray(embedding)}) == 9
  write = mem.MemoryWrite(6, use_positional_embedding=True)
  wparams = write.init(jax.random.PRNGKey(0), memory, inputs, _randn(2, 1, 4, 8))['params']
  assert wparams['write_pos_embed']['embedding'].shape == (6 + 3 + 4, 8)
  assert 'read_pos_embed' not in mem.MemoryRead(4).init(
      jax.random.PRNGKey(0), memory, inputs)['params']


def test_without_input_positions_only_memory_and_outputs_have_positions():
  # 'places' (issue 36): any number of input tokens, the same parameters.
  read = mem.MemoryRead(4, use_positional_embedding=True, input_positions=False)
  write = mem.MemoryWrite(6, use_positional_embedding=True, input_positions=False)
  memory, outputs = _randn(0, 2, 6, 8), _randn(1, 2, 4, 8)
  rparams = read.init(jax.random.PRNGKey(0), memory, _randn(2, 2, 3, 8))
  wparams = write.init(jax.random.PRNGKey(0), memory, _randn(2, 2, 3, 8), outputs)
  assert rparams['params']['read_pos_embed']['embedding'].shape == (6, 8)
  assert wparams['params']['write_pos_embed']['embedding'].shape == (6 + 4, 8)
  for n in (3, 11):
    inputs = _randn(3, 2, n, 8)
    assert read.apply(rparams, memory, inputs).shape == (2, 4, 8)
    assert write.apply(wparams, memory, inputs, outputs).shape == (2, 6, 8)


@pytest.mark.parametrize('summarizer', ['mlp', 'mha'])
def test_masked_inputs_are_neither_read_nor_written(summarizer):
  read = mem.MemoryRead(4, summarizer, use_positional_embedding=True, input_positions=False)
  write = mem.MemoryWrite(6, 'TL' if summarizer == 'mlp' else 'TL-MHA',
                          use_positional_embedding=True, input_positions=False)
  memory, inputs, outputs = _randn(0, 2, 6, 8), _randn(1, 2, 5, 8), _randn(2, 2, 4, 8)
  keep = np.array([True, False, True, True, False])
  rparams = read.init(jax.random.PRNGKey(0), memory, inputs)
  wparams = write.init(jax.random.PRNGKey(0), memory, inputs, outputs)
  mask = jnp.broadcast_to(keep, (2, 5))
  np.testing.assert_allclose(read.apply(rparams, memory, inputs, False, mask),
                             read.apply(rparams, memory, inputs[:, keep]), atol=1e-6)
  np.testing.assert_allclose(write.apply(wparams, memory, inputs, outputs, False, mask),
                             write.apply(wparams, memory, inputs[:, keep], outputs), atol=1e-6)
  assert not np.allclose(read.apply(rparams, memory, inputs),
                         read.apply(rparams, memory, inputs[:, keep]), atol=1e-6)
