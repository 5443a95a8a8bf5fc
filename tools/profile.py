"""Profiles the train step of a config: an XLA trace, the optimized HLO, and a summary.

  python tools/profile.py --config=configs/mult.py --workdir=/tmp/prof [--steps=5]
  python tools/profile.py --config=configs/mult.py:runlocal --workdir=/tmp/prof
  tensorboard --logdir=/tmp/prof/profile/trace      # or open the perfetto_trace.json.gz in
                                                     # https://ui.perfetto.dev

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python tools/profile.py ...
                                                     # data parallel over 2 CPU devices
  GLIBC_TUNABLES=glibc.malloc.hugetlb=0 python tools/profile.py ...
                                                     # no huge pages (ttm_jax/host_memory.py)

Prints compile time, step time, FLOPs per step (XLA's count with the scanned loop scaled by its
trip count, beside the count of the same step unrolled and an analytic matmul count), bytes
accessed, peak memory, and the achieved FLOP/s against a measured matmul peak of the same
devices. The step is the one `main.py` trains with: data parallel over all local devices.
Writes `WORKDIR/profile/{trace/, train_step.hlo.txt, summary.json}`.
"""

import os
import sys

# The repository root replaces this script's folder on the path, so that this file does not
# shadow the standard library's `profile` module.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from ttm_jax import host_memory  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  host_memory.restart_with_huge_pages()  # Before JAX loads (ttm_jax/host_memory.py).

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

from ttm_jax import cli
from ttm_jax import files
from ttm_jax import profiling

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/ttm_profile', 'Where the profile goes.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Train steps traced and timed.')
_CHECK = flags.DEFINE_bool('check_unrolled', True,
                           'Also compile the unrolled step to check the scaled FLOP count.')


def _giga(x):
  return 'n/a' if x is None else f'{x / 1e9:.3f} G'


def summary_lines(r):
  """The printed summary of `profiling.profile_train_step`'s result."""
  mem = r['memory_bytes']
  lines = [
      f'devices               {r["num_devices"]} x {r["device"]} (data parallel)',
      f'batch                 {r["batch_size"]} examples x {r["steps_per_example"]} steps',
      f'compile time          {r["compile_seconds"]:.2f} s',
      f'step time             {r["step_seconds"] * 1e3:.2f} ms '
      f'({r["examples_per_second"]:.0f} examples/s)',
      f'FLOPs per step        {_giga(r["flops"])}FLOP (XLA, scan scaled by its trip count; '
      f'reported {_giga(r["reported_flops"])}, one scanned step {_giga(r["scan_step_flops"])})',
  ]
  if r['scan_step_flops'] is None:
    lines[-1] = f'FLOPs per step        {_giga(r["flops"])}FLOP (XLA; steps in a Python loop)'
  if 'unrolled_flops' in r:
    lines.append(f'  unrolled count      {_giga(r["unrolled_flops"])}FLOP '
                 f'({r["flops"] / r["unrolled_flops"] - 1:+.2%})')
  if r['analytic_flops']:
    lines.append(f'  analytic (matmuls)  {_giga(r["analytic_flops"])}FLOP '
                 f'({r["flops"] / r["analytic_flops"] - 1:+.2%})')
  lines += [
      f'bytes accessed        {r["bytes_accessed"] / 2**20:.1f} MiB',
      f'peak memory           {mem["peak"] / 2**20:.1f} MiB per device (arguments '
      f'{mem["arguments"] / 2**20:.1f}, outputs {mem["outputs"] / 2**20:.1f}, temporaries '
      f'{mem["temporaries"] / 2**20:.1f}, donated {mem["aliased"] / 2**20:.1f} MiB)',
      f'achieved              {r["achieved_flops_per_second"] / 1e9:.1f} GFLOP/s',
      f'matmul peak           {r["matmul_peak_flops_per_second"] / 1e9:.1f} GFLOP/s '
      '(2048x2048 float32 on each device at once, the fastest of 10)',
      f'fraction of peak      {r["fraction_of_peak"]:.1%} (step and peak measured now, under '
      f'the same load: 1-minute load average {r.get("load_average", float("nan")):.1f} on '
      f'{r.get("cpu_count", "?")} CPUs; other work slows both, so on a busy machine the '
      'fraction is of what the machine had left, not of its peak)',
      f'trace                 {r["trace_dir"]}',
      f'optimized HLO         {r["hlo_path"]}',
  ]
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:
    files.check_writable(os.path.join(_WORKDIR.value, 'profile'))
    result = profiling.profile_train_step(config, _WORKDIR.value, _STEPS.value, _CHECK.value)
    files.write_json(os.path.join(_WORKDIR.value, 'profile', 'summary.json'), result)
  except cli.USER_ERRORS as e:
    print(cli.error_line(e), file=sys.stderr)
    sys.exit(1)
  print('\n'.join(summary_lines(result)))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run_app(main)
