"""Training over the curriculum: a jitted train step on a device mesh that runs
`train.steps_per_call` updates per call, periodic greedy evaluation, promotion (`curriculum.py`),
metrics, and orbax checkpoints that resume exactly.

One epoch is `train.steps_per_epoch` steps followed by an evaluation on held-out problems of the
current stage (`evaluate.evaluate_stage`). The path of one batch:
`MultiplicationDataset.draw_operands` (stage per example from the curriculum, held-out pairs
redrawn, operands swapped and shuffled) -> `Framing.encode` -> `draw_batches` (K batches stacked)
-> `train_steps` (`jax.lax.scan` over them) -> `train_step` -> `loss_fn` (model, masked losses)
-> `optax.apply_updates`. Metrics stay on the device until the epoch ends.
"""

import os
import sys
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ttm_jax import checkpoint as ckpt
from ttm_jax import curriculum as curriculum_lib
from ttm_jax import data as data_lib
from ttm_jax import devices
from ttm_jax import dump_files
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import hooks
from ttm_jax import losses
from ttm_jax import optim
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


def init_state(model, tx, framing: data_lib.Framing, seed: int, ema: bool = False):
  """Fresh `(params, train_state)`; train_state = {opt_state, step, rng, stage_start,
  lr_scale} (the last two: the learning-rate policy's, `optim.py`), and with `ema` the
  parameters' moving average `ema`, starting at the initial parameters."""
  init_key, dropout_key, train_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  tokens = jnp.zeros((1, 1, framing.tokens_per_step), jnp.int32)

  @jax.jit  # One compilation instead of one per operation.
  def init(rngs):
    params = model.init(rngs, tokens)['params']
    return params, tx.init(params)

  params, opt_state = init({'params': init_key, 'dropout': dropout_key})
  train_state = {'opt_state': opt_state, 'step': jnp.zeros((), jnp.int32), 'rng': train_key,
                 'stage_start': jnp.zeros((), jnp.int32), 'lr_scale': jnp.ones((), jnp.float32)}
  if ema:
    train_state['ema'] = average_of(params)
  return params, train_state


def average_of(params):
  """A moving average that starts at `params` (its own buffers: both are donated to the train
  step)."""
  return jax.tree_util.tree_map(jnp.copy, params)


def served_params(params, train_state):
  """The parameters evaluated, saved as a checkpoint's `params` and served: the moving
  average where the run keeps one (`optim.ema_decay`), else the trained parameters."""
  return train_state.get('ema', params)


def to_saved(params, train_state):
  """`(params item, train item)` of a checkpoint: with a moving average, the average is the
  `params` item (what inference loads) and the trained parameters go in the train item, as
  `trained`."""
  if 'ema' not in train_state:
    return params, train_state
  saved = {k: v for k, v in train_state.items() if k != 'ema'}
  return train_state['ema'], {**saved, 'trained': params}


def from_saved(params, train_state):
  """The inverse of `to_saved`."""
  if 'trained' not in train_state:
    return params, train_state
  train_state = dict(train_state)
  trained = train_state.pop('trained')
  return trained, {**train_state, 'ema': params}


def loss_fn(model, params, batch: Dict[str, jnp.ndarray], dropout_rng):
  """Teacher-forced loss of `batch` (`inputs [B, S, n]`, `targets [B, S]`, and in 'places'
  `offsets [B]`): `(loss, metrics)`, the metrics (loss parts, accuracies) as aux."""
  logits = model.apply({'params': params}, batch['inputs'], train=True,
                       offsets=batch.get('offsets'), rngs={'dropout': dropout_rng})
  metrics = losses.metrics(logits, batch['targets'])
  return metrics['loss'], metrics


