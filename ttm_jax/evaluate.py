"""`--mode=eval` (accuracy per digit size on fresh problems) and `--mode=predict` (answers for
problems read from a stream)."""

import json
import os
import sys
from typing import Dict, List, Optional, TextIO

import ml_collections
import numpy as np

from ttm_jax import checkpoint as ckpt
from ttm_jax import data as data_lib
from ttm_jax import factory
from ttm_jax import tokens as tok
from ttm_jax import trace
from ttm_jax import train


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


def run_trace(config: ml_collections.ConfigDict, workdir: str, problem: str) -> str:
  """Traces one problem (`123×45`) with the workdir's best checkpoint into `workdir/dumps`;
  returns the dump file's path."""
  framing = factory.make_framing(config)
  try:
    a, b = tok.parse_problem(problem or '', framing.max_digits)
  except ValueError as e:
    raise factory.ConfigError(f'--problem: {e}') from None
  params, _ = ckpt.load_params(workdir, config)
  (path,) = trace.trace_problems(factory.make_model(config), params, config, np.array([a]),
                                 np.array([b]), os.path.join(workdir, 'dumps'), run=f'trace-{a}x{b}',
                                 checkpoint=workdir)
  print(path)
  return path


def predict_lines(model, params, config: ml_collections.ConfigDict, lines: List[str]) -> List[str]:
  """One output line per input line: the product's digits, or `error: <why>`."""
  framing = factory.make_framing(config)
  outputs: List[str] = [''] * len(lines)
  problems = {}
  for i, line in enumerate(lines):
    try:
      problems[i] = tok.parse_problem(line, framing.max_digits)
    except ValueError as e:
      outputs[i] = f'error: {e}'
  if problems:
    index = list(problems)
    a = np.array([problems[i][0] for i in index])
    b = np.array([problems[i][1] for i in index])
    digits = max(len(str(v)) for v in np.concatenate([a, b]))
    decoded = train.decode_problems(model, params, framing, a, b, digits,
                                    config.eval.batch_size)
    for i, product in zip(index, decoded['products']):
      outputs[i] = str(product) if product >= 0 else 'error: the model produced no number'
  return outputs


def run_predict(config: ml_collections.ConfigDict, workdir: str, stdin: TextIO = sys.stdin,
                stdout: TextIO = sys.stdout) -> int:
  """Answers stdin's problems on stdout; returns 1 if any line was malformed, else 0."""
  params, _ = ckpt.load_params(workdir, config)
  lines = [line.rstrip('\n') for line in stdin]
  outputs = predict_lines(factory.make_model(config), params, config, lines)
  stdout.write(''.join(line + '\n' for line in outputs))
  return int(any(line.startswith('error:') for line in outputs))
