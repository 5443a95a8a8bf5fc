"""Token Turing Machines (Ryoo et al. 2022, arXiv 2211.09119), mirroring Scenic's
`token_turing` project: the unit, the simplified unit and the encoder over steps.

With Scenic's memory modes ('TL', 'TL-MHA', 'TL-AddErase') and processing units, the unit and
the encoder compute what Scenic's do, from the same parameters under other names
(`ttm_jax.scenic` converts them; `tests/test_scenic.py` measures the parity). Differences
from Scenic, all deliberate (`docs/scenic.md` has the full list):
* parameter names by role (`read/`, `process/`, `write/`), position embeddings `[N, d]`;
* the encoder passes `mlp_dim` and `num_heads` down to the unit (Scenic's never does, so its
  unit has 512 and 12: set those for Scenic's behaviour);
* the encoder runs its steps under `nn.scan` (compile time flat in the number of steps) and
  exposes the same unit as a streaming `step`, sharing its parameters; `scan=False` gives
  Scenic's Python loop over steps (same parameters, for comparison);
* additions: `memory_mode='none'` (the memory-less ablation), 'pool' (pooling summarization),
  'fifo' (concatenation write), 'TL-AddErase-NTM' (the NTM's erase/add write), and
  `memory_init='learned'` (a learnable initial memory, normal with stddev 0.01, besides
  Scenic's zeros);
* the simplified unit keeps each processed position's role (`scenic_split=True`: Scenic's
  split).
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from ttm_jax import memory as mem
from ttm_jax import processing
from ttm_jax import summarize

MEMORY_MODES = tuple(mem.MEMORY_MODES) + ('none',)
MEMORY_INITS = ('zeros', 'learned')


class TokenTuringMachineUnit(nn.Module):
  """One TTM step: read r tokens, process them, write a new memory of m tokens.

  Attributes:
    process_size: r, tokens read from `[memory; inputs]` and processed.
    memory_size: m, memory tokens.
    memory_mode: 'TL' (TokenLearner read and write), 'TL-MHA' (learned-query attention),
      'TL-AddErase' (TokenLearner read, Scenic's erase/add write), 'TL-AddErase-NTM' (the
      same with the NTM's erase/add write, `memory.EraseAddWrite`), 'pool', 'fifo', or
      'none' (memory-less: read from the inputs only, memory passes through unchanged).
    processing_unit: 'transformer', 'mixer' or 'mlp'.
    num_layers: layers of the processing unit.
    mlp_dim: MLP width in the processing unit.
    num_heads: attention heads in the processing unit.
    use_positional_embedding: learned read/write position embeddings.
    dropout_rate: dropout rate everywhere in the unit.
    input_positions: the position embeddings cover the input tokens too (Scenic's, fixing n);
      False: memory and outputs only, so a step may have any number of input tokens
      (`memory.MemoryRead`).
  """
  process_size: int = 8
  memory_size: int = 64
  memory_mode: str = 'TL'
  processing_unit: str = 'transformer'
  num_layers: int = 1
  mlp_dim: int = 512
  num_heads: int = 12
  use_positional_embedding: bool = False
  dropout_rate: float = 0.0
  input_positions: bool = True

  @nn.compact
  def __call__(self, memory: jnp.ndarray, inputs: jnp.ndarray, train: bool = False,
               input_mask: jnp.ndarray = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """Applies one step.

    Args:
      memory: `[B, m, d]` (`[B, 0, d]` when memory_mode is 'none').
      inputs: `[B, n, d]`, this step's input tokens.
      train: enables dropout.
      input_mask: `[B, n]` bool, or None: inputs where it is False (padding) are neither
        read nor written.

    Returns:
      `(new_memory [B, m, d], outputs [B, process_size, d])`.
    """
    if self.memory_mode not in MEMORY_MODES:
      raise ValueError(f'unknown memory_mode {self.memory_mode!r}; expected one of '
                       f'{MEMORY_MODES}')
    read_summarizer = mem.MEMORY_MODES.get(self.memory_mode, ('mlp', None))[0]
    read = mem.MemoryRead(self.process_size, read_summarizer, self.use_positional_embedding,
                          self.input_positions, self.dropout_rate, name='read')(
                              memory, inputs, train, input_mask)
    outputs = processing.make_processing_unit(
        self.processing_unit, self.num_layers, self.num_heads, self.mlp_dim,
        self.dropout_rate, name='process')(read, train)  # Shape: [B, r, d].
    if self.memory_mode == 'none':
      return memory, outputs
    new_memory = mem.MemoryWrite(self.memory_size, self.memory_mode,
                                 self.use_positional_embedding, self.input_positions,
                                 self.dropout_rate, name='write')(
                                     memory, inputs, outputs, train, input_mask)
    return new_memory, outputs


class TokenTuringMachineSimpleUnit(nn.Module):
  """Simplified TTM step: the processing unit itself maintains the memory.

  The inputs are summarized to `process_size` tokens, `[memory; summary]` is processed, and
  the processed memory positions become the new memory, the processed summary positions the
  outputs. (Scenic slices the first `process_size` processed tokens as outputs and the rest as
  memory, which mixes memory and input positions; `scenic_split=True` does that.)

  Attributes: as in TokenTuringMachineUnit (no memory_mode), plus
    scenic_split: Scenic's split of the processed tokens instead of ours.
  """
  process_size: int = 16
  memory_size: int = 96
  processing_unit: str = 'transformer'
  num_layers: int = 1
  mlp_dim: int = 512
  num_heads: int = 12
  dropout_rate: float = 0.0
  scenic_split: bool = False

  @nn.compact
  def __call__(self, memory: jnp.ndarray, inputs: jnp.ndarray, train: bool = False,
               input_mask: jnp.ndarray = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """`([B, m, d], [B, n, d])` -> `(new_memory [B, m, d], outputs [B, process_size, d])`;
    inputs where `input_mask [B, n]` is False are left out of the summary."""
    summary = summarize.TokenLearner(self.process_size, dropout_rate=self.dropout_rate,
                                     name='summarize')(inputs, train, input_mask)
    tokens = jnp.concatenate([memory, summary], axis=1)  # Shape: [B, m+r, d].
    tokens = processing.make_processing_unit(
        self.processing_unit, self.num_layers, self.num_heads, self.mlp_dim,
        self.dropout_rate, name='process')(tokens, train)
    if self.scenic_split:
      return tokens[:, self.process_size:], tokens[:, :self.process_size]
    memory_size = memory.shape[1]
    return tokens[:, :memory_size], tokens[:, memory_size:]


class InitialMemory(nn.Module):
  """The memory a sequence starts from: zeros (Scenic) or learned, normal(stddev=0.01).

  Attributes:
    memory_size: m (0 for the memory-less ablation).
    memory_init: 'zeros' or 'learned'.
  """
  memory_size: int
  memory_init: str = 'zeros'

  @nn.compact
  def __call__(self, batch_size: int, dim: int) -> jnp.ndarray:
    """Returns `[batch_size, m, dim]`."""
    if self.memory_init not in MEMORY_INITS:
      raise ValueError(f'unknown memory_init {self.memory_init!r}; expected one of '
                       f'{MEMORY_INITS}')
    if self.memory_init == 'learned' and self.memory_size:
      memory = self.param('memory', nn.initializers.normal(stddev=0.01),
                          (self.memory_size, dim))
    else:
      memory = jnp.zeros((self.memory_size, dim))
    return jnp.broadcast_to(memory, (batch_size, self.memory_size, dim))


def _unit_step(unit: nn.Module, memory: jnp.ndarray, step_inputs: jnp.ndarray,
               input_mask: jnp.ndarray, active: jnp.ndarray, train: bool):
  """One step computed in the inputs' dtype; the new memory in the memory's dtype, or, where
  `active [B]` is False (None: everywhere active), the memory as it was."""
  new_memory, outputs = unit(memory.astype(step_inputs.dtype), step_inputs, train, input_mask)
  new_memory = new_memory.astype(memory.dtype)
  if active is not None:
    new_memory = jnp.where(active[:, None, None], new_memory, memory)
  return new_memory, outputs


class TokenTuringMachineEncoder(nn.Module):
  """The TTM over steps: `inputs [B, S, n, d] -> outputs [B, S, process_size, d]`.

  The steps run under `nn.scan` (parameters shared, dropout RNG split per step). `step` is the
  same unit called on one step with the memory handed in and out: the streaming API, with
  the encoder's parameters.

  Attributes: as in TokenTuringMachineUnit, plus
    memory_init: 'zeros' (Scenic) or 'learned'.
    simple_unit: use TokenTuringMachineSimpleUnit instead of TokenTuringMachineUnit.
    scan: `nn.scan` over steps; False unrolls them in a Python loop, as Scenic does (the same
      parameters; compile time grows with the number of steps).
    scan_unroll: steps per iteration of the scanned loop; 0 unrolls them all into one iteration
      (the paper model's fastest step on a CPU; compile time grows with the number of steps).
    remat: recompute each step's activations in the backward pass instead of storing them
      (`nn.remat`): less memory, and no stacking of per-step residuals in the scanned loop.
    input_positions: see TokenTuringMachineUnit (the simple unit has no position embeddings).
  """
  process_size: int = 8
  memory_size: int = 64
  memory_mode: str = 'TL'
  processing_unit: str = 'transformer'
  num_layers: int = 4
  mlp_dim: int = 512
  num_heads: int = 12
  use_positional_embedding: bool = False
  dropout_rate: float = 0.0
  memory_init: str = 'zeros'
  simple_unit: bool = False
  scan: bool = True
  scan_unroll: int = 1
  remat: bool = False
  input_positions: bool = True

  def setup(self):
    if self.simple_unit:
      self.unit = TokenTuringMachineSimpleUnit(
          self.process_size, self.memory_size, self.processing_unit, self.num_layers,
          self.mlp_dim, self.num_heads, self.dropout_rate)
    else:
      self.unit = TokenTuringMachineUnit(
          self.process_size, self.memory_size, self.memory_mode, self.processing_unit,
          self.num_layers, self.mlp_dim, self.num_heads, self.use_positional_embedding,
          self.dropout_rate, self.input_positions)
    memory_size = 0 if self.memory_mode == 'none' else self.memory_size
    self.initial = InitialMemory(memory_size, self.memory_init)

  def initial_memory(self, batch_size: int, dim: int) -> jnp.ndarray:
    """The starting memory, `[batch_size, m, dim]`."""
    return self.initial(batch_size, dim)

  def step(self, memory: jnp.ndarray, step_inputs: jnp.ndarray, train: bool = False,
           input_mask: jnp.ndarray = None,
           active: jnp.ndarray = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """One streaming step: `([B, m, d], [B, n, d])` -> `([B, m, d], [B, r, d])`
    (`input_mask [B, n]`: see TokenTuringMachineUnit; where `active [B]` is False the memory
    is kept)."""
    return _unit_step(self.unit, memory, step_inputs, input_mask, active, train)

  def scan_steps(self, memory: jnp.ndarray, inputs: jnp.ndarray, train: bool = False,
                 input_mask: jnp.ndarray = None,
                 active: jnp.ndarray = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """All steps from a given memory: `([B, m, d], [B, S, n, d])` ->
    `(final memory [B, m, d], outputs [B, S, r, d])` (`input_mask [B, S, n]` or None; a step
    where `active [B, S]` is False keeps the memory as it was)."""
    step_fn = nn.remat(_unit_step, prevent_cse=not self.scan, static_argnums=(5,)) \
        if self.remat else _unit_step
    if not self.scan:
      outputs = []
      for t in range(inputs.shape[1]):
        step_mask, step_active = (None if x is None else x[:, t] for x in (input_mask, active))
        memory, step_outputs = step_fn(self.unit, memory, inputs[:, t], step_mask, step_active,
                                       train)
        outputs.append(step_outputs)
      return memory, jnp.stack(outputs, axis=1)
    scan = nn.scan(step_fn, variable_broadcast='params',
                   variable_axes={'intermediates': 1},
                   split_rngs={'params': False, 'dropout': True},
                   in_axes=(1, 1, 1, nn.broadcast), out_axes=1, unroll=self.scan_unroll)
    return scan(self.unit, memory, inputs, input_mask, active, train)

  def __call__(self, inputs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, S, n, d]` -> `[B, S, process_size, d]`, starting from the initial memory."""
    memory = self.initial_memory(inputs.shape[0], inputs.shape[-1])
    return self.scan_steps(memory, inputs, train)[1]
