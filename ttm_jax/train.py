"""Training over the curriculum: jitted train step on a device mesh, periodic greedy
evaluation, promotion, early stopping, metrics, and orbax checkpoints that resume exactly.

One epoch is `train.steps_per_epoch` steps followed by an evaluation on fresh problems of the
current stage. The stages come in the order of `train.stages`. Promotion: the mean of the last
`train.window` evaluation sequence accuracies reaches `train.threshold`, or the stage has run
`train.max_epochs_per_stage` epochs. Progress, the measure of 'best' and of early stopping, is
(stages passed) + sequence accuracy.
"""

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tensorboardX import SummaryWriter

from ttm_jax import checkpoint as ckpt
from ttm_jax import data as data_lib
from ttm_jax import factory
from ttm_jax import losses
from ttm_jax import optim
from ttm_jax import streaming
from ttm_jax import trace

from ttm_jax.log import log


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a non-finite loss); the message says why."""


def make_mesh() -> Mesh:
  """A 1-D data-parallel mesh over all devices (of every host, after
  `jax.distributed.initialize`)."""
  return Mesh(np.array(jax.devices()), ('data',))


def state_shardings(tree, mesh: Mesh, shard: bool, min_size: int = 1024):
  """Shardings for parameters or optimizer state: replicated, or (`shard`) each array of at
  least `min_size` elements split over the mesh along its largest axis that divides evenly
  (FSDP-style; XLA gathers the pieces where a step needs them)."""
  def sharding(x):
    axes = [i for i in np.argsort(x.shape)[::-1] if x.shape[i] % mesh.size == 0]
    if not shard or x.size < min_size or not axes:
      return NamedSharding(mesh, PartitionSpec())
    spec = [None] * x.ndim
    spec[axes[0]] = 'data'
    return NamedSharding(mesh, PartitionSpec(*spec))
  return jax.tree_util.tree_map(sharding, tree)


def init_state(model, tx, framing: data_lib.Framing, seed: int):
  """Fresh `(params, train_state)`; train_state = {opt_state, step, rng}."""
  init_key, dropout_key, train_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  tokens = jnp.zeros((1, 1, framing.tokens_per_step), jnp.int32)

  @jax.jit  # One compilation instead of one per operation.
  def init(rngs):
    params = model.init(rngs, tokens)['params']
    return params, tx.init(params)

  params, opt_state = init({'params': init_key, 'dropout': dropout_key})
  return params, {'opt_state': opt_state, 'step': jnp.zeros((), jnp.int32), 'rng': train_key}


def make_train_step(model, tx, schedule, shardings=None):
  """The jitted `train_step(params, train_state, batch, schedule_start)` ->
  `(params, train_state, metrics)`; the learning rate is `schedule(step - schedule_start)`.
  `shardings`: `(params, train_state)` shardings the step returns its state in (default: as
  XLA chooses)."""
  def train_step(params, train_state, batch, schedule_start):
    rng, dropout_rng = jax.random.split(train_state['rng'])

    def loss_fn(p):
      logits = model.apply({'params': p}, batch['inputs'], train=True,
                           rngs={'dropout': dropout_rng})
      return losses.compute_total_loss(logits, batch['targets']), logits

    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    opt_state = train_state['opt_state']
    learning_rate = schedule(train_state['step'] - schedule_start)
    opt_state.hyperparams['learning_rate'] = learning_rate
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = losses.metrics(logits, batch['targets'])
    metrics.update(grad_norm=optax.tree.norm(grads), update_norm=optax.tree.norm(updates),
                   learning_rate=learning_rate)
    return params, {'opt_state': opt_state, 'step': train_state['step'] + 1,
                    'rng': rng}, metrics

  if shardings is None:
    return jax.jit(train_step, donate_argnums=(0, 1))
  metrics_sharding = NamedSharding(jax.tree_util.tree_leaves(shardings)[0].mesh,
                                   PartitionSpec())
  return jax.jit(train_step, donate_argnums=(0, 1),
                 out_shardings=(*shardings, metrics_sharding))


def decode_problems(model, params, framing: data_lib.Framing, a: np.ndarray, b: np.ndarray,
                    digits: int, batch_size: int) -> Dict[str, np.ndarray]:
  """Greedy decoding (no teacher forcing) of `a×b`, in batches.

  Returns:
    dict with `predictions [N, S]`, `targets [N, S]`, `products [N]` (the decoded answers,
    -1 where not a number), `memory_moments [N, S, 3]` (`streaming.decode_with_memory_moments`).
  """
  predictions, targets, moments = [], [], []
  for start in range(0, len(a), batch_size):
    batch = framing.encode(a[start:start + batch_size], b[start:start + batch_size], digits)
    pred, _, batch_moments = streaming.decode_with_memory_moments(
        model, params, jnp.asarray(batch['inputs']), framing.answer_start(digits))
    predictions.append(np.asarray(pred))
    targets.append(batch['targets'])
    moments.append(np.asarray(batch_moments))
  predictions, targets = np.concatenate(predictions), np.concatenate(targets)
  start = framing.answer_start(digits)
  products = np.array([framing.answer_to_number(p[start:]) for p in predictions], object)
  return {'predictions': predictions, 'targets': targets,
          'products': np.array([-1 if p is None else p for p in products], np.int64),
          'memory_moments': np.concatenate(moments)}


def accuracy_of(decoded: Dict[str, np.ndarray]) -> Dict[str, float]:
  """Position and sequence accuracy of `decode_problems` output."""
  acc = losses.accuracy(jnp.asarray(decoded['predictions']), jnp.asarray(decoded['targets']))
  return {k: float(v) for k, v in acc.items()}


class MetricsWriter:
  """Metrics to TensorBoard (`workdir/tb`) and to `workdir/metrics.jsonl`; in a multi-host
  run, process 0 writes them and the others write nothing."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    if self.enabled:
      self.tb = SummaryWriter(os.path.join(workdir, 'tb'))
      self.jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write(self, step: int, split: str, metrics: Dict[str, Any]):
    if not self.enabled:
      return
    for name, value in metrics.items():
      if isinstance(value, (int, float)):
        self.tb.add_scalar(f'{split}/{name}', value, step)
      elif isinstance(value, list):  # Per-step series: one scalar per entry.
        for i, item in enumerate(value):
          self.tb.add_scalar(f'{split}/{name}/{i}', item, step)
    self.jsonl.write(json.dumps({'step': step, 'split': split, **metrics}) + '\n')
    self.jsonl.flush()

  def close(self):
    if self.enabled:
      self.tb.close()
      self.jsonl.close()


