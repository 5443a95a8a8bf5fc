"""Processing units: what a TTM does with the r tokens it read (TTM paper §3.4).

All map `[B, r, d]` -> `[B, r, d]` and end in LayerNorm, as in Scenic:
a pre-norm Transformer encoder (default), an MLP-Mixer stack, or an MLP stack. Every MLP
(`FeedForward`, and the MLPs of the summarizers and the erase/add write) is initialized as
Scenic's `MlpBlock`: xavier_uniform kernels, normal(stddev=1e-6) biases.
"""

import flax.linen as nn
import jax.numpy as jnp

from ttm_jax.dropout import Dropout

PROCESSING_UNITS = ('transformer', 'mixer', 'mlp')


def mlp_dense(features: int, name: str) -> nn.Dense:
  """A Dense layer of an MLP, `[..., d] -> [..., features]`, with Scenic's `MlpBlock`
  initializers (xavier_uniform kernel, normal(stddev=1e-6) bias)."""
  return nn.Dense(features, kernel_init=nn.initializers.xavier_uniform(),
                  bias_init=nn.initializers.normal(stddev=1e-6), name=name)


class FeedForward(nn.Module):
  """`Dense(hidden_dim) -> gelu -> dropout -> Dense(out) -> dropout` (Scenic's `MlpBlock`).

  Attributes:
    hidden_dim: hidden width.
    out_dim: output width (default: the input's).
    dropout_rate: dropout after each Dense.
  """
  hidden_dim: int
  out_dim: int = None
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[..., d]` -> `[..., out_dim]`.

    The tokens go through as one `[tokens, d]` matrix: XLA's CPU backend computes a 2-D
    matmul's weight gradient up to twice as fast as a 3-D contraction's.
    """
    tokens = x.reshape(-1, x.shape[-1])
    y = nn.gelu(mlp_dense(self.hidden_dim, 'hidden')(tokens))
    y = Dropout(self.dropout_rate)(y, train)
    y = mlp_dense(self.out_dim or x.shape[-1], 'out')(y)
    y = Dropout(self.dropout_rate)(y, train)
    return y.reshape(x.shape[:-1] + y.shape[-1:])


class TransformerBlock(nn.Module):
  """Pre-norm Transformer block: `x + MHA(LN(x))`, then `x + FeedForward(LN(x))`.

  Attention logits are scaled by 1/sqrt(head_dim) (Flax's dot-product attention).

  Attributes:
    num_heads: attention heads (head_dim = d / num_heads).
    mlp_dim: FeedForward hidden width.
    dropout_rate: dropout on attention weights and after each sub-layer.
  """
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, r, d]` -> `[B, r, d]`. Sows attention weights `[B, heads, r, r]`."""
    y = nn.LayerNorm(name='attention_norm')(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout_rate,
        kernel_init=nn.initializers.xavier_uniform(), broadcast_dropout=False,
        name='attention')(y, y, deterministic=not train, sow_weights=True)
    x = x + Dropout(self.dropout_rate)(y, train)
    y = nn.LayerNorm(name='mlp_norm')(x)
    return x + FeedForward(self.mlp_dim, dropout_rate=self.dropout_rate, name='mlp')(y, train)


class TransformerEncoder(nn.Module):
  """Learned position embedding, dropout, `num_layers` pre-norm blocks, final LayerNorm.

  Attributes:
    num_layers: blocks.
    num_heads: attention heads per block.
    mlp_dim: FeedForward hidden width.
    dropout_rate: dropout rate.
  """
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, r, d]` -> `[B, r, d]`."""
    x = x + self.param('pos_embed', nn.initializers.normal(stddev=0.02), x.shape[1:])
    x = Dropout(self.dropout_rate)(x, train)
    for layer in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.mlp_dim, self.dropout_rate,
                           name=f'block_{layer}')(x, train)
    return nn.LayerNorm(name='norm')(x)


class MixerBlock(nn.Module):
  """MLP-Mixer block: token mixing across the r tokens, then channel mixing.

  Attributes:
    tokens_mlp_dim: hidden width of the token-mixing MLP (Scenic: 128).
    channels_mlp_dim: hidden width of the channel-mixing MLP.
    dropout_rate: dropout rate.
  """
  tokens_mlp_dim: int
  channels_mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, r, d]` -> `[B, r, d]`."""
    y = jnp.swapaxes(nn.LayerNorm(name='token_norm')(x), 1, 2)  # Shape: [B, d, r].
    y = FeedForward(self.tokens_mlp_dim, dropout_rate=self.dropout_rate,
                    name='token_mixing')(y, train)
    x = x + jnp.swapaxes(y, 1, 2)
    y = nn.LayerNorm(name='channel_norm')(x)
    return x + FeedForward(self.channels_mlp_dim, dropout_rate=self.dropout_rate,
                           name='channel_mixing')(y, train)


class MixerStack(nn.Module):
  """`num_layers` Mixer blocks and a final LayerNorm (Attributes as in MixerBlock)."""
  num_layers: int
  mlp_dim: int
  tokens_mlp_dim: int = 128
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, r, d]` -> `[B, r, d]`."""
    for layer in range(self.num_layers):
      x = MixerBlock(self.tokens_mlp_dim, self.mlp_dim, self.dropout_rate,
                     name=f'block_{layer}')(x, train)
    return nn.LayerNorm(name='norm')(x)


class MlpStack(nn.Module):
  """`num_layers` of `LayerNorm -> FeedForward` (per token, no residual, as in Scenic), then
  LayerNorm."""
  num_layers: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, r, d]` -> `[B, r, d]`."""
    for layer in range(self.num_layers):
      x = nn.LayerNorm(name=f'norm_{layer}')(x)
      x = FeedForward(self.mlp_dim, dropout_rate=self.dropout_rate, name=f'mlp_{layer}')(
          x, train)
    return nn.LayerNorm(name='norm')(x)


def make_processing_unit(kind: str, num_layers: int, num_heads: int, mlp_dim: int,
                         dropout_rate: float, name: str = None) -> nn.Module:
  """The processing unit for `kind` in PROCESSING_UNITS."""
  if kind == 'transformer':
    return TransformerEncoder(num_layers, num_heads, mlp_dim, dropout_rate, name=name)
  if kind == 'mixer':
    return MixerStack(num_layers, mlp_dim, dropout_rate=dropout_rate, name=name)
  if kind == 'mlp':
    return MlpStack(num_layers, mlp_dim, dropout_rate, name=name)
  raise ValueError(f'unknown processing unit {kind!r}; expected one of {PROCESSING_UNITS}')
