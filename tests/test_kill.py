"""Training stopped for real, at many moments (issue 34): SIGKILL while a step saves, while its
best copy saves and at random times; SIGTERM in the middle of an epoch, during a save and at
random times; a disk that fills up. After each, the same command resumes, and the run must end
as an uninterrupted one does: the same final parameters, the same best step and parameters, the
same metrics rows (timings aside), bit for bit."""

import glob
import os
import random
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from ttm_jax import checkpoint as ckpt
from ttm_jax import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
# Two calls per epoch, so that a stop can land in the middle of an epoch or at its end.
FLAGS = ['--config=configs/mult.py:runlocal', f'--config.train.num_steps={STEPS}',
         '--config.train.patience=1000', '--config.train.steps_per_call=5']
TIMINGS = ('examples_per_second', 'elapsed_seconds')  # Wall clock: differs from run to run.
TMP = '*.orbax-checkpoint-tmp*'  # An orbax save in progress.


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """The environment of the training processes: one persistent compilation cache, which
  caches every program, so that a restart does not compile again."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp('jax_cache')),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


def _start(workdir, env, *flags):
  return subprocess.Popen([sys.executable, 'main.py', *FLAGS, f'--workdir={workdir}', *flags],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)


def _steps(folder):
  """The finalized steps in an orbax folder."""
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) \
      if os.path.isdir(folder) else []


def _rows(workdir):
  rows, cut = files.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert not cut
  return rows


def _count_rows(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  return open(path).read().count('\n') if os.path.exists(path) else 0


def _new_match(pattern, _=None):
  """A moment: a new path matching `pattern` appears (one there at the start does not count)."""
  before = set(glob.glob(pattern))

  def reached():
    now = set(glob.glob(pattern))
    before.intersection_update(now)  # Gone since: if it comes back, it is new.
    return bool(now - before)
  return reached


def _after_a_row(workdir, seconds):
  """A moment: `seconds` after the process appends its first metrics row (training runs)."""
  before, since = _count_rows(workdir), []

  def reached():
    if not since and _count_rows(workdir) > before:
      since.append(time.perf_counter())
    return bool(since) and time.perf_counter() - since[0] >= seconds
  return reached


# main.py, with a SIGTERM the process sends itself as it draws the batches of its third call:
# the first call of its second epoch (two calls an epoch), so the stop lands mid-epoch. (A
# signal from outside lands there only by chance: the host dispatches an epoch's calls in a
# moment and then waits for the device.)
STOP_MID_EPOCH = """
import os, runpy, signal, sys
from ttm_jax import train
draw, calls = train.draw_batches, []
def draw_batches(dataset, count):
  calls.append(count)
  if len(calls) == 3:
    os.kill(os.getpid(), signal.SIGTERM)
  return draw(dataset, count)
