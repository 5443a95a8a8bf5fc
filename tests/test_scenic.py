"""ttm_jax.scenic, and the port measured against Scenic's own Token Turing Machine.

The parity tests import Scenic's unmodified `token_turing/model.py` from a checkout of Scenic
at the pinned commit (`$TTM_SCENIC_DIR`, else `../shared/reference/scenic` beside the
repository: `scenic.scenic_source`; without one they skip, saying how to fetch it, and fail in
CI), initialize its modules, convert their
parameters and require the same new memory and outputs from ours. Both sides run the same
way: op by op, or, for our scanned encoder (whose loop XLA always compiles), compiled with
`jax.jit`. (Scenic op by op against our compiled scan differs by rounding, which Scenic's
'TL-AddErase' write amplifies to ~1e-3 over three steps.) Run with `-s` to see the table of
the largest differences.
"""

import os
import pathlib
import subprocess
import sys
import types

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import MultiplicationTTM
from ttm_jax import TokenTuringMachineEncoder
from ttm_jax import TokenTuringMachineSimpleUnit
from ttm_jax import TokenTuringMachineUnit
from ttm_jax import model as model_lib
from ttm_jax import scenic
from ttm_jax import streaming

# Scenic's TokenLearnerMHA still passes `inputs_kv`, which Flax deprecates.
pytestmark = pytest.mark.filterwarnings('ignore:The inputs_kv arg:DeprecationWarning')

MODES = ('TL', 'TL-MHA', 'TL-AddErase')
UNITS = ('transformer', 'mixer', 'mlp')
# d = 24: divisible by the 8 heads of Scenic's TokenLearnerMHA and the 12 heads that Scenic's
# encoder leaves its unit with.
DIM, STEPS, TOKENS = 24, 3, 5
UNIT = dict(process_size=4, memory_size=8, num_layers=2, mlp_dim=32, num_heads=4)
# Scenic's encoder passes neither mlp_dim nor num_heads: its unit has the defaults 512 and 12.
ENCODER = dict(process_size=4, memory_size=8, num_layers=1)
SCENIC_UNIT_DEFAULTS = dict(mlp_dim=512, num_heads=12)
TOLERANCE = 1e-6
MAX_DIFFERENCES = {}  # (module, memory mode, processing unit, train) -> max |ours - Scenic|.


@pytest.fixture(scope='module')
def scenic_ttm(skip_or_fail):
  """Scenic's `token_turing/model.py`, imported from `scenic.scenic_source()` (skips without
  it, saying how to fetch it; fails in CI)."""
  reference, problem = scenic.scenic_source()
  if problem:
    skip_or_fail(problem)
  sys.path.insert(0, str(reference))
  # Its ViT module imports tensorflow.io.gfile for checkpoint loading that the TTM never
  # calls: a bare module stands in while it is imported.
  stubs = {'tensorflow': types.ModuleType('tensorflow'),
           'tensorflow.io': types.ModuleType('tensorflow.io')}
  stubs['tensorflow'].io = stubs['tensorflow.io']
  stubs['tensorflow.io'].gfile = None
  missing = [name for name in stubs if name not in sys.modules]
  sys.modules.update({name: stubs[name] for name in missing})
  try:
    from scenic.projects.token_turing import model  # pylint: disable=g-import-not-at-top
  finally:
    for name in missing:
      del sys.modules[name]
  return model


@pytest.fixture(scope='module', autouse=True)
def print_parity_table():
  yield
  if MAX_DIFFERENCES:
    print('\nmax |ours - Scenic| (new memory and outputs; encoder: outputs)')
    print(f'{"module":<16}{"memory_mode":<14}{"unit":<13}{"train=False":>13}{"train=True":>13}')
    for module, mode, unit in sorted({key[:3] for key in MAX_DIFFERENCES}):
      cells = ''.join(f'{MAX_DIFFERENCES.get((module, mode, unit, train), float("nan")):>13.2e}'
                      for train in (False, True))
      print(f'{module:<16}{mode:<14}{unit:<13}{cells}')


def _run(module, params, *args, compiled=False):
  """`module.apply` with train=False and with train=True (dropout 0, its RNG given)."""
  def both(params, *args):
    return [module.apply({'params': params}, *args, train,
                         rngs={'dropout': jax.random.PRNGKey(3)}) for train in (False, True)]
  return jax.jit(both)(params, *args) if compiled else both(params, *args)


