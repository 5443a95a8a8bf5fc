"""Profiling the train step: compile time, step time, FLOPs, bytes accessed, peak memory, and
the achieved FLOP/s against a measured matmul peak of the same device; `jax.profiler` traces.

XLA's cost analysis counts the body of a loop once, whatever its trip count. The TTM's steps
run in one scanned loop (forward and backward), so the reported count misses `S - 1` steps.
`scan_corrected_flops` measures one step's cost and adds the missing steps; `tools/profile.py`
checks the result against the same train step with its steps unrolled in a Python loop.
"""

import os
import statistics
import time
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ttm_jax import curriculum
from ttm_jax import data as data_lib
from ttm_jax import factory
from ttm_jax import memory as mem
from ttm_jax import model as model_lib
from ttm_jax import optim
from ttm_jax import summarize
from ttm_jax import train

HEAD_WIDTHS = model_lib.HEAD_WIDTHS
SUMMARY_BOTTLENECK = summarize.TokenLearner.bottleneck_dim  # Its scoring-MLP width.


def cost_of(compiled) -> Dict[str, float]:
  """`{'flops', 'bytes_accessed'}` of a compiled program, from XLA's cost analysis."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older jaxlibs: one dict per program.
    analysis = analysis[0]
  return {'flops': float(analysis.get('flops', 0.0)),
          'bytes_accessed': float(analysis.get('bytes accessed', 0.0))}


def memory_of(compiled) -> Dict[str, int]:
  """Device memory of a compiled program from XLA's buffer assignment: arguments, outputs,
  temporaries, aliased (donated) bytes, and the peak: arguments + outputs + temporaries -
  aliased, or the backend's own figure where that is larger."""
  stats = compiled.memory_analysis()
  sizes = {'arguments': stats.argument_size_in_bytes, 'outputs': stats.output_size_in_bytes,
           'temporaries': stats.temp_size_in_bytes, 'aliased': stats.alias_size_in_bytes}
  sizes['peak'] = max(getattr(stats, 'peak_memory_in_bytes', 0),
                      sizes['arguments'] + sizes['outputs'] + sizes['temporaries']
                      - sizes['aliased'])
  return {k: int(v) for k, v in sizes.items()}


