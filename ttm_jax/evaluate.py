"""Greedy decoding and accuracy: the periodic evaluation of training (`evaluate_stage`),
`--mode=eval` (accuracy per size on held-out problems), and the traced runs that write dump
files (`trace_problems`). `--mode=predict` and `--mode=trace` are in `predict.py`."""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ttm_jax import checkpoint as ckpt
from ttm_jax import curriculum
from ttm_jax import data as data_lib
from ttm_jax import dump_files
from ttm_jax import dumps
from ttm_jax import factory
from ttm_jax import files
from ttm_jax import losses
from ttm_jax import outputs
from ttm_jax import streaming
from ttm_jax import tokens as tok
from ttm_jax import trace
from ttm_jax.log import log


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


def evaluate_stage(model, params, framing: data_lib.Framing, config: ml_collections.ConfigDict,
                   stage: int, step: int, workdir: str = None,
                   epoch: int = 0) -> Dict[str, Any]:
  """Greedy-decoding accuracy on `config.eval.num_examples` held-out problems of `stage`
  (`data.held_out_like`: pairs with both operands >= 10 held out, smaller ones as drawn), memory
  statistics per step, and (every `config.trace.every_epochs`) traces of the first
  `config.trace.num_examples` problems in `workdir/dumps`.

  The problems come from an RNG seeded by (seed, step), so evaluation neither touches the
  training data stream nor changes when a run is resumed.
  """
  rng = np.random.default_rng([config.seed, step, 1])
  low, high = data_lib.STAGES[stage - 1]
  a, b = data_lib.held_out_like(rng, *data_lib.sample_operands(rng, config.eval.num_examples,
                                                                low, high))
  digits = data_lib.stage_digits(stage)
  decoded = decode_problems(model, params, framing, a, b, digits, config.eval.batch_size)
  summary = accuracy_of(decoded)
  summary['stage'] = stage
  summary['held_out_problems'] = int(np.sum(data_lib.held_out_mask(a, b)))
  summary.update(memory_statistics(decoded['memory_moments'], config.monitor.max_abs_memory))
  summary.update(track_sizes(model, params, framing, config, trained_digits=digits))
  summary['examples'] = [
      f'{x}×{y} = {p if p >= 0 else "?"} (target {x * y}) {"ok" if p == x * y else "wrong"}'
      for x, y, p in zip(a[:config.eval.log_examples], b[:config.eval.log_examples],
                         decoded['products'][:config.eval.log_examples])]
  count = config.trace.num_examples
  if workdir and count and epoch % config.trace.every_epochs == 0:
    trace_problems(model, params, framing, a[:count], b[:count], os.path.join(workdir, 'dumps'),
                   run='train', epoch=epoch, batch=step, checkpoint=workdir)
  return summary


def track_sizes(model, params, framing: data_lib.Framing, config: ml_collections.ConfigDict,
                trained_digits: int = 0) -> Dict[str, float]:
  """Exact match on the rows of `config.eval.track` (e.g. `'3x3'`; empty: none), each on the
  same `config.eval.num_examples` held-out problems at every evaluation (drawn with
  `config.eval.seed`), so that a learning curve follows one fixed set whatever the stage:
  `{'track/3x3': 0.42}`. `trained_digits`: the length training pads to now
  (`Framing.encoding_digits`)."""
  if not config.eval.track:
    return {}
  tracked = {}
  for ranges in parse_sizes(config.eval.track, 'config.eval.track'):
    a, b, _ = evaluation_problems(np.random.default_rng(config.eval.seed), *ranges,
                                  config.eval.num_examples)
    digits = framing.encoding_digits(data_lib.longest_operand(ranges[1], ranges[3]),
                                     trained_digits)
    decoded = decode_problems(model, params, framing, a, b, digits, config.eval.batch_size)
    tracked[f'track/{row_name(*ranges)}'] = float(np.mean(decoded['products'] == a * b))
  return tracked


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


def model_summary(model, framing: data_lib.Framing) -> Dict[str, Any]:
  """The sizes a viewer needs (`d`, `m`, `r`, `n`, heads, layers, memory mode), plus the
  model's and the framing's fields."""
  fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
            if f.name not in ('parent', 'name')}
  memory_mode = fields.get('memory_mode', 'none')
  return {'d': model.hidden_size, 'm': 0 if memory_mode == 'none' else model.memory_size,
          'r': model.process_size, 'n': framing.tokens_per_step, 'num_heads': model.num_heads,
          'num_layers': model.num_layers, 'memory_mode': memory_mode,
          'vocab_size': tok.VOCAB_SIZE, 'model': fields, 'task': dataclasses.asdict(framing)}


