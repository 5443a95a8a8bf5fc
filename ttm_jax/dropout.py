"""Dropout with 16-bit random draws: half the random words of `flax.linen.Dropout`.

`nn.Dropout` draws one 32-bit random word per element (`jax.random.bernoulli` compares a
float32 uniform). On a CPU the threefry words are the costly part of a dropout layer, so here
each 32-bit word serves two elements: its two 16-bit halves are compared with
`round(rate * 2**16)`. The drop rate is exact to 2**-16 (0.1 becomes 6554 / 65536 =
0.100006); kept elements are scaled by 1 / (1 - that rate), so the expectation is unchanged.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

HALF_WORD = 2 ** 16  # Values a 16-bit half of a random word takes.


def keep_mask(key: jax.Array, shape, rate: float) -> jnp.ndarray:
  """Bernoulli keep mask of `shape`, kept with probability `1 - rate` (rate in 2**-16 steps).

  Args:
    key: a PRNG key.
    shape: the mask's shape.
    rate: drop probability in [0, 1).

  Returns:
    bool `shape`, drawn from `ceil(size / 2)` random 32-bit words.
  """
  size = math.prod(shape)
  words = jax.random.bits(key, (-(-size // 2),), jnp.uint32)
  halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size]
  return halves.reshape(shape) >= round(rate * HALF_WORD)


class Dropout(nn.Module):
  """Inverted dropout, drop probability `rate` (rounded to 2**-16), from the 'dropout' RNG.

  Attributes:
    rate: drop probability in [0, 1).
  """
  rate: float

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    """`[...]` -> `[...]`: unchanged unless `train`; else elements zeroed or scaled up."""
    threshold = round(self.rate * HALF_WORD)
    if not train or threshold == 0:
      return x
    keep = keep_mask(self.make_rng('dropout'), x.shape, self.rate)
    return jnp.where(keep, x / (1 - threshold / HALF_WORD), jnp.zeros_like(x))
