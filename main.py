"""Trains and evaluates a Token Turing Machine that multiplies.

  python main.py --config=configs/mult.py                        # train (resumes if stopped)
  python main.py --config=configs/mult.py --mode=eval            # accuracy table
  python main.py --config=configs/mult.py --mode=eval --step=N   # ...of a saved step
  echo 123x45 | python main.py --config=configs/mult.py --mode=predict
  python main.py --config=configs/mult.py --mode=trace --problem=123x45  # -> trace-123x45/
  python main.py --config=configs/mult.py --mode=demo                      # interactive
"""

import os
import sys

from ttm_jax import host_memory

if __name__ == '__main__':
  host_memory.restart_with_huge_pages()  # Before JAX loads (ttm_jax/host_memory.py).

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from ttm_jax import checkpoint as ckpt
from ttm_jax import cli
from ttm_jax import files

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/mult', 'Where checkpoints and metrics go.')
_MODE = flags.DEFINE_enum('mode', 'train', cli.MODES, 'What to do.')
_PROBLEM = flags.DEFINE_string('problem', None, 'With --mode=trace: the problem, e.g. 123×45.')
_STEP = flags.DEFINE_integer('step', None, 'With --mode=eval: evaluate this saved step of the '
                             'workdir instead of its best.')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'Training on a CPU-only host: split it into this many devices, data '
    'parallel (0: one per core, lowered to a count that divides config.train.batch_size). '
    'XLA_FLAGS=--xla_force_host_platform_device_count=N overrides it; GPUs and TPUs are kept.',
    lower_bound=0)
_OUT = flags.DEFINE_string(
    'out', None, 'With --mode=eval or --mode=trace: the folder for eval.json, dumps/ and '
    'trace-AxB/ (default: the workdir if it trains, runs/<name>-outputs for an export such as '
    'checkpoints/mult, which is never written).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host: call jax.distributed.initialize() first (it detects '
    'the coordinator, process count and id on SLURM, Open MPI, Kubernetes, Cloud TPU).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX are chatty at INFO.
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  files.SILENCE_AFTER_FAILURE = True  # After a failed save: one error line (ttm_jax/files.py).
  code = cli.run(_MODE.value, _CONFIG.value, _WORKDIR.value, _PROBLEM.value, _STEP.value,
                 _OUT.value, _CPU_DEVICES.value)
  if ckpt.save_failed:  # Orbax's threads would print about the files they were writing.
    sys.stdout.flush()
    files.error_stream().flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run_app(main)
