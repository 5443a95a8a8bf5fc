"""Checks a config (`configs/mult.py`) once, where it is loaded: the type and range of every
field, and the fields that must agree with each other.

`RULES` maps each field (its dotted path under `config.`) to a check
`(value, config) -> why-it-is-wrong or None`; a new field needs one line there (a test checks
that every field of the configs has one). `check` raises `factory.ConfigError` with
`config.<field>: <why>` for the first bad field.
"""

import math
import os
import re
from typing import Any, Callable, List, Optional

import ml_collections

from ttm_jax import data
from ttm_jax import factory
from ttm_jax import processing
from ttm_jax import ttm
from ttm_jax.model import COMPUTE_DTYPES

Check = Callable[[Any, ml_collections.ConfigDict], Optional[str]]


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int = None, high: int = None) -> Check:
  """An int (not a bool) in `[low, high]` (either bound optional)."""
  def check(value, config):
    del config
    if not _is_int(value):
      return f'expected an integer, got {value!r}'
    if (low is not None and value < low) or (high is not None and value > high):
      bounds = (f'between {low} and {high}' if high is not None else f'at least {low}')
      return f'expected an integer {bounds}, got {value}'
    return None
  return check


def number(low: float = None, high: float = None, low_open: bool = False,
           high_open: bool = False) -> Check:
  """A finite int or float in the range from `low` to `high` (each bound closed unless
  `*_open`, each optional)."""
  def check(value, config):
    del config
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
      return f'expected a finite number, got {value!r}'
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
      interval = (('(' if low_open else '[') + f'{"-inf" if low is None else low}, '
                  f'{"inf" if high is None else high}' + (')' if high_open else ']'))
      return f'expected a number in {interval}, got {value}'
    return None
  return check


def boolean(value, config) -> Optional[str]:
  """True or False."""
  del config
  return None if isinstance(value, bool) else f'expected true or false, got {value!r}'


def one_of(choices) -> Check:
  """One of `choices`."""
  def check(value, config):
    del config
    return None if value in tuple(choices) else (f'{value!r} is not one of '
                                                 f'{", ".join(map(repr, choices))}')
  return check


def both(*checks: Check) -> Check:
  """Each of `checks` in turn; the first complaint."""
  def check(value, config):
    return next(filter(None, (c(value, config) for c in checks)), None)
  return check


def _stages(config) -> Optional[List[int]]:
  """`config.train.stages` as stage numbers, or None if malformed."""
  text = config.train.stages
  if not isinstance(text, str) or not re.fullmatch(r'[0-9]+(,[0-9]+)*', text):
    return None
  return [int(stage) for stage in text.split(',')]


def _stage_order(value, config) -> Optional[str]:
  order = _stages(config)
  if order is None:
    return f'{value!r}: expected stage numbers separated by commas, e.g. "1,2,5"'
  try:
    data.check_stage_order(order)
  except ValueError as e:
    return str(e)
  return None


def _in_stages(value, config) -> Optional[str]:
  order = _stages(config) or []
  if value not in order:
    return f'stage {value} is not in config.train.stages={config.train.stages!r}'
  return None


def _not_before_start(value, config) -> Optional[str]:
  order = _stages(config) or []
  if config.train.start_stage in order and value in order and \
      order.index(value) < order.index(config.train.start_stage):
    return (f'stage {value} comes before config.train.start_stage='
            f'{config.train.start_stage} in {config.train.stages!r}')
  return None


def _fits_stages(value, config) -> Optional[str]:
  stages = [s for s in _stages(config) or [] if 1 <= s <= len(data.STAGES)]
  needed = max(map(data.stage_digits, stages), default=0)
  if needed > value:
    return f'{value} is too small for the stages {config.train.stages!r}: they need {needed}'
  return None