train.draw_batches = draw_batches
sys.argv = ['main.py'] + sys.argv[1:]
runpy.run_path('main.py', run_name='__main__')
"""


def _stop_mid_epoch(workdir, env):
  result = subprocess.run([sys.executable, '-c', STOP_MID_EPOCH, *FLAGS, f'--workdir={workdir}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(env, GLIBC_TUNABLES='glibc.malloc.hugetlb=1'))
  return True, result.returncode, result.stdout + result.stderr


def _stop_at(workdir, env, moment, sig):
  """Starts training in `workdir`, sends `sig` when `moment(workdir)` is reached (polled every
  millisecond or so); returns `(signalled, returncode, output)`."""
  process = _start(workdir, env)
  reached = moment(workdir)
  signalled = False
  while process.poll() is None:
    if reached():
      process.send_signal(sig)
      signalled = True
      break
    time.sleep(0.001)
  output, _ = process.communicate(timeout=300)
  return signalled, process.returncode, output


def _params(folder, step):
  # On this process's device, whichever devices the run saved from.
  workdir, name = os.path.split(os.path.normpath(folder))
  params, _ = ckpt.load_params(workdir, ckpt.read_config(workdir), step=step, folder=name)
  return jax.tree_util.tree_leaves(params)


def _assert_same_run(workdir, reference):
  """`workdir` ended as `reference` did: final and best parameters, best step, metrics."""
  for a, b in zip(_params(os.path.join(reference, 'checkpoints'), STEPS),
                  _params(os.path.join(workdir, 'checkpoints'), STEPS), strict=True):
    np.testing.assert_array_equal(a, b)
  best = _steps(os.path.join(reference, 'best'))
  assert _steps(os.path.join(workdir, 'best')) == best and len(best) == 1
  for a, b in zip(_params(os.path.join(reference, 'best'), best[0]),
                  _params(os.path.join(workdir, 'best'), best[0]), strict=True):
    np.testing.assert_array_equal(a, b)
  strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows
                        if r['split'] in ('train', 'eval')]
  assert strip(_rows(workdir)) == strip(_rows(reference))
  assert not glob.glob(os.path.join(workdir, '*', TMP))  # Cut saves were cleaned up.


def _kill_chain(workdir, env, log):
  """SIGKILLs at four moments, then trains to the end."""
  best, latest = os.path.join(workdir, 'best'), os.path.join(workdir, 'checkpoints')
  # 1. While best/10 saves: checkpoints/10 is complete, best/ has nothing yet. The restart
  # must put step 10 in best/ before it saves or deletes anything.
  signalled, code, output = _stop_at(workdir, env, lambda w: _new_match(
      os.path.join(best, TMP)), signal.SIGKILL)
  log.append(('kill while best saves', signalled, code))
  assert signalled and code == -signal.SIGKILL, output
  assert _steps(latest) == [10] and _steps(best) == [], (_steps(latest), _steps(best))
  moments = [
      ('kill while a step saves', lambda w: _new_match(os.path.join(latest, TMP))),
      ('kill at a random time', lambda w: _after_a_row(w, random.uniform(0, 0.8))),
      ('kill while best saves', lambda w: _new_match(os.path.join(best, TMP))),
  ]
  for name, moment in moments:
    signalled, code, output = _stop_at(workdir, env, moment, signal.SIGKILL)
    log.append((name, signalled, code))
    assert code in (0, -signal.SIGKILL), output
    if code == 0:
      return
  result = subprocess.run([sys.executable, 'main.py', *FLAGS, f'--workdir={workdir}'], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr
  log.append(('resumed to the end', True, 0))


def _term_chain(workdir, env, log):
  """SIGTERMs at three moments (each must save and exit with 130), then trains to the end."""
  latest = os.path.join(workdir, 'checkpoints')
  moments = [
      ('stop in the middle of an epoch', None),
      ('stop while a step saves', lambda w: _new_match(os.path.join(latest, TMP))),
      ('stop at a random time', lambda w: _after_a_row(w, random.uniform(0, 0.8))),
  ]
  stopped_at = []
  for name, moment in moments:
    signalled, code, output = (_stop_at(workdir, env, moment, signal.SIGTERM) if moment else
                               _stop_mid_epoch(workdir, env))
    log.append((name, signalled, code))
    assert code in (0, 130), output
    if code == 0:
      return stopped_at
    stopped_at.append(int(output.rsplit('stopping: saved step ', 1)[1].split()[0]))
  result = subprocess.run([sys.executable, 'main.py', *FLAGS, f'--workdir={workdir}'], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr
  return stopped_at


def test_killed_and_stopped_runs_resume_to_the_uninterrupted_result(tmp_path, env):
  reference, killed, stopped = (str(tmp_path / name) for name in
                                ('reference', 'killed', 'stopped'))
  straight = _start(reference, env)
  # The chains start once the programs are compiled (and cached) by the reference run.
  while not _steps(os.path.join(reference, 'checkpoints')) and straight.poll() is None:
    time.sleep(0.05)
  kill_log, term_log, failures, stops = [], [], [], []

  def run(chain, *args):
    try:
      result = chain(*args)
      if result:
        stops.extend(result)
    except BaseException as e:  # pylint: disable=broad-except  # Re-raised below.
      failures.append(e)

  threads = [threading.Thread(target=run, args=(_kill_chain, killed, env, kill_log)),
             threading.Thread(target=run, args=(_term_chain, stopped, env, term_log))]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  output, _ = straight.communicate(timeout=300)
  assert straight.returncode == 0, output
  if failures:
    raise failures[0]
  print('SIGKILL:', kill_log, '\nSIGTERM:', term_log, 'stopped at steps', stops)
  assert sum(signalled for _, signalled, _ in kill_log) >= 3, kill_log
  assert stops and any(step % 10 for step in stops), stops  # One stop mid-epoch at least.
  _assert_same_run(killed, reference)
  _assert_same_run(stopped, reference)
