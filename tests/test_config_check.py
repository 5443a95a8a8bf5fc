"""Config checking: every field has a rule, the shipped configs pass, bad values are named."""

import pytest

from configs import mult
from ttm_jax import config_check
from ttm_jax import factory

CONFIG_ARGS = ('', 'runlocal', 'paper', 'stage=3', 'places', 'runlocal,places', 'coupled',
               'products')


@pytest.mark.parametrize('arg', CONFIG_ARGS)
def test_every_field_has_a_rule_and_the_configs_pass(arg):
  config = mult.get_config(arg)
  assert sorted(config_check.fields(config)) == sorted(config_check.RULES)
  config_check.check(config)


@pytest.mark.parametrize('field, value, message', [
    ('train.steps_per_epoch', 0, 'config.train.steps_per_epoch: expected an integer at least 1, '
     'got 0'),
    ('eval.batch_size', 0, 'config.eval.batch_size: expected an integer at least 1, got 0'),
    ('eval.sizes', '1x1x1', "config.eval.sizes: '1x1x1': expected rows like"),
    ('eval.sizes', '0x1', "config.eval.sizes: '0x1': expected rows like"),
    ('eval.sizes', '1x1,99-10', "config.eval.sizes: '99-10': the range runs from 99 down"),
    ('eval.sizes', '1-999999', "config.eval.sizes: '1-999999' has operands of 6 digits"),
    ('train.steps_per_call', 7, 'config.train.steps_per_call: 7 does not divide '
     'config.train.steps_per_epoch=200'),
    ('optim.plateau_factor', 0.0, 'config.optim.plateau_factor: expected a number in (0, 1]'),
    ('eval.sizes', '6x6', "config.eval.sizes: '6x6' has operands of 6 digits; "
     'config.task.max_digits is 5'),
    ('task.max_digits', 2, "config.task.max_digits: 2 is too small for the stages "
     "'1,5,2,6,3,7,4': they need 4"),
    ('model.num_heads', 3, 'config.model.hidden_size: 64 is not divisible by '
     'config.model.num_heads=3'),
    ('model.memory_mode', 'TLX', "config.model.memory_mode: 'TLX' is not one of 'TL', "),
    ('model.kind', 'transformer', "config.model.kind: 'transformer' reads one token per step"),
    ('model.dropout_rate', 1.0, 'config.model.dropout_rate: expected a number in [0, 1), got 1.0'),
    ('optim.peak_lr', float('nan'), 'config.optim.peak_lr: expected a finite number, got nan'),
    ('optim.eps', 0.0, 'config.optim.eps: expected a number in (0, inf], got 0.0'),
    ('train.stages', '1,9', 'config.train.stages: expected distinct stages in 1..7, got [1, 9]'),
    ('train.stages', '1;2', "config.train.stages: '1;2': expected stage numbers separated"),
    ('train.start_stage', 8, 'config.train.start_stage: expected an integer between 1 and 7, '
     'got 8'),
    ('train.init_from', '/no/such/run', "config.train.init_from: '/no/such/run' is not a "
     'directory'),
    ('trace.every_epochs', 0, 'config.trace.every_epochs: expected an integer at least 1, got 0'),
    ('checkpoint.keep', 0, 'config.checkpoint.keep: expected an integer at least 1, got 0'),
    ('task.positions', 'cells', "config.task.positions: 'cells' is not one of 'slots', 'places'"),
    ('task.place_offset', 3, "config.task.place_offset: an offset is for "
     "config.task.positions='places' only"),
    ('task.place_offset', -1, 'config.task.place_offset: expected an integer between 0 and 100'),
    ('task.coupled', True, "config.task.coupled: coupling is for config.task.positions='places' "
     "with config.task.digit_order='lsb' (the step then says which answer place is written)"),
    ('task.product_steps', True, "config.task.product_steps: product steps are for "
     "config.task.positions='places' with config.task.digit_order='lsb', uncoupled (the step "
     "then says which answer place is written)"),
    ('task.skip_unpaired', True, 'config.task.skip_unpaired: skipping is for '
     'config.task.product_steps=True'),
])
def test_a_bad_value_names_its_field(field, value, message):
  _assert_refused(mult.get_config(), field, value, message)


