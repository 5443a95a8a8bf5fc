"""A plain causal Transformer language model, the TTM's baseline: it attends over the whole
token history, so decoding step t with a KV cache reads t cached keys and values, while a TTM
step reads a memory of fixed size.

`CausalTransformer.__call__` runs a whole sequence (training); `init_cache` and `decode_step`
decode one token at a time with a key/value cache of a fixed length.
`MultiplicationTransformer` gives it the interface of `model.MultiplicationTTM` (stream framing,
the same output head and EOS masking, its cache as the streaming "memory"), so the training,
evaluation and streaming code run it unchanged.
"""

from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttm_jax import model as model_lib

Cache = Dict[str, jnp.ndarray]


def causal_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                     visible: jnp.ndarray) -> jnp.ndarray:
  """Softmax(q k^T / sqrt(head_dim)) v over the visible keys.

  Args:
    q: `[B, T, H, hd]` queries.
    k, v: `[B, L, H, hd]` keys and values.
    visible: `[T, L]` or `[B, T, L]` bool, which keys each query may see.

  Returns:
    `[B, T, H, hd]`.
  """
  logits = jnp.einsum('bthd,blhd->bhtl', q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  visible = visible[None, None] if visible.ndim == 2 else visible[:, None]
  logits = jnp.where(visible, logits, jnp.finfo(logits.dtype).min)
  return jnp.einsum('bhtl,blhd->bthd', jax.nn.softmax(logits, axis=-1), v)


class CausalBlock(nn.Module):
  """Pre-norm block: causal self-attention, then a GELU MLP, each with a residual.

  Attributes:
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
  """
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jnp.ndarray, keys: jnp.ndarray, values: jnp.ndarray,
               visible: jnp.ndarray, write_at: jnp.ndarray):
    """Attends from `x [B, T, d]` over the cache with this chunk's keys/values written at
    position `write_at` (int scalar, or `[B]` for a position per sequence).

    Returns:
      `(y [B, T, d], keys, values)` with the updated `[B, L, H, hd]` cache.
    """
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    y = nn.LayerNorm(name='attention_norm')(x)
    qkv = nn.DenseGeneral((3, self.num_heads, head_dim), name='qkv')(y)  # [B, T, 3, H, hd].
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    write = jax.vmap(lambda cache, new, at: jax.lax.dynamic_update_slice(cache, new, (at, 0, 0)))
    write_at = jnp.broadcast_to(write_at, x.shape[:1])
    keys = write(keys, k.astype(keys.dtype), write_at)
    values = write(values, v.astype(values.dtype), write_at)
    attended = causal_attention(q, keys, values, visible)
    x = x + nn.DenseGeneral(dim, axis=(-2, -1), name='out')(attended)
    y = nn.gelu(nn.Dense(self.mlp_dim, name='mlp_hidden')(nn.LayerNorm(name='mlp_norm')(x)))
    y = nn.Dense(dim, name='mlp_out')(y)
    return x + y, keys, values