def make_train_step(model, tx, optim_config: ml_collections.ConfigDict, shardings=None):
  """The jitted `train_steps(params, train_state, batches)` -> `(params, train_state,
  metrics)`: one update per batch of `batches` (`inputs [K, B, S, n]`, `targets [K, B, S]`),
  in a `jax.lax.scan`; `metrics` are `[K]` each. The learning rate comes from the train state
  (`optim.learning_rate`). `shardings`: `(params, train_state)` shardings the step returns its
  state in (default: as XLA chooses)."""
  schedule = optim.make_schedule(optim_config)

  def train_step(carry, batch):
    params, train_state = carry
    rng, dropout_rng = jax.random.split(train_state['rng'])
    grads, metrics = jax.grad(lambda p: loss_fn(model, p, batch, dropout_rng),
                              has_aux=True)(params)
    opt_state = train_state['opt_state']
    learning_rate = optim.learning_rate(schedule, optim_config, train_state['step'],
                                        train_state['stage_start'], train_state['lr_scale'])
    opt_state.hyperparams['learning_rate'] = learning_rate
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if 'ema' in train_state:  # Polyak averaging: evaluated and served instead of `params`.
      decay = optim.ema_decay(optim_config, train_state['step'], train_state['stage_start'])
      train_state = {**train_state, 'ema': jax.tree_util.tree_map(
          lambda e, p: decay * e + (1 - decay) * p, train_state['ema'], params)}
    metrics.update(grad_norm=optax.tree.norm(grads), update_norm=optax.tree.norm(updates),
                   learning_rate=learning_rate)
    train_state = {**train_state, 'opt_state': opt_state, 'step': train_state['step'] + 1,
                   'rng': rng}
    return (params, train_state), metrics

  def train_steps(params, train_state, batches):
    (params, train_state), metrics = jax.lax.scan(train_step, (params, train_state), batches)
    return params, train_state, metrics

  if shardings is None:
    return jax.jit(train_steps, donate_argnums=(0, 1))
  metrics_sharding = NamedSharding(jax.tree_util.tree_leaves(shardings)[0].mesh,
                                   PartitionSpec())
  return jax.jit(train_steps, donate_argnums=(0, 1),
                 out_shardings=(*shardings, metrics_sharding))


