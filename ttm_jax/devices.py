"""The host a run trains on: a CPU-only host split into one JAX device per core, so that the
data-parallel mesh (`train.make_mesh`) uses every core, and the description of the host and
code that each start of training records (`start_record`).

XLA's CPU client is one device however many cores it has; split into one device per core, each
core runs its share of the batch (measured: docs/performance.md, "Devices and several hosts").
The split must happen before JAX starts its backends; it changes nothing on a host with an
accelerator, whose devices are not CPUs.
"""

import datetime
import hashlib
import os
import platform
import subprocess
from typing import Any, Dict

import jax
import ml_collections

HOST_COUNT_FLAG = 'xla_force_host_platform_device_count'  # An XLA_FLAGS split, set by hand.


def usable_cores() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def cpu_device_count(batch_size: int, requested: int = 0) -> int:
  """Devices to split the CPU into: `requested`, or (0) one per usable core, lowered to the
  largest count that divides `batch_size` (each device takes an equal share)."""
  if requested:
    return requested
  count = usable_cores()
  while batch_size % count:
    count -= 1
  return count


def split_cpu(count: int):
  """Makes the CPU backend `count` devices. Does nothing where `XLA_FLAGS` sets the count
  already, or once JAX has started its backends (in a process that has computed before)."""
  if HOST_COUNT_FLAG in os.environ.get('XLA_FLAGS', ''):
    return
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # The backends have started: the devices are what they are.
    pass


def cpu_model() -> str:
  """The CPU's model name (`/proc/cpuinfo`), or what `platform` knows of it."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.partition(':')[2].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def git_commit() -> str:
  """The commit of the code that runs (`+dirty` when it has uncommitted changes), or '' outside
  a git checkout."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return ''
  return commit + ('+dirty' if dirty.strip() else '')


def config_digest(config: ml_collections.ConfigDict) -> str:
  """A short SHA-256 digest of the whole config, equal for equal settings."""
  text = config.to_json_best_effort(sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def utc_now() -> str:
  """The time, in UTC to the second (ISO 8601)."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def start_record(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """What a start of training records: when, which code and config, on which devices and
  CPU."""
  devices = jax.devices()
  return {'time': utc_now(),
          'commit': git_commit(), 'config_digest': config_digest(config),
          'devices': f'{len(devices)} x {devices[0].device_kind}',
          'processes': jax.process_count(), 'cpu': cpu_model(), 'cores': usable_cores(),
          'jax': jax.__version__}