class CausalTransformer(nn.Module):
  """A causal Transformer LM over tokens.

  Attributes:
    vocab_size: tokens.
    hidden_size: d.
    num_layers: blocks.
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
    max_len: longest sequence (position-embedding table size).
    multiplication_head: use the TTM model's output head (`model.OutputHead`: digits, EOS,
      "no digit") instead of one Dense layer over the vocabulary.
  """
  vocab_size: int = 13
  hidden_size: int = 128
  num_layers: int = 4
  num_heads: int = 4
  mlp_dim: int = 512
  max_len: int = 1024
  multiplication_head: bool = False

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.positions = nn.Embed(self.max_len, self.hidden_size)
    self.blocks = [CausalBlock(self.num_heads, self.mlp_dim) for _ in range(self.num_layers)]
    self.norm = nn.LayerNorm()
    self.head = model_lib.OutputHead() if self.multiplication_head else nn.Dense(
        self.vocab_size)

  def init_cache(self, batch_size: int, length: int) -> Cache:
    """An empty cache for `length` positions: `keys`/`values` `[layers, B, L, H, hd]`."""
    shape = (self.num_layers, batch_size, length, self.num_heads,
             self.hidden_size // self.num_heads)
    return {'keys': jnp.zeros(shape), 'values': jnp.zeros(shape)}

  def _run(self, tokens, start, cache: Cache, visible) -> Tuple[jnp.ndarray, Cache]:
    start = jnp.broadcast_to(start, tokens.shape[:1])  # Shape: [B].
    x = self.embed(tokens) + self.positions(start[:, None] + jnp.arange(tokens.shape[1]))
    keys, values = [], []
    for layer, block in enumerate(self.blocks):
      x, k, v = block(x, cache['keys'][layer], cache['values'][layer], visible, start)
      keys.append(k)
      values.append(v)
    return self.head(self.norm(x)), {'keys': jnp.stack(keys), 'values': jnp.stack(values)}

  def __call__(self, tokens: jnp.ndarray) -> jnp.ndarray:
    """`tokens [B, T]` -> logits `[B, T, vocab]`, each position seeing itself and the past."""
    length = tokens.shape[1]
    visible = jnp.tril(jnp.ones((length, length), bool))
    return self._run(tokens, 0, self.init_cache(tokens.shape[0], length), visible)[0]

  def decode_step(self, cache: Cache, token: jnp.ndarray,
                  position: jnp.ndarray) -> Tuple[Cache, jnp.ndarray]:
    """One token `[B]` at `position` (int scalar or `[B]`): `(cache, logits [B, vocab])`;
    attends over the cache's first `position + 1` entries."""
    position = jnp.broadcast_to(position, token.shape)
    visible = jnp.arange(cache['keys'].shape[2])[None, None, :] <= position[:, None, None]
    logits, cache = self._run(token[:, None], position, cache, visible)
    return cache, logits[:, 0]


class MultiplicationTransformer(nn.Module):
  """The causal Transformer baseline over the stream framing (one token per step), with the
  interface of `model.MultiplicationTTM`: its "memory" is the key/value cache, laid out as
  `[B, 2 * layers * max_len, d]` tokens, so it grows with the sequence instead of staying m.

  Attributes:
    hidden_size, num_layers, num_heads, mlp_dim: the Transformer's.
    max_len: the longest sequence (steps of the largest problem).
  """
  hidden_size: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  max_len: int = 23

  def setup(self):
    self.lm = CausalTransformer(hidden_size=self.hidden_size, num_layers=self.num_layers,
                                num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                max_len=self.max_len, multiplication_head=True)

  def _to_memory(self, cache: Cache) -> jnp.ndarray:
    """`[layers, B, L, H, hd]` keys and values -> `[B, 2 * layers * L, d]`."""
    both = jnp.stack([cache['keys'], cache['values']])  # Shape: [2, layers, B, L, H, hd].
    both = jnp.moveaxis(both, 2, 0)
    return both.reshape(both.shape[0], -1, self.hidden_size)

  def _to_cache(self, memory: jnp.ndarray) -> Cache:
    heads = self.num_heads
    both = memory.reshape(memory.shape[0], 2, self.num_layers, self.max_len, heads,
                          self.hidden_size // heads)
    both = jnp.moveaxis(both, 0, 2)
    return {'keys': both[0], 'values': both[1]}

  def initial_memory(self, batch_size: int) -> jnp.ndarray:
    """An empty cache, `[batch_size, 2 * layers * max_len, d]`."""
    return self._to_memory(self.lm.init_cache(batch_size, self.max_len))

  def step(self, memory: jnp.ndarray, step_tokens: jnp.ndarray, step_index: jnp.ndarray,
           train: bool = False) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """`([B, 2*layers*L, d], [B, 1] tokens, step index)` -> `(memory, logits [B, 13])`."""
    del train  # No dropout.
    cache, logits = self.lm.decode_step(self._to_cache(memory), step_tokens[:, -1],
                                        step_index)
    return self._to_memory(cache), logits

  def __call__(self, inputs: jnp.ndarray, train: bool = False,
               answer_start: int = 0) -> jnp.ndarray:
    """Teacher-forced: `inputs [B, S, 1]` -> logits `[B, S, 13]` (EOS-masked unless `train`)."""
    logits = self.lm(inputs[..., -1])
    return logits if train else model_lib.mask_after_answer_eos(logits, answer_start)