def _sizes(value, config) -> Optional[str]:
  try:
    ranges = data.size_ranges(value)
  except ValueError as e:
    return str(e)
  longest = max(data.longest_operand(high_a, high_b) for _, high_a, _, high_b in ranges)
  if longest > config.task.max_digits:
    return (f'{value!r} has operands of {longest} digits; config.task.max_digits is '
            f'{config.task.max_digits}')
  return None


def _sizes_or_empty(value, config) -> Optional[str]:
  return None if value == '' else _sizes(value, config)


def _layout(value, config) -> Optional[str]:
  if value == 'aligned' and config.task.framing != 'problem':
    return "'aligned' is for config.task.framing='problem' only"
  return None


def _positions(value, config) -> Optional[str]:
  if value != 'places':
    return None
  if config.task.framing != 'problem' or config.task.layout != 'aligned':
    return "'places' needs config.task.framing='problem' and config.task.layout='aligned'"
  if config.model.memory_mode in ('pool', 'fifo'):
    return (f"'places' reads problems of any length: config.model.memory_mode="
            f"{config.model.memory_mode!r} cannot leave their padding out")
  return None


def _place_offset(value, config) -> Optional[str]:
  if value and config.task.positions != 'places':
    return "an offset is for config.task.positions='places' only"
  return None


def _coupled(value, config) -> Optional[str]:
  if value and (config.task.positions != 'places' or config.task.digit_order != 'lsb'):
    return ("coupling is for config.task.positions='places' with config.task.digit_order="
            "'lsb' (the step then says which answer place is written)")
  return None


def _product_steps(value, config) -> Optional[str]:
  if value and (config.task.positions != 'places' or config.task.digit_order != 'lsb'
                or config.task.coupled):
    return ("product steps are for config.task.positions='places' with config.task."
            "digit_order='lsb', uncoupled (the step then says which answer place is written)")
  return None


def _skip_unpaired(value, config) -> Optional[str]:
  if value and not config.task.product_steps:
    return 'skipping is for config.task.product_steps=True'
  return None


def _kind(value, config) -> Optional[str]:
  if value == 'transformer' and config.task.framing != 'stream':
    return "'transformer' reads one token per step: it needs config.task.framing='stream'"
  return None


def divisibility(other: str, divides: bool) -> Check:
  """The value divides `config.<other>` (`divides`), or is divisible by it (skipped while
  `other` is not a positive integer: its own rule says so)."""
  def check(value, config):
    section, name = other.split('.')
    count = config[section][name]
    if not _is_int(count) or count < 1:
      return None
    if divides and count % value:
      return f'{value} does not divide config.{other}={count}'
    if not divides and value % count:
      return f'{value} is not divisible by config.{other}={count}'
    return None
  return check


def _workdir_or_empty(value, config) -> Optional[str]:
  del config
  if not isinstance(value, str):
    return f'expected a directory or "", got {value!r}'
  if value and not os.path.isdir(value):
    return f'{value!r} is not a directory'
  return None


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
FRACTION = number(0, 1)

