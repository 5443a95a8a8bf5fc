"""The train step on a mesh of 1 and of 4 (forced host) devices, with parameters replicated or
sharded, gives the same losses."""

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
from ttm_jax.curriculum import Curriculum
config = mult.get_config('runlocal')
model, framing = factory.make_model(config), factory.make_framing(config)
tx = optim.make_optimizer(config.optim)
mesh = train.make_mesh()
state = train.init_state(model, tx, framing, 0)
shardings = train.state_shardings(state, mesh, SHARD)
params, state = jax.device_put(state, shardings)
step = train.make_train_step(model, tx, config.optim, shardings)
dataset = data.MultiplicationDataset(16, 0, Curriculum(stage=2), framing)
losses = []
for _ in range(3):
  batch = dataset.generate_batch()
  batch = jax.device_put({k: batch[k][None] for k in ('inputs', 'targets')},
                         NamedSharding(mesh, PartitionSpec(None, 'data')))
  params, state, metrics = step(params, state, batch)
  losses.append(float(metrics['loss'][0]))
sharded = [p for p in jax.tree_util.tree_leaves(params) if len(p.sharding.device_set) > 1
           and not p.sharding.is_fully_replicated]
print(json.dumps({'devices': mesh.size, 'losses': losses, 'sharded_params': len(sharded)}))
'''


def _start(devices, shard=False):
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={devices}'
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-c', f'SHARD = {shard}\n' + SCRIPT], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process):
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 0, stderr[-2000:]
  return json.loads(stdout.strip().splitlines()[-1])


def test_one_and_four_devices_give_the_same_losses():
  processes = _start(1), _start(4), _start(4, shard=True)  # Side by side.
  one, four, four_sharded = (_result(p) for p in processes)
  assert (one['devices'], four['devices'], four_sharded['devices']) == (1, 4, 4)
  assert four['losses'] == pytest.approx(one['losses'], abs=1e-5)
  assert four_sharded['losses'] == pytest.approx(one['losses'], abs=1e-5)
  assert four['sharded_params'] == 0 and four_sharded['sharded_params'] > 0
  assert one['losses'][2] != one['losses'][0]  # The parameters did change.