def _assert_refused(config, field, value, message):
  """Setting `field` to `value` in `config` makes the check fail with `message`."""
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(factory.ConfigError) as raised:
    config_check.check(config)
  assert str(raised.value).startswith(message), str(raised.value)


def test_last_stage_before_start_stage():
  config = mult.get_config('stage=3')
  config.train.last_stage = 2
  with pytest.raises(factory.ConfigError, match=r"^config.train.last_stage: stage 2 comes "
                     r"before config.train.start_stage=3 in '1,5,2,6,3,7,4'$"):
    config_check.check(config)


def test_last_stage_not_in_the_stage_order():
  config = mult.get_config()
  config.train.stages = '1,2,5'
  with pytest.raises(factory.ConfigError, match=r"^config.train.last_stage: stage 4 is not in "
                     r"config.train.stages='1,2,5'$"):
    config_check.check(config)


def test_a_wrong_type_from_a_config_file_is_named():
  config = mult.get_config()
  with config.unlocked():
    del config.train.augment
    config.train.augment = 'yes'  # What a hand-written config file might hold.
  with pytest.raises(factory.ConfigError,
                     match=r"^config.train.augment: expected true or false, got 'yes'$"):
    config_check.check(config)


def test_unknown_and_missing_fields():
  config = mult.get_config()
  with config.unlocked():
    config.train.batchsize = 3
  with pytest.raises(factory.ConfigError, match=r'^config.train.batchsize: unknown field$'):
    config_check.check(config)
  config = mult.get_config()
  with config.unlocked():
    del config.eval.seed
  with pytest.raises(factory.ConfigError, match=r'^config.eval.seed: missing$'):
    config_check.check(config)


@pytest.mark.parametrize('arg, expected', [
    ('', {}),
    ('runlocal', {'runlocal': True}),
    ('runlocal=False', {}),
    ('runlocal=0,paper=TRUE', {'paper': True}),
    ('stage=3,runlocal=1', {'stage': 3, 'runlocal': True}),
    ('places', {'places': True}),
    ('coupled', {'coupled': True}),
    ('products', {'products': True}),
])
def test_config_arguments_parse_booleans_strictly(arg, expected):
  assert mult.parse_arg(arg) == {'stage': 0, 'runlocal': False, 'paper': False, 'places': False,
                                 'coupled': False, 'products': False, **expected}


def test_runlocal_false_is_the_default_model():
  assert mult.get_config('runlocal=false').to_dict() == mult.get_config().to_dict()


@pytest.mark.parametrize('arg, message', [
    ('runlocal=maybe', "config argument runlocal: expected true, false, 1 or 0, got 'maybe'"),
    ('runlocal=', "config argument runlocal: expected true, false, 1 or 0, got ''"),
    ('stage=abc', "config argument stage: expected a non-negative integer, got 'abc'"),
    ('stage', "config argument stage: expected a non-negative integer, got ''"),
    ('stage=٣', "config argument stage: expected a non-negative integer, got '٣'"),
    ('stag=3', 'config argument stag: unknown; known: stage, runlocal, paper, places, coupled, '
     'products'),
])
def test_bad_config_arguments(arg, message):
  with pytest.raises(ValueError) as raised:
    mult.parse_arg(arg)
  assert str(raised.value) == message


@pytest.mark.parametrize('field, value, message', [
    ('task.layout', 'packed', "config.task.positions: 'places' needs config.task.framing="
     "'problem' and config.task.layout='aligned'"),
    ('model.memory_mode', 'fifo', "config.task.positions: 'places' reads problems of any "
     "length: config.model.memory_mode='fifo' cannot leave their padding out"),
    ('model.memory_mode', 'pool', "config.task.positions: 'places' reads problems of any "
     "length: config.model.memory_mode='pool'"),
])
def test_places_goes_with_an_aligned_problem_and_a_learned_summary(field, value, message):
  _assert_refused(mult.get_config('places'), field, value, message)


def test_places_argument_turns_the_candidate_on():
  config = mult.get_config('places')
  assert (config.task.positions, config.task.max_digits, config.task.place_offset) == (
      'places', 12, 6)
  assert config.eval.sizes.endswith(',4x4,1-9999,5x5,6x6,7x7,8x8')
  assert mult.get_config().task.positions == 'slots'
