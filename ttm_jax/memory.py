"""Memory read and write (TTM paper §3.2-3.3).

Read: summarize `concat(memory, inputs)` `[m+n, d]` to r tokens.
Write: summarize `concat(memory, inputs, outputs)` `[m+n+r, d]` to m tokens, or one of the
paper's comparison writes: erase/add (Scenic's, or the NTM's), or a FIFO that keeps the last m
tokens.

Pure functions first (those of one example vmap/jit-able), then the Flax modules. The read and
write take an optional input mask: inputs it marks False (padding) are left out of the summary.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttm_jax import summarize
from ttm_jax.dropout import Dropout
from ttm_jax.processing import mlp_dense

# memory_mode -> (read summarizer, write method). The first three are Scenic's modes.
MEMORY_MODES = {
    'TL': ('mlp', 'summarize'),
    'TL-MHA': ('mha', 'summarize'),
    'TL-AddErase': ('mlp', 'erase_add'),
    'TL-AddErase-NTM': ('mlp', 'ntm_erase_add'),
    'pool': ('pool', 'summarize'),
    'fifo': ('mlp', 'fifo'),
}


def concat_memory_input(memory: jnp.ndarray, inputs: jnp.ndarray) -> jnp.ndarray:
  """`[m, d]`, `[n, d]` -> `[m+n, d]`: the tokens the read summarizes."""
  return jnp.concatenate([memory, inputs], axis=-2)


def concat_for_write(memory: jnp.ndarray, inputs: jnp.ndarray,
                     outputs: jnp.ndarray) -> jnp.ndarray:
  """`[m, d]`, `[n, d]`, `[r, d]` -> `[m+n+r, d]`: the tokens the write summarizes."""
  return jnp.concatenate([memory, inputs, outputs], axis=-2)


def summary_mask(memory: jnp.ndarray, input_mask: jnp.ndarray, extra: int = 0):
  """The summarizer's mask of `[memory; inputs; extra tokens]`: `[B, m+n+extra]` with memory
  and extra tokens kept, or None without an `input_mask [B, n]`."""
  if input_mask is None:
    return None
  keep = lambda count: jnp.ones((input_mask.shape[0], count), bool)
  return jnp.concatenate([keep(memory.shape[1]), input_mask, keep(extra)], axis=1)


def fifo_write(memory: jnp.ndarray, inputs: jnp.ndarray, outputs: jnp.ndarray) -> jnp.ndarray:
  """Concatenation write: the last m of `concat(memory, inputs, outputs)`, `[m, d]`."""
  memory_size = memory.shape[-2]
  return concat_for_write(memory, inputs, outputs)[-memory_size:]


def erase(memory: jnp.ndarray, select: jnp.ndarray, erase_vectors: jnp.ndarray) -> jnp.ndarray:
  """The erase of k write heads: `memory * prod_k(1 - select_k ⊗ erase_k)`.

  Args:
    memory: `[m, d]`.
    select: `[k, m]` soft selection of memory slots per head (rows sum to 1).
    erase_vectors: `[k, d]`.

  Returns:
    `[m, d]`.
  """
  return memory * jnp.prod(1.0 - select[:, :, None] * erase_vectors[:, None, :], axis=0)


def erase_add(memory: jnp.ndarray, select: jnp.ndarray, erase_vectors: jnp.ndarray,
              add: jnp.ndarray) -> jnp.ndarray:
  """Scenic's erase/add write (`TokenAddEraseWrite`), shapes as in `erase` (add `[k, d]`):
  `erase(memory) + mean_k(1 - select_k ⊗ add_k)`, i.e. one minus the NTM's add term."""
  return erase(memory, select, erase_vectors) + jnp.mean(
      1.0 - select[:, :, None] * add[:, None, :], axis=0)


