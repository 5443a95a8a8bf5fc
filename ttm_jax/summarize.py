"""Token summarization: reduce N tokens to k tokens (TTM paper §3.1).

The pure functions work on one example (`[N, d]`) and are `jax.vmap`/`jax.jit`-able; the
Flax modules wrap them for batches (`[B, N, d]`). Every summarizer also sows its weights
`[B, k, N]` into the `intermediates` collection as `weights` (free unless that collection is
mutable), so tracing can show which tokens each summary token was made of. The learned summarizers
take an optional `mask [B, N]`: tokens where it is False get no weight (padding, issue 36), so
the summary is the one of the other tokens alone.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttm_jax.dropout import Dropout
from ttm_jax.processing import mlp_dense

SUMMARIZERS = ('mlp', 'mha', 'pool')


def normalize_weights(logits: jnp.ndarray) -> jnp.ndarray:
  """Softmax over tokens of per-token importance logits.

  Args:
    logits: `[N, k]`, one logit per (token, summary token).

  Returns:
    weights `[k, N]`, each row summing to 1.
  """
  return jax.nn.softmax(logits.T, axis=-1)


def weighted_sum(tokens: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
  """Summary tokens as weighted sums: `[N, d]`, `[k, N]` -> `[k, d]`."""
  return weights @ tokens


def pooling_weights(num_tokens: int, k: int) -> np.ndarray:
  """Adaptive average-pooling weights `[k, N]`: row i averages tokens [⌊iN/k⌋, ⌈(i+1)N/k⌉).

  Works for any N >= 1 (groups overlap when N < k), so it can write a memory larger than
  its input.
  """
  weights = np.zeros((k, num_tokens), np.float32)
  for i in range(k):
    start = (i * num_tokens) // k
    stop = max(-(-(i + 1) * num_tokens // k), start + 1)
    weights[i, start:stop] = 1.0 / (stop - start)
  return weights


class TokenLearner(nn.Module):
  """TokenLearner v1.1: an MLP scores each token for each of k outputs (Scenic's `TL`).

  `LayerNorm -> Dense(bottleneck) -> gelu -> Dense(k)` (Scenic's `MlpBlock`, its initializers
  included) gives `[B, N, k]` logits; softmax over the N tokens; the k outputs are weighted
  sums of the (un-normalized) input tokens.

  Attributes:
    num_tokens: k, the number of summary tokens.
    bottleneck_dim: hidden width of the scoring MLP.
    dropout_rate: dropout after each Dense of the scoring MLP.
  """
  num_tokens: int
  bottleneck_dim: int = 64
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool = False,
               mask: jnp.ndarray = None) -> jnp.ndarray:
    """`[B, N, d]` (and `mask [B, N]`) -> `[B, k, d]`."""
    x = nn.LayerNorm(name='norm')(tokens)
    x = mlp_dense(self.bottleneck_dim, 'hidden')(x)
    x = Dropout(self.dropout_rate)(nn.gelu(x), train)
    logits = mlp_dense(self.num_tokens, 'scores')(x)  # Shape: [B, N, k].
    logits = Dropout(self.dropout_rate)(logits, train)
    if mask is not None:
      logits = jnp.where(mask[:, :, None], logits, -jnp.inf)
    weights = jax.vmap(normalize_weights)(logits)  # Shape: [B, k, N].
    self.sow('intermediates', 'weights', weights)
    return jax.vmap(weighted_sum)(tokens, weights)


class TokenLearnerMHA(nn.Module):
  """Summarization by k learned queries attending over the tokens (Scenic's `TL-MHA`).

  Attributes:
    num_tokens: k, the number of learned queries (summary tokens).
    num_heads: attention heads.
  """
  num_tokens: int
  num_heads: int = 8

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool = False,
               mask: jnp.ndarray = None) -> jnp.ndarray:
    """`[B, N, d]` (and `mask [B, N]`) -> `[B, k, d]`."""
    del train  # Deterministic, as in Scenic.
    batch, _, dim = tokens.shape
    queries = self.param('queries', nn.initializers.normal(stddev=0.02),
                         (self.num_tokens, dim))
    queries = jnp.broadcast_to(queries, (batch, self.num_tokens, dim))
    attention = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, name='attention')
    summary = attention(queries, tokens, deterministic=True, sow_weights=True,
                        mask=None if mask is None else mask[:, None, None, :])
    return summary


class PoolingSummarizer(nn.Module):
  """Summarization by adaptive average pooling into k groups, then a Dense projection."""
  num_tokens: int

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool = False,
               mask: jnp.ndarray = None) -> jnp.ndarray:
    """`[B, N, d]` -> `[B, k, d]` (no `mask`: pooling groups tokens by position)."""
    del train
    if mask is not None:
      raise ValueError('pooling summarization cannot leave tokens out (mask)')
    weights = jnp.asarray(pooling_weights(tokens.shape[1], self.num_tokens))
    self.sow('intermediates', 'weights', jnp.broadcast_to(weights, (tokens.shape[0],) +
                                                           weights.shape))
    pooled = jnp.einsum('kn,bnd->bkd', weights, tokens)
    return nn.Dense(tokens.shape[-1], name='projection')(pooled)


def make_summarizer(kind: str, num_tokens: int, dropout_rate: float = 0.0,
                    name: str = None) -> nn.Module:
  """The summarizer module for `kind` in SUMMARIZERS."""
  if kind == 'mlp':
    return TokenLearner(num_tokens, dropout_rate=dropout_rate, name=name)
  if kind == 'mha':
    return TokenLearnerMHA(num_tokens, name=name)
  if kind == 'pool':
    return PoolingSummarizer(num_tokens, name=name)
  raise ValueError(f'unknown summarizer {kind!r}; expected one of {SUMMARIZERS}')
