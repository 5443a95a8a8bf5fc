"""Memory knock-out probe: which decoding steps use what earlier steps wrote to memory.

  python tools/probe_memory.py [--workdir=checkpoints/mult] [--size=3x3] [--count=500] \
      [--seed=0] [--json=PATH]

Decodes `--count` held-out problems of one size (`evaluate.evaluation_problems`, drawn with
`--seed`) greedily with the workdir's best checkpoint and the config in its `config.json`: once
as is (row `none`), and once for each step t with the memory set back to the model's initial
memory just before step t (`streaming.decode_with_memory_reset`): the steps before t run as
usual, and from t on decoding goes on greedily from the reset memory, feeding back its own
predictions. Each row gives the sequence exact match (every answer digit and the EOS right)
and the accuracy at each answer position: the answer's digits in the order the framing writes
them (`d1` first: the ones digit with `digit_order='lsb'`), then its EOS; a digit column counts
only the problems whose answer has that digit. An answer position that loses accuracy when the
memory is reset before step t depends on what the steps before t wrote to memory.
"""

import argparse
import os
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import data as data_lib  # pylint: disable=g-import-not-at-top
from ttm_jax import evaluate  # pylint: disable=g-import-not-at-top
from ttm_jax import factory  # pylint: disable=g-import-not-at-top
from ttm_jax import files  # pylint: disable=g-import-not-at-top
from ttm_jax import streaming  # pylint: disable=g-import-not-at-top
from ttm_jax import tokens as tok  # pylint: disable=g-import-not-at-top


def score(predictions: np.ndarray, targets: np.ndarray) -> Dict:
  """Exact match and accuracy per answer position of decoded answers.

  Args:
    predictions: `[N, P]` predicted tokens of the answer steps.
    targets: `[N, P]` the answers: digits, EOS, then PAD (`Framing.encode`'s targets from
      `answer_start` on).

  Returns:
    dict with `exact_match` (float), and per answer position (digits 1 to P-1, then EOS)
    `position_accuracy` (float, None where no answer has the position) and `position_count`
    (the problems that have it).
  """
  length = np.argmax(targets == tok.EOS_TOKEN, axis=1)  # Shape: [N]: digits of each answer.
  rows = np.arange(len(targets))
  correct = predictions == targets  # Shape: [N, P].
  has_digit = np.arange(targets.shape[1] - 1)[None, :] < length[:, None]  # Shape: [N, P-1].
  hits = np.append((correct[:, :-1] & has_digit).sum(0), correct[rows, length].sum())
  counts = np.append(has_digit.sum(0), len(targets))
  upto_eos = np.arange(targets.shape[1])[None, :] <= length[:, None]
  return {'exact_match': float(np.mean(np.all(correct | ~upto_eos, axis=1))),
          'position_accuracy': [float(h / c) if c else None for h, c in zip(hits, counts)],
          'position_count': counts.tolist()}


def probe(model, params, framing: data_lib.Framing, a: np.ndarray, b: np.ndarray, digits: int,
          batch_size: int) -> List[Dict]:
  """Greedy decoding of `a×b` (`[N]` each) with the memory reset before each step in turn.

  Returns:
    one `score` dict per step t (`reset_before_step`: t), then one without a reset
    (`reset_before_step`: None).
  """
  steps, start = framing.num_steps(digits), framing.answer_start(digits)
  variants = [*range(steps), None]
  predictions = {t: [] for t in variants}
  targets = []
  for first in range(0, len(a), batch_size):
    batch = framing.encode(a[first:first + batch_size], b[first:first + batch_size], digits)
    inputs = jnp.asarray(batch['inputs'])
    targets.append(batch['targets'][:, start:])
    for t in variants:
      reset = np.zeros(inputs.shape[:2], bool)  # Shape: [B, S].
      if t is not None:
        reset[:, t] = True
      decoded, _ = streaming.decode_with_memory_reset(model, params, inputs, start,
                                                      jnp.asarray(reset))
      predictions[t].append(np.asarray(decoded)[:, start:])
  targets = np.concatenate(targets)
  return [{'reset_before_step': t, **score(np.concatenate(predictions[t]), targets)}
          for t in variants]


