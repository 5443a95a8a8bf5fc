"""Builds the task framing and the model from a config (`configs/mult.py`)."""

import ml_collections

from ttm_jax import baseline
from ttm_jax import data
from ttm_jax import processing
from ttm_jax import ttm
from ttm_jax.model import COMPUTE_DTYPES
from ttm_jax.model import MultiplicationTTM

MODEL_KINDS = ('ttm', 'transformer')
_CHOICES = {'kind': MODEL_KINDS, 'memory_mode': ttm.MEMORY_MODES,
            'processing_unit': processing.PROCESSING_UNITS, 'memory_init': ttm.MEMORY_INITS,
            'compute_dtype': tuple(COMPUTE_DTYPES)}


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


def make_framing(config: ml_collections.ConfigDict) -> data.Framing:
  """The step framing of `config.task`."""
  try:
    return data.Framing(config.task.max_digits, config.task.framing, config.task.digit_order,
                       config.task.layout, config.task.positions, config.task.place_offset)
  except ValueError as e:
    raise ConfigError(f'config.task: {e}') from None


def make_model(config: ml_collections.ConfigDict):
  """The `MultiplicationTTM` of `config.model` (or, with `kind='transformer'`, the causal
  Transformer baseline `baseline.MultiplicationTransformer`), sized for `config.task`."""
  framing = make_framing(config)
  m = config.model
  for field, choices in _CHOICES.items():
    if m[field] not in choices:
      raise ConfigError(f'config.model.{field}={m[field]!r} is not one of {choices}')
  if m.hidden_size % m.num_heads:
    raise ConfigError(f'config.model.hidden_size={m.hidden_size} is not divisible by '
                      f'config.model.num_heads={m.num_heads}')
  if m.kind == 'transformer':
    if framing.tokens_per_step != 1:
      raise ConfigError("config.model.kind='transformer' reads one token per step: it needs "
                        "config.task.framing='stream'")
    return baseline.MultiplicationTransformer(
        hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
        mlp_dim=m.mlp_dim, max_len=framing.num_steps(framing.max_digits))
  # Tables that hold the largest offset ('places') on the longest operand accepted.
  max_steps = framing.num_steps(framing.max_digits) + 2 * framing.place_offset
  return MultiplicationTTM(
      hidden_size=m.hidden_size, tokens_per_step=framing.tokens_per_step,
      max_steps=max_steps if m.step_embedding else 0, positions=framing.positions,
      max_places=(2 * framing.max_digits + 1 if config.task.coupled else framing.max_digits)
      + framing.place_offset, digit_order=framing.digit_order, coupled=config.task.coupled,
      product_steps=config.task.product_steps, skip_unpaired=config.task.skip_unpaired,
      process_size=m.process_size, memory_size=m.memory_size, memory_mode=m.memory_mode,
      processing_unit=m.processing_unit, num_layers=m.num_layers, mlp_dim=m.mlp_dim,
      num_heads=m.num_heads, use_positional_embedding=m.use_positional_embedding,
      memory_init=m.memory_init, simple_unit=m.simple_unit, scan=m.scan,
      scan_unroll=m.scan_unroll, remat=m.remat, dropout_rate=m.dropout_rate,
      token_embed_stddev=m.token_embed_stddev, compute_dtype=m.compute_dtype)