def draw_batches(dataset: data_lib.MultiplicationDataset, count: int) -> Dict[str, np.ndarray]:
  """`count` batches, encoded once at the longest operand length among them:
  `inputs [count, B, S, n]`, `targets [count, B, S]` (and in 'places' `offsets [count, B]`)."""
  drawn = [(*dataset.draw_operands(), dataset.draw_offsets()) for _ in range(count)]
  digits = max(d for _, _, d, _ in drawn)
  encoded = [dataset.framing.encode(a, b, digits, o) for a, b, _, o in drawn]
  return {k: np.stack([e[k] for e in encoded]) for k in ('inputs', 'targets', 'offsets')
          if k in encoded[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains (resuming from `workdir` if it has checkpoints) and returns the final summary;
  CheckpointError if another process is training in `workdir` (`ckpt.training_lock`)."""
  with ckpt.training_lock(workdir):
    return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """`train_and_evaluate` while holding the workdir's lock."""
  framing = factory.make_framing(config)
  model = factory.make_model(config)
  tc = config.train
  curriculum = curriculum_lib.Curriculum.from_config(config)
  mesh = make_mesh()
  if tc.batch_size % mesh.size:
    raise factory.ConfigError(f'config.train.batch_size={tc.batch_size} is not divisible by '
                              f'the {mesh.size} devices')
  print(f'training in {workdir} on {mesh.size} {jax.devices()[0].platform.upper()} device(s): '
        'setting up the model, the data and the checkpoints', flush=True)
  batch_sharding = NamedSharding(mesh, PartitionSpec(None, 'data'))  # [K, B, ...]: B split.

  tx = optim.make_optimizer(config.optim)
  params, train_state = init_state(model, tx, framing, config.seed,
                                   ema=config.optim.ema_decay > 0)
  dataset = data_lib.MultiplicationDataset(tc.batch_size, config.seed, curriculum, framing,
                                           tc.augment)
  checkpoints = ckpt.Checkpoints(workdir, config.checkpoint.keep)
  restored = checkpoints.restore_latest(*to_saved(params, train_state), config)
  epoch_so_far = None  # The metrics and seconds of an epoch a stop cut short, if any.
  if restored is not None:
    params, train_state, meta = restored
    params, train_state = from_saved(params, train_state)
    epoch_so_far = meta.get('epoch')
    dataset.set_state(meta['data_state'])
    curriculum.restore(meta['curriculum'])
    curriculum.reopen(tc)
    log.info('resumed from step %d (stage %d)', int(train_state['step']), curriculum.stage)
  elif tc.init_from:  # Fine-tuning: trained parameters, a fresh optimizer, step 0.
    params, _ = ckpt.load_params(tc.init_from, config)
    if 'ema' in train_state:
      train_state['ema'] = average_of(params)
    log.info('parameters from the best checkpoint in %s', tc.init_from)
  if jax.process_index() == 0:
    ckpt.write_config(workdir, config)
    if config.trace.num_examples:  # A damaged dump index: an error now, not at an evaluation.
      dump_files.check_writable(os.path.join(workdir, 'dumps'))
  shardings = state_shardings((params, train_state), mesh, tc.shard_params)
  params, train_state = jax.device_put((params, train_state), shardings)
  train_steps = make_train_step(model, tx, config.optim, shardings)
  step = int(train_state['step'])
  writer = hooks.MetricsWriter(workdir, resume_step=step)
  writer.write(step, 'start', devices.start_record(config))
  profiler = hooks.StepProfiler(config.profile.first_step, config.profile.num_steps,
                                os.path.join(workdir, 'profile'))
  bar = tqdm.tqdm(total=tc.num_steps, initial=step, desc=f'stage {curriculum.stage}',
                  dynamic_ncols=True, disable=None)

  def say(line: str):  # Flushed: a log file or pipe gets each line as it happens.
    bar.write(line)
    sys.stdout.flush()

  progress = hooks.ProgressLines(say, tc.batch_size, heartbeat=bar.disable)
  if step < tc.num_steps and not curriculum.finished:
    progress.start(step, curriculum.stage)

  def check_finite(epoch_metrics):
    loss = np.asarray(epoch_metrics['loss'])
    if not np.all(np.isfinite(loss)):
      bad = step - len(loss) + int(np.argmin(np.isfinite(loss))) + 1
      raise TrainingError(f'non-finite loss ({loss[~np.isfinite(loss)][0]}) at step {bad}, stage '
                          f'{curriculum.stage}; nothing was saved from this epoch. Try '
                          'a lower config.optim.peak_lr or config.optim.clip_norm')

  saved_step = step  # The step the newest checkpoint holds (0: a fresh start, none needed).

  def save(is_best: bool, epoch_so_far=None):
    nonlocal saved_step
    if not all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params)):
      raise TrainingError(f'non-finite parameters at step {step}; not saved')
    meta = {'curriculum': curriculum.state(), 'data_state': dataset.get_state(),
            'config': ckpt.config_sections(config)}
    if epoch_so_far:
      meta['epoch'] = epoch_so_far
    checkpoints.save(step, *to_saved(params, train_state), meta, is_best)
    saved_step = step

  def stop_now():
    if saved_step != step:
      save(is_best=False)
    bar.write(f'stopping: saved step {step}')
    raise KeyboardInterrupt

  def concatenated(calls):
    return jax.device_get(jax.tree_util.tree_map(lambda *m: jnp.concatenate(m), *calls))

  with hooks.stop_requests() as stop:
    try:
      while (step < tc.num_steps and not curriculum.finished
             and not curriculum.out_of_time(tc.max_seconds)):
        if stop:  # Arrived during an evaluation or a save (that epoch is saved by now).
          stop_now()
        calls, epoch_start = [], time.perf_counter()
        # A run resumed mid-epoch (after Ctrl-C) finishes that epoch, with the metrics of the
        # steps before the stop, so evaluations fall on the same steps and see the same
        # training summary as in an uninterrupted run.
        if epoch_so_far and step % tc.steps_per_epoch:
          calls.append({k: np.asarray(v, epoch_so_far['dtypes'][k])
                        for k, v in epoch_so_far['metrics'].items()})
          epoch_start -= epoch_so_far['seconds']
        epoch_so_far = None
        epoch_end = min(step - step % tc.steps_per_epoch + tc.steps_per_epoch, tc.num_steps)
        while step < epoch_end:
          count = min(tc.steps_per_call, epoch_end - step)
          batches = jax.device_put(draw_batches(dataset, count), batch_sharding)
          profiler.before(step, count)
          params, train_state, metrics = train_steps(params, train_state, batches)
          step += count
          profiler.after(step, metrics)
          calls.append(metrics)
          bar.update(count)
          progress.after_call(step, metrics['loss'])
          if stop and step < epoch_end:  # Mid-epoch: saved with the epoch's metrics so far.
            so_far = concatenated(calls)
            check_finite(so_far)
            save(is_best=False, epoch_so_far={
                'metrics': {k: np.asarray(v).tolist() for k, v in so_far.items()},
                'dtypes': {k: str(np.asarray(v).dtype) for k, v in so_far.items()},
                'seconds': time.perf_counter() - epoch_start})
            stop_now()
        # A stop after the epoch's last call: the epoch is evaluated and saved, then it stops.
        epoch_metrics = concatenated(calls)
        check_finite(epoch_metrics)
        seconds = time.perf_counter() - epoch_start
        train_summary = {k: float(np.mean(v)) for k, v in epoch_metrics.items()}
        train_summary.update(stage=curriculum.stage, examples_per_second=len(
            epoch_metrics['loss']) * tc.batch_size / seconds)
        writer.write(step, 'train', train_summary)
        bar.set_postfix(loss=f'{train_summary["loss"]:.3f}', refresh=False)

        eval_summary = evaluate.evaluate_stage(model, served_params(params, train_state),
                                               framing, config, curriculum.stage, step, workdir,
                                               step // tc.steps_per_epoch)
        curriculum.seconds += time.perf_counter() - epoch_start
        eval_summary['elapsed_seconds'] = curriculum.seconds
        writer.write(step, 'eval', {k: v for k, v in eval_summary.items() if k != 'examples'})
        held_out = eval_summary['held_out_problems']
        say(f'step {step} stage {curriculum.stage}: train loss {train_summary["loss"]:.4f}, '
            f'eval exact match {eval_summary["sequence_accuracy"]:.3f} '
            f'({config.eval.num_examples} problems, '
            f'{f"{held_out} held out" if held_out else "none held out: 1-digit operands"}), '
            f'lr {train_summary["learning_rate"]:.2e}, '
            f'{train_summary["examples_per_second"]:.0f} examples/s')
        for line in eval_summary['examples']:
          say(f'  {line}')
        progress.wrote(step)
        changes = curriculum.advance(dict(eval_summary, train_loss=train_summary['loss']), step,
                                     float(train_state['lr_scale']), config)
        for name, value in changes.items():  # Read by the jitted step from now on.
          train_state[name] = jax.device_put(jnp.asarray(value, train_state[name].dtype),
                                             train_state[name].sharding)
        bar.set_description(f'stage {curriculum.stage}')
        is_best = curriculum.evals_since_best == 0
        if is_best or curriculum.finished or stop or \
            (step // tc.steps_per_epoch) % config.checkpoint.every_epochs == 0:
          save(is_best)
      summary = {'step': step, 'stage': curriculum.stage,
                 'finished': curriculum.finished or f'reached {curriculum.limit(tc)}',
                 'best_progress': curriculum.best_progress}
      writer.write(step, 'end', {'time': devices.utc_now(), 'finished': summary['finished']})
    except BaseException:  # What failed is reported, not a failure of closing after it.
      hooks.close_all(profiler.stop, bar.close, writer.close, checkpoints.close, quiet=True)
      raise
    hooks.close_all(profiler.stop, bar.close, writer.close, checkpoints.close)
  log.info('%s', curriculum.ended_sentence(step, workdir, tc))
  return summary