def _normal(seed, *shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _max_difference(a, b) -> float:
  return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                          jax.tree_util.tree_leaves(b)))


def _flat(tree):
  return {'/'.join(path): value for path, value in flax.traverse_util.flatten_dict(
      dict(tree)).items()}


def _assert_parity(key, theirs, ours, *args, compiled=False):
  """Initializes Scenic's module `theirs`, converts its parameters for `ours`, runs both
  (train False and True) and records the largest difference under `key + (train,)`.

  Returns:
    `(Scenic's parameters, ours, Scenic's result with train=False)`.
  """
  scenic_params = theirs.init(jax.random.PRNGKey(0), *args)['params']
  like = jax.eval_shape(ours.init, jax.random.PRNGKey(0), *args)['params']
  params = scenic.from_scenic(scenic_params, like)
  expected = _run(theirs, scenic_params, *args, compiled=compiled)
  for train, got in zip((False, True), _run(ours, params, *args, compiled=compiled)):
    MAX_DIFFERENCES[key + (train,)] = _max_difference(got, expected[train])
  assert max(MAX_DIFFERENCES[key + (train,)] for train in (False, True)) <= TOLERANCE
  return scenic_params, params, expected[0]


@pytest.mark.parametrize('unit', UNITS)
@pytest.mark.parametrize('mode', MODES)
def test_unit_computes_what_scenic_computes(scenic_ttm, mode, unit):
  config = dict(memory_mode=mode, processing_unit=unit, use_positional_embedding=True, **UNIT)
  memory, inputs = _normal(1, 2, UNIT['memory_size'], DIM), _normal(2, 2, TOKENS, DIM)
  scenic_params, params, (new_memory, _) = _assert_parity(
      ('unit', mode, unit), scenic_ttm.TokenTuringMachineUnit(**config),
      TokenTuringMachineUnit(**config), memory, inputs)
  assert float(jnp.abs(new_memory - memory).max()) > 0.1  # The memory was rewritten.

  back = scenic.to_scenic(params, like=scenic_params)
  for path, value in _flat(scenic_params).items():
    if mode == 'TL-AddErase' and path.startswith('write_pos_embed'):  # Unused by Scenic.
      np.testing.assert_array_equal(_flat(back)[path], 0.0)
    else:
      np.testing.assert_array_equal(_flat(back)[path], value, err_msg=path)


@pytest.mark.parametrize('unit', UNITS)
def test_simple_unit_with_scenics_split_computes_what_scenic_computes(scenic_ttm, unit):
  memory, inputs = _normal(1, 2, UNIT['memory_size'], DIM), _normal(2, 2, TOKENS, DIM)
  scenic_params, params, _ = _assert_parity(
      ('simple unit', '-', unit),
      scenic_ttm.TokenTuringMachineSimpleUnit(processing_unit=unit, **UNIT),
      TokenTuringMachineSimpleUnit(processing_unit=unit, scenic_split=True, **UNIT),
      memory, inputs)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         scenic.to_scenic(params, like=scenic_params), scenic_params)


@pytest.mark.parametrize('scan', [True, False], ids=['scan', 'loop'])
@pytest.mark.parametrize('unit', UNITS)
@pytest.mark.parametrize('mode', MODES)
def test_encoder_computes_what_scenic_computes(scenic_ttm, mode, unit, scan):
  _assert_parity(
      ('encoder (scan)' if scan else 'encoder (loop)', mode, unit),
      scenic_ttm.TokenTuringMachineEncoder(memory_mode=mode, processing_unit=unit,
                                           **ENCODER),
      TokenTuringMachineEncoder(memory_mode=mode, processing_unit=unit, scan=scan,
                                **ENCODER, **SCENIC_UNIT_DEFAULTS),
      _normal(4, 2, STEPS, TOKENS, DIM), compiled=scan)