def trace_problems(model, params, framing: data_lib.Framing, a: np.ndarray, b: np.ndarray,
                   dump_dir: str, run: str = '', epoch: int = 0, batch: int = 0,
                   checkpoint: Optional[str] = None, trained_digits: int = 0) -> List[str]:
  """Decodes `a×b` greedily with tracing on (`trace.py`); writes one dump per problem to
  `dump_dir` (in a multi-host run, process 0 writes them). `trained_digits`: see
  `Framing.encoding_digits`.

  Returns:
    the paths written (none on the other processes).
  """
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  digits = framing.encoding_digits(data_lib.longest_operand(a, b), trained_digits)
  encoded = framing.encode(a, b, digits)
  start = framing.answer_start(digits)
  recorder = dumps.Recorder(run=run, epoch=epoch, batch=batch)
  # The trace's host callbacks are ordered, which JAX runs on one device only: a training
  # run's parameters, replicated or sharded over its devices, are gathered onto the first.
  params = jax.device_put(params, jax.local_devices()[0])
  with trace.capture(trace.Collector(recorder)):
    predictions, _ = streaming.greedy_decode(model, params, jnp.asarray(encoded['inputs']),
                                             start, True)
  if jax.process_index() != 0:
    return []
  summary = dict(model_summary(model, framing), n=int(encoded['inputs'].shape[-1]))
  paths = []
  for key, x, y, predicted in zip(recorder.sequences(), a.tolist(), b.tolist(),
                                  np.asarray(predictions)):
    product = framing.answer_to_number(predicted[start:])
    info = {'problem': f'{x}×{y}', 'target': str(x * y),
            'prediction': '?' if product is None else str(product),
            'correct': product == x * y, 'num_steps': int(encoded['inputs'].shape[1]),
            'config': summary, 'checkpoint': checkpoint}
    paths.append(str(dump_files.write_sequence(dump_dir, recorder.records(key), info)))
  return paths


def parse_sizes(sizes: str,
                source: str = 'config.eval.sizes') -> List[Tuple[int, int, int, int]]:
  """`data.size_ranges(sizes)`, its errors as ConfigError naming `source`."""
  try:
    return data_lib.size_ranges(sizes)
  except ValueError as e:
    raise factory.ConfigError(f'{source}={sizes!r}: {e}') from None


def evaluation_problems(rng: np.random.Generator, low_a: int, high_a: int, low_b: int,
                        high_b: int, count: int) -> Tuple[np.ndarray, np.ndarray, str]:
  """The problems a table row scores, and which they are.

  Where the range holds pairs with both operands >= 10, the row scores held-out pairs only;
  otherwise (1x1, 2x1: too few problems to hold any out) every problem. A range of at most
  10x`count` pairs is scored whole, a larger one on `count` distinct random problems.

  Returns:
    `(a [N], b [N], which)`, `which` naming the problems: 'all', 'held-out (all)', 'held-out'.
  """
  holdable = min(high_a, high_b) >= data_lib.HELD_OUT_MIN
  if (high_a - low_a + 1) * (high_b - low_b + 1) <= 10 * count:
    a, b = (x.ravel() for x in np.meshgrid(np.arange(low_a, high_a + 1),
                                           np.arange(low_b, high_b + 1), indexing='ij'))
    if not holdable:
      return a, b, 'all'
    keep = data_lib.held_out_mask(a, b)
    return a[keep], b[keep], 'held-out (all)'
  if not holdable:
    return (*data_lib.sample_operands(rng, count, low_a, high_a, low_b, high_b), 'random')
  a, b = np.zeros(0, np.int64), np.zeros(0, np.int64)
  while len(a) < count:  # About one pair in ten is held out; each pair is scored once.
    more_a, more_b = data_lib.sample_operands(rng, 4 * count, low_a, high_a, low_b, high_b)
    keep = data_lib.held_out_mask(more_a, more_b)
    a, b = np.concatenate([a, more_a[keep]]), np.concatenate([b, more_b[keep]])
    first = np.sort(np.unique(np.stack([a, b]), axis=1, return_index=True)[1])
    a, b = a[first], b[first]
  return a[:count], b[:count], 'held-out'


def row_name(low_a: int, high_a: int, low_b: int, high_b: int) -> str:
  """`'3x2'` for digit sizes, `'1-9999'` for an operand range."""
  sizes = [(low, high) == data_lib.digit_range(len(str(high))) for low, high in
           ((low_a, high_a), (low_b, high_b))]
  if all(sizes):
    return f'{len(str(high_a))}x{len(str(high_b))}'
  return f'{low_a}-{high_a}' if (low_a, high_a) == (low_b, high_b) else \
      f'{low_a}-{high_a}x{low_b}-{high_b}'


def checkpoint_digits(workdir: str, meta: Dict, config: ml_collections.ConfigDict) -> int:
  """The longest operand, in digits, that the checkpoint in `workdir` was trained on: the
  largest over the curriculum stages up to and including the stage its `meta` records, in the
  stage order of the workdir's `config.json` (else of `config`). A checkpoint that records no
  stage counts the stages up to `train.last_stage`, and says so."""
  recorded = os.path.exists(os.path.join(workdir, ckpt.CONFIG_FILE))
  saved = ckpt.read_config(workdir) if recorded else {}
  tc = saved.train if 'train' in saved else config.train
  order = curriculum.stage_order(tc)
  stage = meta.get('curriculum', {}).get('stage')
  if stage not in order:
    log.warning('the checkpoint in %s records no curriculum stage; assuming it was trained on '
                'the stages %s up to train.last_stage=%d', workdir, tc.stages, tc.last_stage)
    stage = tc.last_stage if tc.last_stage in order else order[-1]
  return max(data_lib.stage_digits(s) for s in order[:order.index(stage) + 1])


