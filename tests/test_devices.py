"""ttm_jax/devices.py: splitting a CPU-only host into devices, and what a start of training
records."""

import os
import re
import subprocess
import sys

import pytest

from configs import mult
from ttm_jax import devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('cores,batch,expected', [(2, 32, 2), (3, 32, 2), (8, 12, 6), (5, 7, 1)])
def test_one_device_per_core_lowered_to_a_divisor_of_the_batch(monkeypatch, cores, batch,
                                                               expected):
  monkeypatch.setattr(devices, 'usable_cores', lambda: cores)
  assert devices.cpu_device_count(batch) == expected
  assert devices.cpu_device_count(batch, requested=3) == 3  # Asked for: as asked.


def _device_count(count, xla_flags=''):
  code = ('from ttm_jax import devices; devices.split_cpu(%d); import jax; '
          'print(len(jax.devices()))' % count)
  env = {**os.environ, 'XLA_FLAGS': xla_flags, 'JAX_PLATFORMS': 'cpu'}
  return int(subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True).stdout)


def test_split_cpu_makes_that_many_devices_unless_xla_flags_says_otherwise():
  assert _device_count(3) == 3
  assert _device_count(3, '--xla_force_host_platform_device_count=1') == 1


def test_split_cpu_after_jax_started_changes_nothing():
  import jax  # pylint: disable=g-import-not-at-top
  before = len(jax.devices())
  devices.split_cpu(before + 1)
  assert len(jax.devices()) == before


def test_config_digest_follows_every_field():
  config = mult.get_config()
  assert devices.config_digest(config) == devices.config_digest(mult.get_config())
  config.train.review = 0.25
  assert devices.config_digest(config) != devices.config_digest(mult.get_config())


def test_start_record_names_time_code_devices_and_cpu():
  record = devices.start_record(mult.get_config())
  assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00', record['time'])
  if os.path.isdir(os.path.join(ROOT, '.git')):
    assert re.fullmatch(r'[0-9a-f]{40}(\+dirty)?', record['commit'])
  assert re.fullmatch(r'\d+ x .+', record['devices'])
  assert record['cpu'] and record['cores'] >= 1