RULES = {
    'seed': NON_NEGATIVE,
    'task.max_digits': both(integer(1, 100), _fits_stages),
    'task.framing': one_of(data.FRAMINGS),
    'task.digit_order': one_of(data.DIGIT_ORDERS),
    'task.layout': both(one_of(data.LAYOUTS), _layout),
    'task.positions': both(one_of(data.POSITIONS), _positions),
    'task.place_offset': both(integer(0, 100), _place_offset),
    'task.coupled': both(boolean, _coupled),
    'task.product_steps': both(boolean, _product_steps),
    'task.skip_unpaired': both(boolean, _skip_unpaired),
    'model.kind': both(one_of(factory.MODEL_KINDS), _kind),
    'model.hidden_size': both(POSITIVE, divisibility('model.num_heads', divides=False)),
    'model.memory_size': POSITIVE,
    'model.process_size': POSITIVE,
    'model.memory_mode': one_of(ttm.MEMORY_MODES),
    'model.processing_unit': one_of(processing.PROCESSING_UNITS),
    'model.num_layers': POSITIVE,
    'model.num_heads': POSITIVE,
    'model.mlp_dim': POSITIVE,
    'model.use_positional_embedding': boolean,
    'model.memory_init': one_of(ttm.MEMORY_INITS),
    'model.simple_unit': boolean,
    'model.step_embedding': boolean,
    'model.dropout_rate': number(0, 1, high_open=True),
    'model.token_embed_stddev': number(0, low_open=True),
    'model.scan': boolean,
    'model.scan_unroll': NON_NEGATIVE,
    'model.remat': boolean,
    'model.compute_dtype': one_of(COMPUTE_DTYPES),
    'optim.peak_lr': number(0),
    'optim.warmup_steps': NON_NEGATIVE,
    'optim.decay_steps': NON_NEGATIVE,
    'optim.end_lr': number(0),
    'optim.restart_per_stage': boolean,
    'optim.plateau_factor': number(0, 1, low_open=True),
    'optim.plateau_patience': POSITIVE,
    'optim.plateau_min_improvement': number(0, 1, high_open=True),
    'optim.b1': number(0, 1, high_open=True),
    'optim.b2': number(0, 1, high_open=True),
    'optim.eps': number(0, low_open=True),
    'optim.weight_decay': number(0),
    'optim.clip_norm': number(0, low_open=True),
    'optim.ema_decay': number(0, 1, high_open=True),
    'train.batch_size': POSITIVE,
    'train.shard_params': boolean,
    'train.num_steps': NON_NEGATIVE,
    'train.max_seconds': number(0),
    'train.steps_per_epoch': POSITIVE,
    'train.steps_per_call': both(POSITIVE, divisibility('train.steps_per_epoch', divides=True)),
    'train.stages': _stage_order,
    'train.start_stage': both(integer(1, len(data.STAGES)), _in_stages),
    'train.last_stage': both(integer(1, len(data.STAGES)), _in_stages, _not_before_start),
    'train.threshold': FRACTION,
    'train.final_threshold': FRACTION,
    'train.window': POSITIVE,
    'train.max_epochs_per_stage': POSITIVE,
    'train.patience': POSITIVE,
    'train.augment': boolean,
    'train.review': number(0, 1, high_open=True),
    'train.init_from': _workdir_or_empty,
    'eval.num_examples': POSITIVE,
    'eval.num_per_size': POSITIVE,
    'eval.seed': NON_NEGATIVE,
    'eval.sizes': _sizes,
    'eval.track': _sizes_or_empty,
    'eval.batch_size': POSITIVE,
    'eval.log_examples': NON_NEGATIVE,
    'trace.num_examples': NON_NEGATIVE,
    'trace.every_epochs': POSITIVE,
    'monitor.max_abs_memory': number(0, low_open=True),
    'profile.first_step': NON_NEGATIVE,
    'profile.num_steps': NON_NEGATIVE,
    'checkpoint.keep': POSITIVE,
    'checkpoint.every_epochs': POSITIVE,
}


def fields(config: ml_collections.ConfigDict, prefix: str = '') -> List[str]:
  """The dotted paths of every leaf field of `config`."""
  paths = []
  for name, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      paths += fields(value, f'{prefix}{name}.')
    else:
      paths.append(prefix + name)
  return paths


def check(config: ml_collections.ConfigDict):
  """Raises factory.ConfigError (`config.<field>: <why>`) for the first field, in the order of
  `RULES`, that is missing or wrong, or for a field that has no rule."""
  present = fields(config)
  unknown = [path for path in present if path not in RULES]
  if unknown:
    raise factory.ConfigError(f'config.{unknown[0]}: unknown field')
  for path, rule in RULES.items():
    if path not in present:
      raise factory.ConfigError(f'config.{path}: missing')
    section, _, name = path.rpartition('.')
    why = rule(config[section][name] if section else config[name], config)
    if why:
      raise factory.ConfigError(f'config.{path}: {why}')
