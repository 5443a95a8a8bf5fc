"""Shared fixtures, and settings for every test process (and the processes it starts).

The tests compile many small programs and run each briefly, so XLA's backend optimizations
(LLVM) are turned down, and compiled programs are shared through a persistent cache. The test
files run in parallel (pytest-xdist, `pytest.ini`), the longest ones first.
"""

import atexit
import functools
import hashlib
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_backend_optimization_level=0').strip()
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='ttm_jax_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import pytest  # pylint: disable=g-import-not-at-top

from configs import mult
from ttm_jax import train


# The test files that take longest (minutes), started first so that the others fill in beside
# them on the other workers.
LONGEST_FIRST = ('test_profiling.py', 'test_train.py', 'test_scaling.py', 'test_ttm.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # Stable: the order within each file stays.


def digest(path) -> dict:
  """`{relative file path: sha256}` of every file under `path`: compare before and after to
  show that nothing saved there was written, added or deleted."""
  files = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      with open(full, 'rb') as f:
        files[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
  return files


@pytest.fixture(name='digest', scope='session')
def fixture_digest():
  """`digest(path)` (above), for tests."""
  return digest


def in_ci() -> bool:
  """Whether this runs in CI (`CI=true`, as GitHub Actions, GitLab CI and `.ci/run` set it)."""
  return os.environ.get('CI', '').lower() in ('true', '1', 'yes')


def skip_or_fail(reason: str):
  """Skips the test with `reason`; in CI (`in_ci`) fails it instead, so that a check that
  cannot run there is not passed over in silence."""
  if in_ci():
    pytest.fail(f'{reason} (CI={os.environ["CI"]}: a test that cannot run fails in CI instead '
                'of skipping)', pytrace=False)
  pytest.skip(reason)


@pytest.fixture(name='skip_or_fail', scope='session')
def fixture_skip_or_fail():
  """`skip_or_fail(reason)` (above), for tests."""
  return skip_or_fail


@functools.cache
def opengl_problem() -> str:
  """Why no headless OpenGL 3.3 context (EGL) can be created here, or '' if one can."""
  import moderngl  # pylint: disable=import-outside-toplevel
  try:
    moderngl.create_standalone_context(backend='egl', require=330).release()
  except Exception as e:  # pylint: disable=broad-except  # EGL errors vary by platform.
    return f'{type(e).__name__}: {e}'.replace('\n', ' ')
  return ''


@pytest.fixture(name='opengl', scope='session')
def fixture_opengl():
  """Skips the test when no headless OpenGL 3.3 context can be created: the one reason a
  viewer test may skip (in CI it fails: `.ci/run` installs the EGL packages, or fails)."""
  if opengl_problem():
    skip_or_fail(f'no headless OpenGL 3.3 (EGL) on this machine: {opengl_problem()}; on '
                 'Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri')


@pytest.fixture(scope='session')
def traced_run(tmp_path_factory):
  """`(config, workdir)` of a runlocal model trained 20 steps (checkpoints at 10 and 20), with
  2 problems traced into `workdir/dumps` at each of its 2 evaluations and a `jax.profiler`
  trace of steps 12-13 in `workdir/profile`. Read-only for tests."""
  workdir = str(tmp_path_factory.mktemp('traced_run'))
  config = mult.get_config('runlocal')
  config.train.update(num_steps=20, steps_per_epoch=10)
  config.eval.update(num_examples=8)
  config.trace.update(num_examples=2, every_epochs=1)
  config.profile.update(first_step=12, num_steps=2)
  train.train_and_evaluate(config, workdir)
  return config, workdir


def _any_length_run(tmp_path_factory, variant: str):
  """`(config, workdir)` of `configs/mult.py:runlocal,<variant>` (operands up to 12 digits)
  trained 20 steps on stage 1 (1×1)."""
  workdir = str(tmp_path_factory.mktemp(f'{variant}_run'))
  config = mult.get_config(f'runlocal,{variant}')
  config.train.update(num_steps=20, steps_per_epoch=10)
  config.eval.update(num_examples=8, num_per_size=10, sizes='1x1,2x2,6x6')
  train.train_and_evaluate(config, workdir)
  return config, workdir


@pytest.fixture(scope='session')
def products_run(tmp_path_factory):
  """A runlocal 'products' model (one TTM step per digit product): `_any_length_run`.
  Read-only for tests."""
  return _any_length_run(tmp_path_factory, 'products')


@pytest.fixture(scope='session')
def places_run(tmp_path_factory):
  """A runlocal 'places' model: `_any_length_run`. Read-only for tests."""
  return _any_length_run(tmp_path_factory, 'places')