def ntm_erase_add(memory: jnp.ndarray, select: jnp.ndarray, erase_vectors: jnp.ndarray,
                  add: jnp.ndarray) -> jnp.ndarray:
  """The NTM's erase/add write, shapes as in `erase_add`:
  `erase(memory) + mean_k(select_k ⊗ add_k)`."""
  return erase(memory, select, erase_vectors) + jnp.mean(
      select[:, :, None] * add[:, None, :], axis=0)


class AddPositionEmbedding(nn.Module):
  """Adds a learned embedding per token position: `[B, N, d]` -> `[B, N, d]`."""

  @nn.compact
  def __call__(self, tokens: jnp.ndarray) -> jnp.ndarray:
    embedding = self.param('embedding', nn.initializers.normal(stddev=0.02), tokens.shape[1:])
    return tokens + embedding


class MemoryRead(nn.Module):
  """Reads r tokens from memory and inputs by token summarization.

  Attributes:
    num_tokens: r, tokens handed to the processing unit.
    summarizer: 'mlp', 'mha' or 'pool' (`summarize.SUMMARIZERS`).
    use_positional_embedding: add a learned embedding per position of `[memory; inputs]`
      (tells memory tokens from input tokens, and addresses memory by location).
    input_positions: the position embedding covers the input tokens too (Scenic's; its size
      then fixes n); False: the memory's positions only, so that any number of input tokens
      can be read (inputs that say what they are by their own embeddings, issue 36).
    dropout_rate: summarizer dropout.
  """
  num_tokens: int
  summarizer: str = 'mlp'
  use_positional_embedding: bool = False
  input_positions: bool = True
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, memory: jnp.ndarray, inputs: jnp.ndarray, train: bool = False,
               input_mask: jnp.ndarray = None) -> jnp.ndarray:
    """`[B, m, d]`, `[B, n, d]` -> `[B, r, d]`; inputs where `input_mask [B, n]` is False are
    left out."""
    if self.use_positional_embedding and not self.input_positions and memory.shape[-2]:
      memory = AddPositionEmbedding(name='read_pos_embed')(memory)  # (None when m = 0.)
    tokens = jax.vmap(concat_memory_input)(memory, inputs)  # Shape: [B, m+n, d].
    if self.use_positional_embedding and self.input_positions:
      tokens = AddPositionEmbedding(name='read_pos_embed')(tokens)
    return summarize.make_summarizer(self.summarizer, self.num_tokens, self.dropout_rate,
                                     name='summarize')(
                                         tokens, train, summary_mask(memory, input_mask))


class EraseAddWrite(nn.Module):
  """Erase/add write in the style of Neural Turing Machines (Scenic's `TokenAddEraseWrite`).

  k write heads soft-select memory slots (an MLP over each slot of the memory, softmax over
  the slots); erase and add vectors come from the control tokens (the processing unit's
  outputs) through a token-mixing MLP to k vectors, then a channel MLP. Every MLP is Scenic's
  `MlpBlock` (dropout after each Dense).

  With `ntm=False` this is Scenic's computation, quirks included: the erase vectors are the raw
  MLP outputs (so `1 - select*erase` is not confined to [0, 1]), and the add term is
  `mean_k(1 - select_k ⊗ add_k)` (`erase_add`). With `ntm=True` the erase vectors go through a
  sigmoid and the add term is `mean_k(select_k ⊗ add_k)` (`ntm_erase_add`), as in the NTM and
  the TTM paper: an erase in [0, 1] per slot and channel, and slots that no head selects keep
  their content.

  Attributes:
    num_heads: k, write heads (Scenic: 8).
    bottleneck_dim: hidden width of the MLPs.
    dropout_rate: MLP dropout.
    ntm: the NTM's write instead of Scenic's.
  """
  num_heads: int = 8
  bottleneck_dim: int = 64
  dropout_rate: float = 0.0
  ntm: bool = False

  def _mlp(self, x, out_dim, name, train):
    x = nn.gelu(mlp_dense(self.bottleneck_dim, f'{name}_hidden')(x))
    x = Dropout(self.dropout_rate)(x, train)
    return Dropout(self.dropout_rate)(mlp_dense(out_dim, f'{name}_out')(x), train)

  def _head_vectors(self, control, name, train):
    """Control tokens `[B, r, d]` -> k vectors `[B, k, d]` (token-mixing then channel MLP)."""
    x = nn.LayerNorm(name=f'{name}_norm')(control)
    x = self._mlp(jnp.swapaxes(x, 1, 2), self.num_heads, f'{name}_tokens', train)
    return self._mlp(jnp.swapaxes(x, 1, 2), control.shape[-1], f'{name}_channels', train)

  @nn.compact
  def __call__(self, memory: jnp.ndarray, control: jnp.ndarray,
               train: bool = False) -> jnp.ndarray:
    """`[B, m, d]`, `[B, r, d]` -> `[B, m, d]`."""
    logits = self._mlp(nn.LayerNorm(name='select_norm')(memory), self.num_heads, 'select',
                       train)  # Shape: [B, m, k].
    select = jax.nn.softmax(jnp.swapaxes(logits, 1, 2), axis=-1)  # Shape: [B, k, m].
    erase_vectors = self._head_vectors(control, 'erase', train)  # Shape: [B, k, d].
    if self.ntm:
      erase_vectors = jax.nn.sigmoid(erase_vectors)
    add = self._head_vectors(control, 'add', train)  # Shape: [B, k, d].
    self.sow('intermediates', 'select', select)
    self.sow('intermediates', 'erase', erase_vectors)
    self.sow('intermediates', 'add', add)
    write = ntm_erase_add if self.ntm else erase_add
    return jax.vmap(write)(memory, select, erase_vectors, add)