# What bounds the operands a model answers, by `config.task.positions` (`tokens.parse_problem`).
BOUNDS = {'slots': 'was trained on', 'places': 'takes'}


def answerable_digits(workdir: str, meta: Dict, config: ml_collections.ConfigDict) -> int:
  """The longest operand, in digits, that --mode=predict/trace/demo give the checkpoint in
  `workdir`: `config.task.max_digits` for a 'places' model (nothing in it is tied to the
  length it was trained on: it may be asked longer problems), else the longest it was trained
  on (`checkpoint_digits`)."""
  if config.task.positions == 'places':
    return config.task.max_digits
  return checkpoint_digits(workdir, meta, config)


def evaluate_sizes(model, params, config: ml_collections.ConfigDict,
                   trained_digits: int) -> List[Dict]:
  """Exact-match and per-position accuracy per table row (`config.eval.sizes`) on held-out
  problems (`evaluation_problems`, drawn with `config.eval.seed`); rows with operands longer
  than `trained_digits` (`checkpoint_digits`) are marked as length tests."""
  framing = factory.make_framing(config)
  rng = np.random.default_rng(config.eval.seed)
  rows = []
  for ranges in parse_sizes(config.eval.sizes):
    digits = data_lib.longest_operand(ranges[1], ranges[3])
    if digits > framing.max_digits:
      raise factory.ConfigError(f'config.eval.sizes: {row_name(*ranges)} exceeds '
                                f'config.task.max_digits={framing.max_digits}')
    a, b, problems = evaluation_problems(rng, *ranges, config.eval.num_per_size)
    decoded = decode_problems(model, params, framing, a, b,
                              framing.encoding_digits(digits, trained_digits),
                              config.eval.batch_size)
    acc = accuracy_of(decoded)
    rows.append({'size': row_name(*ranges), 'count': len(a), 'problems': problems,
                 'longer_than_trained': digits > trained_digits,
                 'exact_match': float(np.mean(decoded['products'] == a * b)),
                 'position_accuracy': acc['position_accuracy']})
  return rows


def format_table(rows: List[Dict]) -> str:
  """A plain-text table of `evaluate_sizes` rows, with a header that says what was scored."""
  lines = ['held-out evaluation: pairs with both operands >= 10 are scored only where held out '
           '(never trained on: ttm_jax/data.py); smaller pairs on every problem']
  lines += [f'{"size":>7} {"problems":>9} {"which":>16} {"exact match":>12} {"per position":>13}']
  lines += [f'{r["size"]:>7} {r["count"]:>9} '
            f'{r["problems"] + (", longer" if r["longer_than_trained"] else ""):>16} '
            f'{100 * r["exact_match"]:>11.2f}% {100 * r["position_accuracy"]:>12.2f}%'
            for r in rows]
  if any(r['longer_than_trained'] for r in rows):
    lines.append('"longer": operands longer than any the curriculum trains on (a length test)')
  return '\n'.join(lines)


def run_eval(config: ml_collections.ConfigDict, workdir: str, step: Optional[int] = None,
             out: Optional[str] = None) -> List[Dict]:
  """Restores the workdir's best checkpoint (or its saved `step`), prints the table, writes
  `eval.json` (`eval-step<step>.json`) and traces `config.trace.num_examples` problems of each
  size into `dumps/`, both in `outputs.output_dir(workdir, out)` (a training workdir itself;
  for an export such as `checkpoints/mult`, `runs/<name>-outputs`: it is never written)."""
  params, meta = ckpt.load_params(workdir, config, step=step)
  model = factory.make_model(config)
  trained_digits = checkpoint_digits(workdir, meta, config)
  # Before the work: a folder that cannot take the results, a damaged dump index.
  out = outputs.output_dir(workdir, out)
  files.check_writable(out)
  count = config.trace.num_examples
  if count:
    dump_files.check_writable(os.path.join(out, 'dumps'))
  rows = evaluate_sizes(model, params, config, trained_digits)
  print(format_table(rows), flush=True)
  if count:
    framing, rng = factory.make_framing(config), np.random.default_rng(config.seed)
    for index, ranges in enumerate(parse_sizes(config.eval.sizes)):
      a, b, _ = evaluation_problems(rng, *ranges, count)
      trace_problems(model, params, framing, a[:count], b[:count],
                     os.path.join(out, 'dumps'), run=f'eval-{row_name(*ranges)}',
                     epoch=index, checkpoint=workdir, trained_digits=trained_digits)
  stage = meta.get('curriculum', {}).get('stage')
  name = 'eval.json' if step is None else f'eval-step{step}.json'
  files.write_json(os.path.join(out, name),
                   {'rows': rows, 'checkpoint_stage': stage, 'step': step})
  log.info('wrote %s%s', os.path.join(out, name),
           f' and traces in {os.path.join(out, "dumps")}' if count else '')
  return rows
