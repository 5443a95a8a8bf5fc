"""`--mode=eval` (accuracy per digit size on fresh problems), `--mode=predict` (answers for
problems read from a stream) and `--mode=trace` (one problem traced into dump files)."""

import itertools
import json
import os
import sys
from typing import Dict, Iterable, Iterator, List, Optional, TextIO

import ml_collections
import numpy as np

from ttm_jax import checkpoint as ckpt
from ttm_jax import data as data_lib
from ttm_jax import factory
from ttm_jax import tokens as tok
from ttm_jax import trace
from ttm_jax import train
from ttm_jax.log import log

PREDICT_CHUNK = 256  # Lines --mode=predict reads, answers and flushes at a time.


def parse_sizes(sizes: str):
  """`'1x1,2x1'` -> `[(1, 1), (2, 1)]`."""
  try:
    return [tuple(int(d) for d in size.split('x')) for size in sizes.split(',')]
  except ValueError:
    raise factory.ConfigError(f'config.eval.sizes={sizes!r}: expected e.g. "1x1,2x1"') from None


def evaluate_sizes(model, params, config: ml_collections.ConfigDict) -> List[Dict]:
  """Exact-match and per-position accuracy per digit size on fresh random problems (drawn
  with `config.eval.seed`)."""
  framing = factory.make_framing(config)
  rng = np.random.default_rng(config.eval.seed)
  rows = []
  for da, db in parse_sizes(config.eval.sizes):
    if max(da, db) > framing.max_digits:
      raise factory.ConfigError(f'size {da}x{db} exceeds config.task.max_digits='
                                f'{framing.max_digits}')
    a, b = data_lib.sample_operands(rng, config.eval.num_per_size, *data_lib.digit_range(da),
                                    *data_lib.digit_range(db))
    decoded = train.decode_problems(model, params, framing, a, b, max(da, db),
                                    config.eval.batch_size)
    acc = train.accuracy_of(decoded)
    rows.append({'size': f'{da}x{db}', 'count': len(a),
                 'exact_match': float(np.mean(decoded['products'] == a * b)),
                 'position_accuracy': acc['position_accuracy']})
  return rows


def format_table(rows: List[Dict]) -> str:
  """A plain-text table of `evaluate_sizes` rows."""
  lines = [f'{"size":>6} {"problems":>9} {"exact match":>12} {"per position":>13}']
  lines += [f'{r["size"]:>6} {r["count"]:>9} {100 * r["exact_match"]:>11.2f}% '
            f'{100 * r["position_accuracy"]:>12.2f}%' for r in rows]
  return '\n'.join(lines)


def run_eval(config: ml_collections.ConfigDict, workdir: str,
             step: Optional[int] = None) -> List[Dict]:
  """Restores the workdir's best checkpoint (or its saved `step`), prints the table, writes
  `workdir/eval.json` (`eval-step<step>.json`), and traces `config.trace.num_examples`
  problems of each size into `workdir/dumps`."""
  params, meta = ckpt.load_params(workdir, config, step=step)
  model = factory.make_model(config)
  rows = evaluate_sizes(model, params, config)
  print(format_table(rows))
  count = config.trace.num_examples
  if count:
    rng = np.random.default_rng(config.seed)
    for index, (da, db) in enumerate(parse_sizes(config.eval.sizes)):
      a, b = data_lib.sample_operands(rng, count, *data_lib.digit_range(da),
                                      *data_lib.digit_range(db))
      trace.trace_problems(model, params, config, a, b, os.path.join(workdir, 'dumps'),
                           run=f'eval-{da}x{db}', epoch=index, checkpoint=workdir)
  stage = meta.get('curriculum', {}).get('stage')
  name = 'eval.json' if step is None else f'eval-step{step}.json'
  with open(os.path.join(workdir, name), 'w') as f:
    json.dump({'rows': rows, 'checkpoint_stage': stage, 'step': step}, f, indent=2)
  return rows