class MemoryWrite(nn.Module):
  """Writes a new memory of m tokens from memory, inputs and the processing unit's outputs.

  Attributes:
    memory_size: m.
    memory_mode: a key of MEMORY_MODES.
    use_positional_embedding: add a learned embedding per position of
      `[memory; inputs; outputs]` before summarizing (not in the erase/add writes, which do
      not summarize: Scenic creates that embedding in 'TL-AddErase' and never uses it).
    input_positions: as in `MemoryRead` (False: an embedding per position of
      `[memory; outputs]`, none on the inputs).
    dropout_rate: dropout of the write (none in 'TL-AddErase': Scenic builds that write
      without passing its dropout rate on).
  """
  memory_size: int
  memory_mode: str = 'TL'
  use_positional_embedding: bool = False
  input_positions: bool = True
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, memory: jnp.ndarray, inputs: jnp.ndarray, outputs: jnp.ndarray,
               train: bool = False, input_mask: jnp.ndarray = None) -> jnp.ndarray:
    """`[B, m, d]`, `[B, n, d]`, `[B, r, d]` -> `[B, m, d]`; inputs where `input_mask [B, n]`
    is False are left out."""
    summarizer, method = MEMORY_MODES[self.memory_mode]
    if method == 'erase_add':
      return EraseAddWrite(name='erase_add')(memory, outputs, train)
    if method == 'ntm_erase_add':
      return EraseAddWrite(dropout_rate=self.dropout_rate, ntm=True, name='erase_add')(
          memory, outputs, train)
    if method == 'fifo':
      return jax.vmap(fifo_write)(memory, inputs, outputs)
    if self.use_positional_embedding and not self.input_positions:
      fixed = AddPositionEmbedding(name='write_pos_embed')(
          jnp.concatenate([memory, outputs], axis=1))  # Shape: [B, m+r, d].
      memory, outputs = fixed[:, :memory.shape[1]], fixed[:, memory.shape[1]:]
    tokens = jax.vmap(concat_for_write)(memory, inputs, outputs)  # Shape: [B, m+n+r, d].
    if self.use_positional_embedding and self.input_positions:
      tokens = AddPositionEmbedding(name='write_pos_embed')(tokens)
    return summarize.make_summarizer(summarizer, self.memory_size, self.dropout_rate,
                                     name='summarize')(
                                         tokens, train,
                                         summary_mask(memory, input_mask, outputs.shape[1]))