def position_names(rows: List[Dict]) -> List[str]:
  """`['d1', ..., 'dK', 'EOS']`, the answer positions of `probe` rows."""
  return [f'd{k + 1}' for k in range(len(rows[0]['position_count']) - 1)] + ['EOS']


def format_table(rows: List[Dict], title: str) -> str:
  """A plain-text table of `probe` rows: one row per reset step, then `none`."""
  percent = lambda x: '-' if x is None else f'{100 * x:.2f}%'
  names = position_names(rows)
  lines = [title, f'{"reset before":>12} {"exact":>8} ' + ' '.join(f'{n:>8}' for n in names)]
  for row in rows:
    t = row['reset_before_step']
    cells = [percent(row['exact_match'])] + [percent(x) for x in row['position_accuracy']]
    lines.append(f'{"none" if t is None else f"step {t}":>12} '
                 + ' '.join(f'{c:>8}' for c in cells))
  lines.append(f'{"problems":>12} {"":>8} '
               + ' '.join(f'{c:>8}' for c in rows[0]['position_count']))
  return '\n'.join(lines)


def run(workdir: str, size: str, count: int, seed: int) -> Dict:
  """Loads the workdir's model, draws the problems and probes them; the JSON result.

  Raises:
    factory.ConfigError: a bad `size`, or one longer than the model's `max_digits`.
    ckpt.CheckpointError: no usable checkpoint in `workdir`.
  """
  ranges = evaluate.parse_sizes(size, '--size')
  if len(ranges) != 1:
    raise factory.ConfigError(f'--size={size!r}: give one size, e.g. 3x3')
  digits = data_lib.longest_operand(ranges[0][1], ranges[0][3])
  model, params, config, _ = ckpt.load_for_inference(workdir)
  framing = factory.make_framing(config)
  if digits > framing.max_digits:
    raise factory.ConfigError(f'--size={size}: operands of {digits} digits; the model in '
                              f'{workdir} takes at most {framing.max_digits} (task.max_digits)')
  rng = np.random.default_rng(seed)
  a, b, which = evaluate.evaluation_problems(rng, *ranges[0], count)
  begin = time.perf_counter()
  rows = probe(model, params, framing, a, b, digits, config.eval.batch_size)
  return {'workdir': workdir, 'size': evaluate.row_name(*ranges[0]), 'problems': which,
          'count': len(a), 'device': jax.devices()[0].device_kind,
          'seconds': time.perf_counter() - begin, 'positions': position_names(rows),
          'rows': rows}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default='checkpoints/mult')
  parser.add_argument('--size', default='3x3', help='AxB (digits) or L-H (operand range)')
  parser.add_argument('--count', type=int, default=500, help='problems to decode')
  parser.add_argument('--seed', type=int, default=0, help='seeds the draw of the problems')
  parser.add_argument('--json', default=None, help='write the result here')
  args = parser.parse_args(argv)
  if args.count < 1:
    raise SystemExit(f'error: --count={args.count}: decode at least 1 problem')
  try:
    files.check_outputs(args.json)
  except OSError as e:  # A missing folder that cannot be made, a read-only one.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  try:
    result = run(args.workdir, args.size, args.count, args.seed)
  except (factory.ConfigError, ckpt.CheckpointError) as e:
    raise SystemExit(f'error: {e}') from None
  except OSError as e:
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  print(format_table(result['rows'], f'memory knock-out probe: {args.workdir}, {result["count"]} '
                     f'{result["problems"]} {result["size"]} problems, greedy decoding\n'
                     'each row resets the memory to its initial value just before that step'))
  print(f'{result["count"]} problems x {len(result["rows"])} decodes in '
        f'{result["seconds"]:.1f} s ({result["device"]}, compilation included)')
  if args.json:
    try:
      files.write_json(args.json, result)
    except OSError as e:
      raise SystemExit(f'error: {files.os_error_message(e)}') from None
  return 0


if __name__ == '__main__':
  sys.exit(main())
