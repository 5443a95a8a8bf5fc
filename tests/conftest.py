"""Shared fixtures."""

import pytest

from configs import mult
from ttm_jax import train


@pytest.fixture(scope='session')
def traced_run(tmp_path_factory):
  """`(config, workdir)` of a runlocal model trained 20 steps (checkpoints at 10 and 20), with
  2 problems traced into `workdir/dumps` at each of its 2 evaluations. Read-only for tests."""
  workdir = str(tmp_path_factory.mktemp('traced_run'))
  config = mult.get_config('runlocal')
  config.train.update(num_steps=20, steps_per_epoch=10)
  config.eval.update(num_examples=8)
  config.trace.num_examples = 2
  train.train_and_evaluate(config, workdir)
  return config, workdir
