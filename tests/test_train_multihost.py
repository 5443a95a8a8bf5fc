"""Multi-host training for real: two processes on 127.0.0.1 (one CPU device each) train the
runlocal config; only process 0 writes metrics and config.json, orbax writes the checkpoints
from both, a single process restores them, and the losses equal one process with two devices."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20
WORKER = f'''
import sys
import jax
if sys.argv[2] != 'single':
  jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                             process_id=int(sys.argv[2]))
from configs import mult
from ttm_jax import train
config = mult.get_config('runlocal')
config.train.update(num_steps={STEPS}, steps_per_epoch=10)
config.eval.update(num_examples=8)
train.train_and_evaluate(config, sys.argv[3])
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(process_id: str, workdir, devices: int, address: str = ''):
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=(
      os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}'))
  return subprocess.Popen([sys.executable, '-c', WORKER, address, process_id, str(workdir)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _finish(processes):
  """Waits for every process (killing all on a timeout); returns their outputs."""
  try:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.communicate()
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output
  return outputs


def _losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  return [(r['step'], r['split']) for r in rows if r['split'] not in ('start', 'end')], [
      r['loss'] for r in rows if r['split'] == 'train']


@pytest.mark.slow
def test_two_processes_train_like_one_with_two_devices(tmp_path):
  multi, single = tmp_path / 'multi', tmp_path / 'single'
  address = f'127.0.0.1:{_free_port()}'
  _finish([_start(str(i), multi, 1, address) for i in range(2)])
  _finish([_start('single', single, 2)])

  written = sorted(os.path.relpath(os.path.join(root, name), multi)
                   for root, _, names in os.walk(multi) for name in names
                   if name == 'metrics.jsonl' or name.startswith(('events.', 'config.json')))
  assert [w for w in written if not w.startswith('tb/')] == ['config.json', 'metrics.jsonl']
  assert len([w for w in written if w.startswith('tb/events.')]) == 1
  rows, losses = _losses(multi)
  assert rows == [(10, 'train'), (10, 'eval'), (20, 'train'), (20, 'eval')]
  single_rows, single_losses = _losses(single)
  assert single_rows == rows
  np.testing.assert_allclose(losses, single_losses, rtol=1e-5)

  config = mult.get_config('runlocal')  # A single process restores what both wrote.
  params, meta = ckpt.load_params(str(multi), config, step=STEPS)
  reference, _ = ckpt.load_params(str(single), config, step=STEPS)
  assert meta['curriculum']['stage'] == 1
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
