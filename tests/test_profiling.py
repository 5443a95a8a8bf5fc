"""tools/profile.py writes an XLA trace and the optimized HLO, and its FLOP count (the scanned
loop scaled by its trip count) agrees with the unrolled program and an analytic count, also
when the timed step is split over two devices."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs import mult
from ttm_jax import factory
from ttm_jax import profiling
from ttm_jax import tokens as tok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def profiled(tmp_path_factory):
  """`(stdout, summary, workdir)` of tools/profile.py: paper model, batch 8, stage 1 (S = 3),
  one step per scan iteration, data parallel over 2 forced host devices."""
  workdir = str(tmp_path_factory.mktemp('profile'))
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count=2'
  result = subprocess.run(
      [sys.executable, 'tools/profile.py', '--config=configs/mult.py:paper',
       '--config.train.batch_size=8', '--config.model.scan_unroll=1', f'--workdir={workdir}',
       '--steps=2'],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, 'profile', 'summary.json')) as f:
    return result.stdout, json.load(f), workdir


@pytest.mark.slow  # tools/profile.py of the paper model: minutes.
def test_writes_a_trace_and_the_optimized_hlo(profiled):
  _, summary, workdir = profiled
  trace_dir = os.path.join(workdir, 'profile', 'trace')
  assert glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', '*.xplane.pb'))
  assert glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', '*perfetto*'))
  with open(summary['hlo_path']) as f:
    hlo = f.read()
  assert 'HloModule' in hlo and ' while(' in hlo  # The scanned steps are one loop.


@pytest.mark.slow  # tools/profile.py of the paper model: minutes.
def test_flop_count_matches_unrolled_and_analytic(profiled):
  stdout, summary, _ = profiled
  steps = summary['steps_per_example']
  assert (summary['batch_size'], steps, summary['num_devices']) == (8, 3, 2)
  # XLA counts the loop body once; the scaled count adds the other S - 1 steps.
  assert summary['reported_flops'] < summary['flops']
  assert summary['flops'] == pytest.approx(summary['unrolled_flops'], rel=0.06)
  assert summary['flops'] == pytest.approx(summary['analytic_flops'], rel=0.10)
  printed = float(re.search(r'FLOPs per step\s+([\d.]+) G', stdout).group(1)) * 1e9
  assert printed == pytest.approx(summary['flops'], rel=1e-3)
  assert 0 < summary['fraction_of_peak'] and summary['memory_bytes']['peak'] > 0
  # The fraction says that the step and the peak were measured under the same load.
  assert summary['load_average'] >= 0 and summary['cpu_count'] >= 1
  assert re.search(r'fraction of peak +[\d.]+% \(step and peak measured now, under the same '
                   r'load: 1-minute load average [\d.]+ on \d+ CPUs', stdout)


def test_analytic_count_of_the_paper_model():
  config = mult.get_config('paper')
  # n = 13 tokens per step (a 5x5-digit problem with EOS, and the previous answer token).
  # Read: 109 tokens scored (128 -> 64 -> 16) and summed to 16; 4 Transformer layers on 16
  # tokens; write: 125 tokens scored (128 -> 64 -> 96) and summed to 96; the output head.
  read = 2 * (109 * 128 * 64 + 109 * 64 * 16 + 16 * 109 * 128)
  layer = 2 * (16 * 128 * 384 + 2 * 16 * 16 * 128 + 16 * 128 * 128 + 2 * 16 * 128 * 512)
  write = 2 * (125 * 128 * 64 + 125 * 64 * 96 + 96 * 125 * 128)
  head = 2 * (128 * 128 + 128 * 64 + 64 * 12)
  assert profiling.analytic_forward_flops(config) == read + 4 * layer + write + head
  assert profiling.analytic_train_flops(config, 8, 5) == 3 * 8 * 5 * (
      read + 4 * layer + write + head)


@pytest.fixture(scope='module')
def looped():
  """`(config, batch, FLOPs of the Python-loop step)`: the runlocal model on 5 steps."""
  config = mult.get_config('runlocal')
  steps, n = 5, factory.make_framing(config).tokens_per_step
  batch = {'inputs': np.full((4, steps, n), tok.PAD_TOKEN, np.int32),
           'targets': np.full((4, steps), tok.EOS_TOKEN, np.int32)}
  loop = profiling.counting_program(profiling.with_model(config, scan=False), batch)
  return config, batch, profiling.cost_of(loop)['flops']


@pytest.mark.slow  # Compiles the paper step three ways.
@pytest.mark.parametrize('unroll', [2, 0])
def test_scaled_count_for_other_unrolls(looped, unroll):
  # Two steps an iteration leave a remainder of one; 0 puts all five in one iteration, which
  # XLA counts whole (nothing to add; its program is ~8% more than the loop's: the scan's
  # stacking and gradient accumulation).
  config, batch, loop_flops = looped
  scanned = profiling.with_model(config, scan=True, scan_unroll=unroll)
  reported = profiling.cost_of(profiling.counting_program(scanned, batch))['flops']
  corrected = profiling.scan_corrected_flops(scanned, batch, reported)['flops']
  assert corrected == pytest.approx(loop_flops, rel=0.10)
  if unroll == 0:
    assert corrected == reported
  else:
    assert corrected > 1.5 * reported