def test_scenic_parameters_run_in_the_streaming_api(scenic_ttm):
  """A Scenic encoder's parameters, converted, drive the multiplication model's streaming
  steps: each step's memory is the one Scenic's unit writes, its logits those of Scenic's
  outputs (up to rounding: XLA fuses the unit with the embedding and head there)."""
  model = MultiplicationTTM(hidden_size=DIM, tokens_per_step=TOKENS, max_steps=STEPS,
                            memory_mode='TL-AddErase', use_positional_embedding=False,
                            memory_init='zeros', dropout_rate=0.0, **ENCODER,
                            **SCENIC_UNIT_DEFAULTS)
  tokens = jax.random.randint(jax.random.PRNGKey(5), (2, STEPS, TOKENS), 0, 13)
  params = model.init(jax.random.PRNGKey(0), tokens)['params']
  embedded = model.apply({'params': params}, tokens, jnp.arange(STEPS)[None], method='embed')
  encoder = scenic_ttm.TokenTuringMachineEncoder(memory_mode='TL-AddErase', **ENCODER)
  scenic_params = encoder.init(jax.random.PRNGKey(6), embedded)['params']
  params = dict(params, encoder=scenic.from_scenic(scenic_params, like=params['encoder']))

  unit = scenic_ttm.TokenTuringMachineUnit(memory_mode='TL-AddErase', **ENCODER)
  memory = jnp.zeros((2, ENCODER['memory_size'], DIM))
  state = streaming.init_state(model, params, 2)
  for t in range(STEPS):
    memory, outputs = jax.jit(unit.apply)({'params': scenic_params['unit_function']}, memory,
                                          embedded[:, t])
    logits = model.apply({'params': params}, outputs, method='logits')
    expected = model_lib.apply_eos_masking(logits, state['done'])
    state, got = streaming.step(model, params, state, tokens[:, t])
    np.testing.assert_allclose(state['memory'], memory, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize('mode, unit', [('TL-AddErase', 'transformer'), ('TL-MHA', 'mixer'),
                                        ('TL', 'mlp')])
def test_initializers_are_scenics(scenic_ttm, mode, unit):
  """Every parameter starts from the distribution Scenic draws it from (by its scale: the
  candidates, e.g. lecun_normal and xavier_uniform kernels, differ by over 20% here)."""
  config = dict(memory_mode=mode, processing_unit=unit, use_positional_embedding=True,
                process_size=4, memory_size=8, num_layers=1, mlp_dim=128, num_heads=4)
  memory, inputs = jnp.zeros((1, 8, 32)), jnp.zeros((1, 5, 32))
  theirs = scenic.from_scenic(scenic_ttm.TokenTuringMachineUnit(**config).init(
      jax.random.PRNGKey(0), memory, inputs)['params'])
  ours = TokenTuringMachineUnit(**config).init(jax.random.PRNGKey(0), memory, inputs)['params']
  for path, expected in _flat(theirs).items():
    got = _flat(ours)[path]
    if np.all(expected == expected.reshape(-1)[0]):  # LayerNorm scales and biases, zeros.
      np.testing.assert_array_equal(got, expected, err_msg=path)
      continue
    ratio = float(jnp.std(got) / jnp.std(expected))
    low, high = (0.85, 1.18) if expected.size >= 256 else (0.1, 10.0)
    assert low < ratio < high, (path, ratio)


def _our_unit_params(mode='TL', unit='transformer', positional=True, **fields):
  module = TokenTuringMachineUnit(memory_mode=mode, processing_unit=unit,
                                  use_positional_embedding=positional, **{**UNIT, **fields})
  return module.init(jax.random.PRNGKey(0), _normal(1, 1, UNIT['memory_size'], DIM),
                     _normal(2, 1, TOKENS, DIM))['params']


@pytest.mark.parametrize('mode', MODES + ('TL-AddErase-NTM',))
@pytest.mark.parametrize('unit', UNITS)
def test_round_trip_through_scenics_tree(mode, unit):
  params = _our_unit_params(mode, unit)
  back = scenic.from_scenic(scenic.to_scenic(params), like=params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)
  encoder = {'unit': _our_unit_params(mode, unit, positional=False)}
  assert set(scenic.to_scenic(encoder)) == {'unit_function'}
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         scenic.from_scenic(scenic.to_scenic(encoder)), encoder)