def trained_digits(workdir: str, meta: Dict, config: ml_collections.ConfigDict) -> int:
  """The longest operand, in digits, that the checkpoint in `workdir` was trained on: the
  largest over the curriculum stages up to and including the stage its `meta` records, in the
  stage order of the workdir's `config.json` (else of `config`). A checkpoint that records no
  stage counts the stages up to `train.last_stage`, and says so."""
  recorded = os.path.exists(os.path.join(workdir, ckpt.CONFIG_FILE))
  tc = ckpt.read_config(workdir).train if recorded else config.train
  order = train.stage_order(tc)
  stage = meta.get('curriculum', {}).get('stage')
  if stage not in order:
    log.warning('the checkpoint in %s records no curriculum stage; assuming it was trained on '
                'the stages %s up to train.last_stage=%d', workdir, tc.stages, tc.last_stage)
    stage = tc.last_stage
  return max(data_lib.stage_digits(s) for s in order[:order.index(stage) + 1])


def run_trace(config: ml_collections.ConfigDict, workdir: str, problem: str) -> str:
  """Traces one problem (`123×45`) with the workdir's best checkpoint into `workdir/dumps`;
  returns the dump file's path ('' on the processes other than 0 of a multi-host run)."""
  params, meta = ckpt.load_params(workdir, config)
  try:
    a, b = tok.parse_problem(problem, trained_digits(workdir, meta, config))
  except ValueError as e:
    raise factory.ConfigError(f'--problem: {e}') from None
  paths = trace.trace_problems(factory.make_model(config), params, config, np.array([a]),
                               np.array([b]), os.path.join(workdir, 'dumps'), run=f'trace-{a}x{b}',
                               checkpoint=workdir)
  for path in paths:  # None on the processes other than 0 of a multi-host run.
    print(path)
  return paths[0] if paths else ''


def predict_lines(model, params, config: ml_collections.ConfigDict, lines: List[str],
                  max_digits: int) -> List[str]:
  """One output line per input line: the product's digits, or `error: <why>`.

  Operands may have up to `max_digits` digits (`trained_digits`). Each
  problem is decoded over the steps its own operands need, in padded batches of
  `PREDICT_CHUNK`, so its answer does not depend on the lines around it.
  """
  framing = factory.make_framing(config)
  outputs: List[str] = [''] * len(lines)
  by_digits: Dict[int, List[int]] = {}
  operands = {}
  for i, line in enumerate(lines):
    try:
      operands[i] = tok.parse_problem(line, max_digits)
    except ValueError as e:
      outputs[i] = f'error: {e}'
      continue
    by_digits.setdefault(max(len(str(v)) for v in operands[i]), []).append(i)
  for digits, index in sorted(by_digits.items()):
    padding = [(0, 0)] * (-len(index) % PREDICT_CHUNK)
    a, b = np.array([operands[i] for i in index] + padding, np.int64).T
    decoded = train.decode_problems(model, params, framing, a, b, digits, PREDICT_CHUNK)
    for i, product in zip(index, decoded['products']):
      outputs[i] = str(product) if product >= 0 else 'error: the model produced no number'
  return outputs


def _chunks(lines: Iterable[str], size: int) -> Iterator[List[str]]:
  """Lists of up to `size` lines (without their line ends) as they arrive."""
  lines = iter(lines)
  while chunk := list(itertools.islice(lines, size)):
    yield [line.rstrip('\r\n') for line in chunk]


def predict_stream(model, params, config: ml_collections.ConfigDict, max_digits: int,
                   stdin: TextIO, stdout: TextIO) -> bool:
  """Answers `stdin`'s problems on `stdout`, one line per line (see `predict_lines`), reading,
  answering and flushing `PREDICT_CHUNK` lines at a time (one at a time from a terminal), so
  any length of input streams in bounded memory. Returns whether any line was an error."""
  failed = False
  for chunk in _chunks(stdin, 1 if stdin.isatty() else PREDICT_CHUNK):
    outputs = predict_lines(model, params, config, chunk, max_digits)
    stdout.write(''.join(line + '\n' for line in outputs))
    stdout.flush()
    failed = failed or any(line.startswith('error:') for line in outputs)
  return failed


def run_predict(config: ml_collections.ConfigDict, workdir: str, stdin: TextIO = sys.stdin,
                stdout: TextIO = sys.stdout) -> int:
  """`predict_stream` with the workdir's best checkpoint, for operands up to the digits it was
  trained on (`trained_digits`); returns 1 if any line was an error, else 0."""
  params, meta = ckpt.load_params(workdir, config)
  max_digits = trained_digits(workdir, meta, config)
  return int(predict_stream(factory.make_model(config), params, config, max_digits, stdin,
                            stdout))