def time_call(fn: Callable[[], Any], reps: int, best: bool = False) -> float:
  """Median (`best`: shortest) seconds of `fn()` (blocked until ready) over `reps` calls,
  after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times) if best else statistics.median(times)


def matmul_peak_flops(size: int = 2048, reps: int = 10, dtype=jnp.float32,
                      mesh: Mesh = None) -> float:
  """Measured FLOP/s of jitted `[size, size] @ [size, size]` matmuls, one on each device of
  `mesh` at the same time (default: the default device alone), from the fastest of `reps`
  (the least disturbed by other work on a shared machine)."""
  mesh = mesh or Mesh(jax.devices()[:1], ('data',))
  rows = NamedSharding(mesh, PartitionSpec('data'))
  a = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (mesh.size * size, size), dtype),
                     rows)
  b = jax.device_put(jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype),
                     NamedSharding(mesh, PartitionSpec()))
  matmul = jax.jit(jnp.matmul, out_shardings=rows)
  return 2.0 * mesh.size * size**3 / time_call(lambda: matmul(a, b), reps, best=True)


def _summarize_flops(kind: str, num_in: int, num_out: int, dim: int) -> float:
  """Matmul FLOPs of summarizing `num_in` tokens of width `dim` to `num_out` (one example)."""
  if kind == 'mlp':  # Scoring MLP d -> 64 -> k, then k weighted sums over the tokens.
    return 2.0 * (num_in * dim * SUMMARY_BOTTLENECK + num_in * SUMMARY_BOTTLENECK * num_out
                  + num_out * num_in * dim)
  if kind == 'mha':  # Q from k queries, K and V from the tokens, scores, values, output.
    return 2.0 * (2 * num_out * dim * dim + 2 * num_in * dim * dim + 2 * num_out * num_in * dim)
  raise ValueError(f'no analytic count for the {kind!r} summarizer')


def analytic_forward_flops(config: ml_collections.ConfigDict) -> float:
  """Matmul FLOPs of one forward step of one example (memory read, Transformer, memory write,
  output head); elementwise work (norms, softmax, GELU) is not counted."""
  m = config.model
  framing = factory.make_framing(config)
  d, r, n = m.hidden_size, m.process_size, framing.tokens_per_step
  if m.processing_unit != 'transformer' or m.simple_unit:
    raise ValueError('the analytic count covers the full unit with a Transformer')
  read, write = mem.MEMORY_MODES.get(m.memory_mode, ('mlp', None))
  if write not in ('summarize', None):
    raise ValueError(f'no analytic count for memory_mode {m.memory_mode!r}')
  memory = 0 if m.memory_mode == 'none' else m.memory_size
  flops = _summarize_flops(read, memory + n, r, d)
  layer = 2.0 * (r * d * 3 * d + 2 * r * r * d + r * d * d + 2 * r * d * m.mlp_dim)
  flops += m.num_layers * layer
  if write == 'summarize':
    flops += _summarize_flops(read, memory + n + r, memory, d)
  widths = (d,) + HEAD_WIDTHS
  flops += 2.0 * (sum(a * b for a, b in zip(widths, widths[1:])) + HEAD_WIDTHS[-1] * 12)
  return flops


def analytic_train_flops(config: ml_collections.ConfigDict, batch_size: int,
                         steps: int) -> float:
  """Forward + backward (twice the forward's matmuls) for a batch of `steps`-step examples."""
  return 3.0 * batch_size * steps * analytic_forward_flops(config)


class TrainStepProgram:
  """The jitted train step of a config, built for one batch (one update per call), with its
  compile results.

  With a `mesh`, the step is the data-parallel one `main.py` trains with: the batch split over
  the mesh, parameters and optimizer state replicated (or sharded, `config.train.shard_params`).
  """

  def __init__(self, config: ml_collections.ConfigDict, batch: Dict[str, Any],
               mesh: Mesh = None, abstract: bool = False):
    """`abstract`: lower on the parameters' shapes (nothing initialized), for the compiled
    program's cost analysis only; such a program cannot `run`."""
    model = factory.make_model(config)
    tx = optim.make_optimizer(config.optim)
    init = lambda: train.init_state(model, tx, factory.make_framing(config), config.seed)
    params, state = jax.eval_shape(init) if abstract else init()
    shardings = None
    if mesh is not None:
      shardings = train.state_shardings((params, state), mesh, config.train.shard_params)
      params, state = jax.device_put((params, state), shardings)
    batches = {k: v[None] for k, v in batch.items()}  # [1, B, ...]: one step per call.
    if mesh is not None:
      batches = jax.device_put(batches, NamedSharding(mesh, PartitionSpec(None, 'data')))
    self.args = (params, state, batches)
    self.step_fn = train.make_train_step(model, tx, config.optim, shardings)
    start = time.perf_counter()
    self.compiled = self.step_fn.lower(*self.args).compile()
    self.compile_seconds = time.perf_counter() - start

  def run(self, num_steps: int):
    """Runs `num_steps` train steps on the same batch; returns the last metrics."""
    params, state, batch = self.args
    metrics = None
    for _ in range(num_steps):
      params, state, metrics = self.compiled(params, state, batch)
    self.args = (params, state, batch)
    return jax.block_until_ready(metrics)


def counting_program(config: ml_collections.ConfigDict, batch: Dict[str, Any]):
  """The train step of `config` compiled for `batch` on one device, for its cost analysis only
  (lowered on the parameters' shapes: no initialization is compiled or run)."""
  return TrainStepProgram(config, batch, abstract=True).compiled


def with_model(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A copy of `config` with `config.model` fields replaced."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(fields)
  return config


def _first_steps(batch: Dict[str, Any], steps: int) -> Dict[str, Any]:
  return {'inputs': batch['inputs'][:, :steps], 'targets': batch['targets'][:, :steps]}


def scan_corrected_flops(config: ml_collections.ConfigDict, batch: Dict[str, Any],
                         scanned_flops: float) -> Dict[str, float]:
  """The scanned train step's FLOPs scaled by the trip count.

  On the batch's first two steps, the scanned step with `scan_unroll=2` has two copies of the
  step in its loop body and the one with `scan_unroll=1` one copy: their difference is one
  step, forward and backward.

  Returns:
    `{'step_flops'` (one step), `'flops'` (`scanned_flops` plus the steps it misses)}.
  """
  short = _first_steps(batch, 2)
  one, two = (cost_of(counting_program(with_model(config, scan=True, scan_unroll=unroll),
                                       short))['flops'] for unroll in (1, 2))
  steps = batch['inputs'].shape[1]
  unroll = config.model.scan_unroll or steps  # 0: all steps in one iteration.
  # Steps the count already holds: the loop body's copies, and the remainder's.
  counted = min(unroll, steps) + (steps % unroll if steps > unroll else 0)
  return {'step_flops': two - one, 'flops': scanned_flops + (steps - counted) * (two - one)}


def profile_train_step(config: ml_collections.ConfigDict, workdir: str, num_steps: int = 5,
                       check_unrolled: bool = True) -> Dict[str, Any]:
  """Compiles the train step of `config` for a batch of its start stage, data parallel over
  all local devices as `main.py` trains, times `num_steps` steps, runs as many again under
  `jax.profiler.trace` (`workdir/profile/trace`), dumps the optimized HLO
  (`workdir/profile/train_step.hlo.txt`) and returns the measurements.

  FLOPs and bytes are those of the whole step compiled for one device (what the model costs,
  whatever the number of devices); peak memory is per device of the timed program. The matmul
  peak runs one matmul on every device at once.
  """
  framing = factory.make_framing(config)
  dataset = data_lib.MultiplicationDataset(config.train.batch_size, config.seed,
                                           curriculum.Curriculum.from_config(config), framing)
  batch = {k: v for k, v in dataset.generate_batch().items() if k in ('inputs', 'targets')}
  batch_size, steps = batch['inputs'].shape[:2]
  mesh = train.make_mesh()
  if batch_size % mesh.size:
    raise factory.ConfigError(f'config.train.batch_size={batch_size} is not divisible by the '
                              f'{mesh.size} devices')
  program = TrainStepProgram(config, batch, mesh)
  out_dir = os.path.join(workdir, 'profile')
  os.makedirs(out_dir, exist_ok=True)
  hlo_path = os.path.join(out_dir, 'train_step.hlo.txt')
  with open(hlo_path, 'w') as f:
    f.write(program.compiled.as_text())

  program.run(2)  # Warm-up.
  start = time.perf_counter()
  program.run(num_steps)
  step_seconds = (time.perf_counter() - start) / num_steps
  trace_dir = os.path.join(out_dir, 'trace')
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    program.run(num_steps)

  # FLOPs and bytes of the whole step, counted on one device (XLA's count of a data-parallel
  # program is one device's share, plus whatever the partitioning adds).
  batch = jax.device_put(batch, jax.devices()[0])
  reported = cost_of(program.compiled if mesh.size == 1 else counting_program(config, batch))
  if config.model.scan:
    corrected = scan_corrected_flops(config, batch, reported['flops'])
  else:  # A Python loop over steps: the count has every step.
    corrected = {'step_flops': None, 'flops': reported['flops']}
  result = {
      'device': jax.devices()[0].device_kind, 'num_devices': mesh.size,
      'batch_size': batch_size, 'steps_per_example': steps,
      'compile_seconds': program.compile_seconds, 'step_seconds': step_seconds,
      'examples_per_second': batch_size / step_seconds,
      'reported_flops': reported['flops'], 'scan_step_flops': corrected['step_flops'],
      'flops': corrected['flops'], 'bytes_accessed': reported['bytes_accessed'],
      'memory_bytes': memory_of(program.compiled),
      'trace_dir': trace_dir, 'hlo_path': hlo_path,
  }
  if check_unrolled:
    result['unrolled_flops'] = cost_of(
        counting_program(with_model(config, scan=False), batch))['flops']
  try:
    result['analytic_flops'] = analytic_train_flops(config, batch_size, steps)
  except ValueError:
    result['analytic_flops'] = None
  result['achieved_flops_per_second'] = result['flops'] / step_seconds
  result['matmul_peak_flops_per_second'] = matmul_peak_flops(mesh=mesh)
  # What else ran meanwhile: the step and the peak were measured under the same load.
  result['load_average'], result['cpu_count'] = os.getloadavg()[0], os.cpu_count()
  result['fraction_of_peak'] = (result['achieved_flops_per_second']
                                / result['matmul_peak_flops_per_second'])
  return result