def test_errors_name_the_first_path_that_does_not_fit():
  params = _our_unit_params()
  tree = scenic.to_scenic(params)

  def error(fn, *args, **kwargs):
    with pytest.raises(scenic.ParameterTreeError) as raised:
      fn(*args, **kwargs)
    assert '\n' not in str(raised.value)
    return str(raised.value)

  extra = dict(tree, Foo_0={'kernel': jnp.zeros(3)})
  assert error(scenic.from_scenic, extra).startswith('Foo_0/kernel: no counterpart')
  missing = {k: v for k, v in tree.items() if k != 'TokenLearnerModuleV11_1'}
  assert error(scenic.from_scenic, missing).startswith(
      'TokenLearnerModuleV11_1/LayerNorm_0: missing')
  batched = dict(tree, read_pos_embed={'pos_embedding': jnp.zeros((2, 13, DIM))})
  assert error(scenic.from_scenic, batched).startswith('read/read_pos_embed/embedding: Scenic')
  wider = _our_unit_params(mlp_dim=64)
  assert error(scenic.from_scenic, tree, like=wider) == (
      'process/block_0/mlp/hidden/bias: shape (32,), expected (64,)')
  assert error(scenic.to_scenic, {'unit': params, 'initial': {'memory': jnp.zeros((8, DIM))}}
               ).startswith('initial/memory: a learned initial memory')
  assert error(scenic.to_scenic, _our_unit_params('pool')).startswith(
      'read/summarize/projection/bias: no counterpart')
  assert error(scenic.to_scenic, _our_unit_params('fifo')).startswith(
      'write/write_pos_embed/embedding: missing')
  assert error(scenic.from_scenic, {'unit_function': tree, 'extra': {}}).startswith('extra:')


# ---- Where the Scenic code comes from. ----

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_scenic_source_is_taken_from_the_environment_variable(monkeypatch, tmp_path):
  monkeypatch.setenv(scenic.SCENIC_DIR_VARIABLE, str(tmp_path))
  folder, problem = scenic.scenic_source()
  assert folder == tmp_path
  assert problem.startswith(f'no Scenic source to compare with: TTM_SCENIC_DIR={tmp_path} holds '
                            'no scenic/projects/token_turing/model.py')
  (tmp_path / 'scenic' / 'projects' / 'token_turing').mkdir(parents=True)
  (tmp_path / 'scenic' / 'projects' / 'token_turing' / 'model.py').touch()
  assert scenic.scenic_source() == (tmp_path, '')
  monkeypatch.delenv(scenic.SCENIC_DIR_VARIABLE)
  assert scenic.scenic_source()[0] == scenic.DEFAULT_SCENIC_DIR


def test_without_scenic_the_comparison_skips_saying_how_to_fetch_it_and_fails_in_ci(tmp_path):
  """A parity test run with TTM_SCENIC_DIR naming an empty folder: skipped, with the pinned
  commit and the fetch command in the reason; with CI=true, failed."""
  one_test = f'{__file__}::test_scenic_parameters_run_in_the_streaming_api'
  env = {k: v for k, v in os.environ.items() if k != 'CI'}
  env[scenic.SCENIC_DIR_VARIABLE] = str(tmp_path)
  results = {}
  for ci in ('', 'true'):
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '-n', '0', '-p', 'no:cacheprovider', '-rsf', one_test],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(env, CI=ci) if ci else env)
    results[ci] = done
  skipped, failed = results[''], results['true']
  assert skipped.returncode == 0 and '1 skipped' in skipped.stdout, skipped.stdout[-2000:]
  for done in (skipped, failed):
    text = ' '.join(done.stdout.split())
    assert f'TTM_SCENIC_DIR={tmp_path} holds no scenic/projects/token_turing/model.py' in text
    assert scenic.SCENIC_COMMIT[:12] in text and 'git clone https://github.com/google-research/' \
        'scenic' in text, text[-2000:]
  assert failed.returncode == 1 and '1 error' in failed.stdout, failed.stdout[-2000:]
  assert 'CI=true: a test that cannot run fails in CI instead of skipping' in \
      ' '.join(failed.stdout.split())


def test_docs_name_the_pinned_scenic_commit_and_how_to_fetch_it():
  for doc in (ROOT / 'docs' / 'scenic.md', ROOT / 'README.md'):
    text = doc.read_text()
    assert scenic.SCENIC_COMMIT in text and 'TTM_SCENIC_DIR' in text, doc.name
  assert scenic.FETCH_COMMAND in (ROOT / 'docs' / 'scenic.md').read_text()
