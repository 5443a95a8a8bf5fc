"""Disks that fill up and folders that cannot be written (issue 34), on real file systems: a
small tmpfs, mounted for the test where the machine allows it (root; skipped elsewhere), filled
up or remounted read-only. Each failure is one `error:` line and a non-zero exit, and what was
saved before is intact."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from configs import mult
from ttm_jax import cli
from ttm_jax import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


@pytest.fixture
def tmpfs(tmp_path):
  """`mount(path, options)`: mounts a tmpfs at `path` (`options` such as `size=2m`; `remount`
  among them changes a mounted one), unmounted when the test ends; skips the test where
  mounting is not allowed."""
  mounted = []

  def mount(path, options):
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                            capture_output=True, text=True)
    if result.returncode:
      pytest.skip(f'cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})')
    if 'remount' not in options:
      mounted.append(str(path))

  yield mount
  for path in reversed(mounted):
    subprocess.run(['umount', '-l', path], check=False)


def _fill(folder):
  """Fills the file system of `folder` up: ENOSPC for the next write."""
  with open(os.path.join(folder, 'filler'), 'wb', buffering=0) as f:
    try:
      while True:
        f.write(b'\0' * 4096)
    except OSError:
      pass


def _errors(stderr):
  lines = stderr.strip().splitlines()
  assert 'Traceback' not in stderr, stderr
  return lines


TRAIN = ['main.py', '--config=configs/mult.py:runlocal', '--config.train.num_steps=40',
         '--config.train.patience=1000']


def test_full_disk_in_training_is_one_line_and_the_run_resumes_once_there_is_room(tmp_path,
                                                                               tmpfs):
  disk = tmp_path / 'disk'
  tmpfs(disk, 'size=1500k')  # Room for about two steps (~560 KiB each) and the best copy.
  workdir = str(disk / 'run')
  result = subprocess.run([sys.executable, *TRAIN, f'--workdir={workdir}'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  (line,) = _errors(result.stderr)  # It used to be 110 tracebacks.
  assert line.startswith('error: cannot save step ') and line.endswith(
      'No space left on device; free some space and run it again (what was saved before is '
      'intact)'), line
  tmpfs(disk, 'remount,size=20m')
  result = subprocess.run([sys.executable, *TRAIN, f'--workdir={workdir}'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert 'resumed from step' in result.stderr
  rows, cut = files.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert not cut
  keys = [(r['step'], r['split']) for r in rows if r['split'] in ('train', 'eval')]
  assert keys == [(step, split) for step in (10, 20, 30, 40) for split in ('train', 'eval')]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['20', '30', '40']


def _shipped_copy(disk):
  workdir = str(disk / 'mult')
  shutil.copytree(SHIPPED, workdir)
  return workdir


def _eval_config(trace=0):
  config = mult.get_config()
  config.eval.update(sizes='1x1,2x1', num_per_size=20)
  config.trace.num_examples = trace
  return config


def test_full_disk_in_eval_leaves_eval_json_as_it_was(tmp_path, tmpfs, digest, capsys):
  disk = tmp_path / 'disk'
  tmpfs(disk, 'size=4m')
  workdir = _shipped_copy(disk)
  _fill(str(disk))
  before = digest(workdir)
  # The export's own folder as the output folder (an export's outputs go elsewhere by default).
  assert cli.run('eval', _eval_config(), workdir, out=workdir) == 1
  captured = capsys.readouterr()
  (line,) = _errors(captured.err)
  assert line.startswith(f'error: {workdir}/') and 'No space left on device' in line, line
  assert digest(workdir) == before  # eval.json was not cut (it used to be, to 4096 bytes).
  json.load(open(os.path.join(workdir, 'eval.json')))


@pytest.mark.parametrize('mode', ['train', 'eval', 'trace'])
def test_read_only_workdir_is_one_line_before_the_work(tmp_path, tmpfs, digest, capsys, mode):
  disk = tmp_path / 'disk'
  tmpfs(disk, 'size=8m')
  workdir = _shipped_copy(disk)
  tmpfs(disk, 'remount,ro')
  before = digest(workdir)
  config = _eval_config(trace=1)
  out = workdir if mode != 'train' else None  # Eval and trace told to write there.
  assert cli.run(mode, config, workdir, problem='12x34' if mode == 'trace' else None,
                 out=out) == 1
  captured = capsys.readouterr()
  (line,) = _errors(captured.err)
  assert 'Read-only file system; the folder is read-only: use a writable one' in line, line
  assert captured.out == ''  # No evaluation table: it stopped before the work.
  assert digest(workdir) == before
