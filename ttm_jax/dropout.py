"""Dropout with 16-bit random draws from an unrolled threefry: cheap masks on a CPU.

`nn.Dropout` draws one 32-bit random word per element (`jax.random.bernoulli` compares a
float32 uniform), and on a CPU JAX lowers its threefry hash as a loop of five iterations (to
keep compile times short), which XLA cannot fuse into one pass: the random words were the
costliest part of the paper model's dropout layers. Here

* each 32-bit word serves two elements: its two 16-bit halves are compared with
  `round(rate * 2**16)`. The drop rate is exact to 2**-16 (0.1 becomes 6554 / 65536 =
  0.100006); kept elements are scaled by 1 / (1 - that rate), so the expectation is unchanged;
* the words are threefry-2x32 (20 rounds, the hash behind `jax.random`) of the counters
  0, 1, ... under the layer's key, written out round by round so that XLA fuses the whole hash
  into one elementwise loop (5x faster on the CPUs measured). They equal
  `jax.extend.random.threefry_2x32(key, counters)`.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

HALF_WORD = 2 ** 16  # Values a 16-bit half of a random word takes.
ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32 rotation constants.
KEY_PARITY = 0x1BD11BDA  # Threefry's key-schedule constant.


def _rotate_left(x: jnp.ndarray, bits: int) -> jnp.ndarray:
  return (x << jnp.uint32(bits)) | (x >> jnp.uint32(32 - bits))


def threefry_2x32(key: jnp.ndarray, x1: jnp.ndarray, x2: jnp.ndarray):
  """Threefry-2x32 with 20 rounds, unrolled.

  Args:
    key: uint32 `[2]`.
    x1, x2: uint32 counters of one shape (the two halves of the input block).

  Returns:
    `(y1, y2)`, uint32 of that shape.
  """
  schedule = (key[0], key[1], key[0] ^ key[1] ^ jnp.uint32(KEY_PARITY))
  x1, x2 = x1 + schedule[0], x2 + schedule[1]
  for block in range(5):  # Four rounds, then a key injection.
    for bits in ROTATIONS[block % 2]:
      x1 = x1 + x2
      x2 = _rotate_left(x2, bits) ^ x1
    x1 = x1 + schedule[(block + 1) % 3]
    x2 = x2 + schedule[(block + 2) % 3] + jnp.uint32(block + 1)
  return x1, x2


def random_words(key: jax.Array, count: int) -> jnp.ndarray:
  """`count` random uint32 words: threefry-2x32 of the counters `0 .. 2h-1` under `key`
  (h = ceil(count / 2); the first half of the counters is hashed with the second)."""
  key_words = jax.random.key_data(key).reshape(-1)
  half = -(-count // 2)
  counters = jnp.arange(half, dtype=jnp.uint32)
  words = jnp.concatenate(threefry_2x32(key_words, counters, counters + jnp.uint32(half)))
  return words[:count]


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
  words = random_words(key, -(-size // 2))
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