@dataclasses.dataclass
class Curriculum:
  """Where training stands in the curriculum (saved as checkpoint meta)."""
  stage: int
  schedule_start: int = 0  # Step the learning-rate schedule counts from.
  history: list = dataclasses.field(default_factory=list)  # Eval accuracies this stage.
  epochs_in_stage: int = 0
  best_progress: float = -1.0
  evals_since_best: int = 0
  finished: str = ''  # Why training ended, once it has.
  seconds: float = 0.0  # Wall-clock time of training and evaluation so far (over resumes).


class _StopFlag:
  """Truthy once SIGINT or SIGTERM arrived."""
  requested = False

  def __bool__(self):
    return self.requested


@contextlib.contextmanager
def _stop_requests():
  """While active, the first Ctrl-C (or SIGTERM) only sets the yielded flag, so the loop can
  save a checkpoint at a step boundary and stop; a second Ctrl-C interrupts at once."""
  flag = _StopFlag()

  def request(signum, frame):
    if flag.requested and signum == signal.SIGINT:
      signal.default_int_handler(signum, frame)
    flag.requested = True

  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield flag
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


class StepProfiler:
  """Takes a `jax.profiler` trace of train steps `first_step .. first_step + num_steps - 1`
  (counted from 0) into `directory`; `num_steps=0` never traces."""

  def __init__(self, first_step: int, num_steps: int, directory: str):
    self.first, self.last, self.directory = first_step, first_step + num_steps, directory
    self.active = False

  def before(self, step: int):
    """Call before running train step `step`."""
    if self.first == step < self.last:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)
      self.active = True

  def after(self, step: int, outputs):
    """Call after `step` steps have run, with the last step's outputs."""
    if self.active and step >= self.last:
      self.stop(outputs)

  def stop(self, outputs=None):
    """Ends an active trace (once `outputs` are computed)."""
    if self.active:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.active = False
      log.info('profile of steps %d..%d written to %s', self.first, self.last - 1,
               self.directory)


