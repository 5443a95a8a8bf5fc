"""The train step on a mesh of 1 and of 4 (forced host) devices gives the same losses."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Three train steps of the runlocal model on a data-parallel mesh over all devices.
SCRIPT = '''
import json, jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from configs import mult
from ttm_jax import data, factory, optim, train
config = mult.get_config('runlocal')
model, framing = factory.make_model(config), factory.make_framing(config)
tx = optim.make_optimizer(config.optim)
mesh = train.make_mesh()
params, state = jax.device_put(train.init_state(model, tx, framing, 0),
                               NamedSharding(mesh, PartitionSpec()))
step = train.make_train_step(model, tx, optim.make_schedule(config.optim))
dataset = data.MultiplicationDataset(16, 0, 2, framing)
losses = []
for _ in range(3):
  batch = dataset.generate_batch()
  batch = jax.device_put({k: batch[k] for k in ('inputs', 'targets')},
                         NamedSharding(mesh, PartitionSpec('data')))
  params, state, metrics = step(params, state, batch, 0)
  losses.append(float(metrics['loss']))
print(json.dumps({'devices': mesh.size, 'losses': losses}))
'''


def _run(devices):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_and_four_devices_give_the_same_losses():
  one, four = _run(1), _run(4)
  assert (one['devices'], four['devices']) == (1, 4)
  assert four['losses'] == pytest.approx(one['losses'], abs=1e-5)
  assert one['losses'][2] != one['losses'][0]  # The parameters did change.
