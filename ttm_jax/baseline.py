"""A plain causal Transformer language model, the TTM's baseline: it attends over the whole
token history, so decoding step t with a KV cache reads t cached keys and values, while a TTM
step reads a memory of fixed size.

`__call__` runs a whole sequence (training); `init_cache` and `decode_step` decode one token at
a time with a key/value cache of a fixed length.
"""

from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Cache = Dict[str, jnp.ndarray]


def causal_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                     visible: jnp.ndarray) -> jnp.ndarray:
  """Softmax(q k^T / sqrt(head_dim)) v over the visible keys.

  Args:
    q: `[B, T, H, hd]` queries.
    k, v: `[B, L, H, hd]` keys and values.
    visible: `[T, L]` bool, which keys each query may see.

  Returns:
    `[B, T, H, hd]`.
  """
  logits = jnp.einsum('bthd,blhd->bhtl', q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  logits = jnp.where(visible[None, None], logits, jnp.finfo(logits.dtype).min)
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
    position `write_at`.

    Returns:
      `(y [B, T, d], keys, values)` with the updated `[B, L, H, hd]` cache.
    """
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    y = nn.LayerNorm(name='attention_norm')(x)
    qkv = nn.DenseGeneral((3, self.num_heads, head_dim), name='qkv')(y)  # [B, T, 3, H, hd].
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype), (0, write_at, 0, 0))
    values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype), (0, write_at, 0, 0))
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
  """
  vocab_size: int = 13
  hidden_size: int = 128
  num_layers: int = 4
  num_heads: int = 4
  mlp_dim: int = 512
  max_len: int = 1024

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.positions = nn.Embed(self.max_len, self.hidden_size)
    self.blocks = [CausalBlock(self.num_heads, self.mlp_dim) for _ in range(self.num_layers)]
    self.norm = nn.LayerNorm()
    self.head = nn.Dense(self.vocab_size)

  def init_cache(self, batch_size: int, length: int) -> Cache:
    """An empty cache for `length` positions: `keys`/`values` `[layers, B, L, H, hd]`."""
    shape = (self.num_layers, batch_size, length, self.num_heads,
             self.hidden_size // self.num_heads)
    return {'keys': jnp.zeros(shape), 'values': jnp.zeros(shape)}

  def _run(self, tokens, start, cache: Cache, visible) -> Tuple[jnp.ndarray, Cache]:
    x = self.embed(tokens) + self.positions(start + jnp.arange(tokens.shape[1]))
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
    """One token `[B]` at `position` (int scalar): `(cache, logits [B, vocab])`; attends over
    the cache's first `position + 1` entries."""
    visible = (jnp.arange(cache['keys'].shape[2]) <= position)[None, :]
    logits, cache = self._run(token[:, None], position, cache, visible)
    return cache, logits[:, 0]