def _tree_is_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains (resuming from `workdir` if it has checkpoints) and returns the final summary."""
  framing = factory.make_framing(config)
  model = factory.make_model(config)
  tc = config.train
  order = stage_order(tc)
  mesh = make_mesh()
  if tc.batch_size % mesh.size:
    raise factory.ConfigError(f'config.train.batch_size={tc.batch_size} is not divisible by '
                              f'the {mesh.size} devices')
  sharded = NamedSharding(mesh, PartitionSpec('data'))

  tx = optim.make_optimizer(config.optim)
  schedule = optim.make_schedule(config.optim)
  params, train_state = init_state(model, tx, framing, config.seed)
  dataset = data_lib.MultiplicationDataset(tc.batch_size, config.seed, tc.start_stage, framing,
                                           tc.augment, tc.review, order)
  curriculum = Curriculum(stage=tc.start_stage)

  checkpoints = ckpt.Checkpoints(workdir, config.checkpoint.keep)
  restored = checkpoints.restore_latest(params, train_state, config)
  if restored is not None:
    params, train_state, meta = restored
    dataset.set_state(meta['data_state'])
    curriculum = Curriculum(**meta['curriculum'])
    log.info('resumed from step %d (stage %d)', int(train_state['step']), curriculum.stage)
  elif tc.init_from:  # Fine-tuning: trained parameters, a fresh optimizer, step 0.
    params, _ = ckpt.load_params(tc.init_from, config)
    log.info('parameters from the best checkpoint in %s', tc.init_from)
  if jax.process_index() == 0:
    ckpt.write_config(workdir, config)
  shardings = state_shardings((params, train_state), mesh, tc.shard_params)
  params, train_state = jax.device_put((params, train_state), shardings)
  train_step = make_train_step(model, tx, schedule, shardings)
  writer = MetricsWriter(workdir)
  profiler = StepProfiler(config.profile.first_step, config.profile.num_steps,
                          os.path.join(workdir, 'profile'))

  step = int(train_state['step'])
  bar = tqdm.tqdm(total=tc.num_steps, initial=step, desc=f'stage {curriculum.stage}',
                  dynamic_ncols=True, disable=None)

  def save(is_best: bool):
    if not _tree_is_finite(params):
      raise TrainingError(f'non-finite parameters at step {step}; not saved')
    checkpoints.save(step, params, train_state, {
        'curriculum': dataclasses.asdict(curriculum), 'data_state': dataset.get_state(),
        'config': ckpt.config_sections(config)}, is_best)

  with _stop_requests() as stop:
    try:
      while step < tc.num_steps and not curriculum.finished:
        epoch_metrics = []
        epoch_start = time.perf_counter()
        # A run resumed mid-epoch (after Ctrl-C) finishes that epoch, so evaluations fall on
        # the same steps as in an uninterrupted run.
        for _ in range(min(tc.steps_per_epoch - step % tc.steps_per_epoch, tc.num_steps - step)):
          batch = dataset.generate_batch()
          batch = jax.device_put({'inputs': batch['inputs'], 'targets': batch['targets']},
                                 sharded)
          profiler.before(step)
          params, train_state, metrics = train_step(params, train_state, batch,
                                                    curriculum.schedule_start)
          profiler.after(step + 1, metrics)
          metrics = {k: float(v) for k, v in metrics.items()}
          step += 1
          if not np.isfinite(metrics['loss']):
            raise TrainingError(f'non-finite loss ({metrics["loss"]}) at step {step}, stage '
                                f'{curriculum.stage}; nothing was saved from this epoch. Try '
                                'a lower config.optim.peak_lr or config.optim.clip_norm')
          epoch_metrics.append(metrics)
          bar.update(1)
          bar.set_postfix(loss=f'{metrics["loss"]:.3f}',
                          acc=f'{metrics["sequence_accuracy"]:.2f}', refresh=False)
          if stop:
            save(is_best=False)
            bar.write(f'stopping: saved step {step}')
            raise KeyboardInterrupt
        seconds = time.perf_counter() - epoch_start
        train_summary = {k: float(np.mean([m[k] for m in epoch_metrics]))
                         for k in epoch_metrics[0]}
        train_summary.update(stage=curriculum.stage,
                             examples_per_second=len(epoch_metrics) * tc.batch_size / seconds)
        writer.write(step, 'train', train_summary)

        eval_summary = evaluate_stage(model, params, framing, config, curriculum.stage, step,
                                      workdir, step // tc.steps_per_epoch)
        curriculum.seconds += time.perf_counter() - epoch_start
        eval_summary['elapsed_seconds'] = curriculum.seconds
        writer.write(step, 'eval', {k: v for k, v in eval_summary.items() if k != 'examples'})
        bar.write(f'step {step} stage {curriculum.stage}: train loss '
                  f'{train_summary["loss"]:.4f}, eval exact match '
                  f'{eval_summary["sequence_accuracy"]:.3f} ({config.eval.num_examples} fresh '
                  f'problems), {train_summary["examples_per_second"]:.0f} examples/s')
        for line in eval_summary['examples']:
          bar.write(f'  {line}')
        _advance(curriculum, eval_summary['sequence_accuracy'], step, dataset, tc)
        bar.set_description(f'stage {curriculum.stage}')
        is_best = curriculum.evals_since_best == 0
        if is_best or curriculum.finished or \
            (step // tc.steps_per_epoch) % config.checkpoint.every_epochs == 0:
          save(is_best)
    finally:
      profiler.stop()
      bar.close()
      writer.close()
      checkpoints.close()
  summary = {'step': step, 'stage': curriculum.stage,
             'finished': curriculum.finished or f'reached num_steps={tc.num_steps}',
             'best_progress': curriculum.best_progress}
  log.info('training ended: %s', summary)
  return summary


def stage_order(tc: ml_collections.ConfigDict) -> Tuple[int, ...]:
  """The curriculum's stage order from `config.train.stages`, checked against `start_stage`
  and `last_stage`."""
  try:
    order = tuple(int(stage) for stage in str(tc.stages).split(','))
  except ValueError:
    raise factory.ConfigError(f'config.train.stages={tc.stages!r}: expected stage numbers '
                              'separated by commas, e.g. "1,2,5"') from None
  try:
    data_lib.check_stage_order(order)
  except ValueError as e:
    raise factory.ConfigError(f'config.train.stages={tc.stages!r}: {e}') from None
  for name in ('start_stage', 'last_stage'):
    if tc[name] not in order:
      raise factory.ConfigError(f'config.train.{name}={tc[name]} is not in config.train.stages'
                                f'={tc.stages!r}')
  if order.index(tc.start_stage) > order.index(tc.last_stage):
    raise factory.ConfigError(f'config.train.start_stage={tc.start_stage} comes after '
                              f'config.train.last_stage={tc.last_stage} in {tc.stages!r}')
  return order


def progress(order: Tuple[int, ...], stage: int, accuracy: float) -> float:
  """Curriculum progress: the stages of `order` passed before `stage`, plus `accuracy` on it."""
  return order.index(stage) + accuracy


def _advance(curriculum: Curriculum, accuracy: float, step: int,
             dataset: data_lib.MultiplicationDataset, tc: ml_collections.ConfigDict):
  """Updates the curriculum after an evaluation: best/patience, then promotion."""
  curriculum.history.append(accuracy)
  curriculum.epochs_in_stage += 1
  reached = progress(dataset.order, curriculum.stage, accuracy)
  if reached > curriculum.best_progress:
    curriculum.best_progress, curriculum.evals_since_best = reached, 0
  else:
    curriculum.evals_since_best += 1
  promote = (dataset.should_increase_difficulty(curriculum.history, tc.threshold, tc.window)
             or curriculum.epochs_in_stage >= tc.max_epochs_per_stage)
  if promote:
    if curriculum.stage == tc.last_stage or not dataset.increase_difficulty():
      curriculum.finished = f'passed stage {curriculum.stage}'
      return
    curriculum.stage = dataset.current_stage
    curriculum.history, curriculum.epochs_in_stage = [], 0
    curriculum.schedule_start = step
    log.info('promoted to stage %d at step %d', curriculum.stage, step)
  elif curriculum.evals_since_best >= tc.patience:
    curriculum.finished = (f'early stopping: no improvement in {tc.patience} evaluations '
                           f'(stage {curriculum.stage})')


def evaluate_stage(model, params, framing: data_lib.Framing, config: ml_collections.ConfigDict,
                   stage: int, step: int, workdir: str = None,
                   epoch: int = 0) -> Dict[str, Any]:
  """Greedy-decoding accuracy on `config.eval.num_examples` fresh problems of `stage`, memory
  statistics per step, and (every `config.trace.every_epochs`) traces of the first
  `config.trace.num_examples` problems in `workdir/dumps`.

  The problems come from an RNG seeded by (seed, step), so evaluation neither touches the
  training data stream nor changes when a run is resumed.
  """
  rng = np.random.default_rng([config.seed, step, 1])
  low, high = data_lib.STAGES[stage - 1]
  a, b = data_lib.sample_operands(rng, config.eval.num_examples, low, high)
  digits = data_lib.stage_digits(stage)
  decoded = decode_problems(model, params, framing, a, b, digits, config.eval.batch_size)
  summary = accuracy_of(decoded)
  summary['stage'] = stage
  summary.update(memory_statistics(decoded['memory_moments'], config.monitor.max_abs_memory))
  summary['examples'] = [
      f'{x}×{y} = {p if p >= 0 else "?"} (target {x * y}) {"ok" if p == x * y else "wrong"}'
      for x, y, p in zip(a[:config.eval.log_examples], b[:config.eval.log_examples],
                         decoded['products'][:config.eval.log_examples])]
  count = config.trace.num_examples
  if workdir and count and epoch % config.trace.every_epochs == 0:
    trace.trace_problems(model, params, config, a[:count], b[:count],
                         os.path.join(workdir, 'dumps'), run='train', epoch=epoch, batch=step,
                         checkpoint=workdir)
  return summary


def memory_statistics(moments: np.ndarray, max_abs: float) -> Dict[str, Any]:
  """Memory mean, std and max |x| per step of the decoded problems, from their moments
  `[N, S, 3]` (`decode_problems`), with a warning when values explode or are not finite."""
  mean = moments[..., 0].mean(0)
  stats = np.stack([mean, np.sqrt(np.maximum(moments[..., 1].mean(0) - mean**2, 0)),
                    moments[..., 2].max(0)], -1)  # Shape: [S, 3].
  peak = float(np.max(stats[:, 2])) if stats.size else 0.0
  if not np.all(np.isfinite(stats)):
    log.warning('memory holds non-finite values (per-step max |x|: %s)', stats[:, 2].tolist())
  elif peak > max_abs:
    log.warning('memory values are exploding: max |x| = %.3g > config.monitor.max_abs_memory'
                ' = %g', peak, max_abs)
  return {'memory_max_abs': peak,
          'memory_mean_per_step': stats[:, 0].tolist(),
          'memory_std_per_step': stats[:, 1].tolist(),
          'memory_max_abs_per_step': stats[:, 2].tolist()}
