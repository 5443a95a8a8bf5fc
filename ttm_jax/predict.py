"""Problems a person gives: `--mode=predict` (answers for problems read from a stream) and
`--mode=trace` (one problem traced into dump files), for operands no longer than the checkpoint
was trained on (`evaluate.checkpoint_digits`), or for a 'places' model (`config.task.positions`)
up to `config.task.max_digits` (`evaluate.answerable_digits`)."""

import itertools
import sys
from typing import Dict, Iterable, Iterator, List, Optional, TextIO

import ml_collections
import numpy as np

from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import dump_files
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import outputs
from ttm_jax import tokens as tok

PREDICT_CHUNK = 256  # Lines --mode=predict reads, answers and flushes at a time.


def run_trace(config: ml_collections.ConfigDict, workdir: str, problem: str,
              out: Optional[str] = None) -> str:
  """Traces one problem (`123×45`) with the workdir's best checkpoint into a dumps folder of
  its own, `trace-123x45` in `outputs.output_dir(workdir, out)` (for an export such as
  `checkpoints/mult`: `runs/<name>-outputs`); prints the model's answer, the dump file's path
  and the viewer command, and returns the path ('' on the processes other than 0 of a
  multi-host run)."""
  params, meta = ckpt.load_params(workdir, config)
  trained_digits = evaluate.checkpoint_digits(workdir, meta, config)
  try:
    a, b = tok.parse_problem(problem, evaluate.answerable_digits(workdir, meta, config),
                             evaluate.BOUNDS[config.task.positions])
  except ValueError as e:
    raise factory.ConfigError(f'--problem: {e}') from None
  dump_dir = outputs.trace_dir(outputs.output_dir(workdir, out), a, b)
  dump_files.check_writable(dump_dir)
  paths = evaluate.trace_problems(factory.make_model(config), params,
                                  factory.make_framing(config), np.array([a]), np.array([b]),
                                  dump_dir, run=f'trace-{a}x{b}', checkpoint=workdir,
                                  trained_digits=trained_digits)
  if not paths:  # The processes other than 0 of a multi-host run write nothing.
    return ''
  info = dump_files.load_sequence(paths[0]).info
  verdict = 'correct' if info['correct'] else f'wrong: {a}×{b} = {info["target"]}'
  print(f'{a}×{b} = {info["prediction"]} ({verdict})')
  print(f'{paths[0]}\n(view it: python tools/viewer.py {dump_dir})', flush=True)
  return paths[0]


def predict_lines(model, params, config: ml_collections.ConfigDict, lines: List[str],
                  max_digits: int) -> List[str]:
  """One output line per input line: the product's digits, or `error: <why>`.

  Operands may have up to `max_digits` digits (`evaluate.answerable_digits`). Each problem is
  decoded over the steps its own operands need (`Framing.encoding_digits`), in padded batches
  of `PREDICT_CHUNK`, so its answer does not depend on the lines around it.
  """
  framing = factory.make_framing(config)
  outputs: List[str] = [''] * len(lines)
  by_digits: Dict[int, List[int]] = {}
  operands = {}
  for i, line in enumerate(lines):
    try:
      operands[i] = tok.parse_problem(line, max_digits, evaluate.BOUNDS[config.task.positions])
    except ValueError as e:
      outputs[i] = f'error: {e}'
      continue
    digits = framing.encoding_digits(data.longest_operand(*operands[i]), max_digits)
    by_digits.setdefault(digits, []).append(i)
  for digits, index in sorted(by_digits.items()):
    padding = [(0, 0)] * (-len(index) % PREDICT_CHUNK)
    a, b = np.array([operands[i] for i in index] + padding, np.int64).T
    decoded = evaluate.decode_problems(model, params, framing, a, b, digits, PREDICT_CHUNK)
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
  """`predict_stream` with the workdir's best checkpoint, for operands up to
  `evaluate.answerable_digits`; returns 1 if any line was an error, else 0."""
  params, meta = ckpt.load_params(workdir, config)
  max_digits = evaluate.answerable_digits(workdir, meta, config)
  return int(predict_stream(factory.make_model(config), params, config, max_digits, stdin,
                            stdout))
