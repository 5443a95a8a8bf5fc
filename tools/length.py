"""Length generalization: how a checkpoint scores L×L problems for each operand length L.

  python tools/length.py WORKDIR [--lengths=1-10] [--count=2000] [--seed=1234] [--step=N] \
      [--out=FOLDER] [--json=PATH] [--png=PATH]

For each length L, `--count` problems of L×L digits (`evaluate.evaluation_problems`: held-out
pairs where the size has them, every 1×1 problem), drawn with `--seed` and L, are decoded
greedily with the workdir's best checkpoint (or saved `--step`) and the config in its `config.json`, and scored:
exact match (the decoded answer is the product), per-digit accuracy (the answer's digits, each
at its step), the EOS's accuracy, and the accuracy at each place of the answer (place 0: the
units digit, whatever the digit order; a place counts the problems whose answer has it), which
shows which digits go wrong first. A length longer than the model's `task.max_digits` cannot
be written into its input: its row says so instead of a score. The table is printed in
markdown; `length.json` and `length.png` (exact match and per-digit accuracy against L, and
the accuracy at each place) go to `--out` (default: the workdir if it is a training workdir,
else `runs/<name>-outputs`; `--json`/`--png` name either file).
"""

import argparse
import os
import re
import sys
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import matplotlib  # pylint: disable=g-import-not-at-top

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import data as data_lib  # pylint: disable=g-import-not-at-top
from ttm_jax import evaluate  # pylint: disable=g-import-not-at-top
from ttm_jax import factory  # pylint: disable=g-import-not-at-top
from ttm_jax import files  # pylint: disable=g-import-not-at-top
from ttm_jax import outputs  # pylint: disable=g-import-not-at-top
from ttm_jax import tokens as tok  # pylint: disable=g-import-not-at-top


def parse_lengths(text: str) -> List[int]:
  """`'1-10'`, `'3,5,7'` or a mix -> sorted distinct lengths.

  Raises:
    factory.ConfigError: naming `--lengths`.
  """
  lengths = set()
  for part in text.split(','):
    match = re.fullmatch(r'([1-9][0-9]*)(?:-([1-9][0-9]*))?', part.strip())
    if not match or int(match.group(2) or match.group(1)) < int(match.group(1)):
      raise factory.ConfigError(f'--lengths={text!r}: expected lengths like 1-10 or 3,5,7')
    lengths.update(range(int(match.group(1)), int(match.group(2) or match.group(1)) + 1))
  return sorted(lengths)


def score(predictions: np.ndarray, targets: np.ndarray, digit_order: str) -> Dict:
  """Per-digit, EOS and per-place accuracy of decoded answers.

  Args:
    predictions: `[N, P]` predicted tokens of the answer steps.
    targets: `[N, P]` the answers: digits, EOS, then PAD (`Framing.encode`'s targets from
      `answer_start` on).
    digit_order: the framing's, 'lsb' or 'msb' (which step holds which place).

  Returns:
    dict with `digit_accuracy`, `eos_accuracy`, and per place of the answer (0: units)
    `place_accuracy` (None where no answer has the place) and `place_count`.
  """
  length = np.argmax(targets == tok.EOS_TOKEN, axis=1)  # Shape: [N]: digits of each answer.
  step = np.arange(targets.shape[1])[None, :]
  digit = step < length[:, None]  # Shape: [N, P].
  correct = predictions == targets
  place = step if digit_order == 'lsb' else length[:, None] - 1 - step
  counts = [int(np.sum(digit & (place == p))) for p in range(targets.shape[1] - 1)]
  hits = [int(np.sum(correct & digit & (place == p))) for p in range(len(counts))]
  return {'digit_accuracy': float(np.sum(correct & digit) / np.sum(digit)),
          'eos_accuracy': float(np.mean(correct[np.arange(len(targets)), length])),
          'place_accuracy': [h / c if c else None for h, c in zip(hits, counts)],
          'place_count': counts}


def run(workdir: str, loaded: Tuple, lengths: List[int], count: int, seed: int) -> Dict:
  """Scores each length with the model `ckpt.load_for_inference(workdir)` returned; the JSON
  result."""
  model, params, config, meta = loaded
  framing = factory.make_framing(config)
  trained = evaluate.checkpoint_digits(workdir, meta, config)
  rows, begin = [], time.perf_counter()
  for length in lengths:
    row = {'length': length, 'size': f'{length}x{length}',
           'longer_than_trained': length > trained}
    if length > framing.max_digits:
      rows.append({**row, 'encodable': False,
                   'reason': f'cannot encode: operands of {length} digits; the model takes '
                             f'at most {framing.max_digits} (task.max_digits)'})
      continue
    ranges = data_lib.digit_range(length) * 2
    a, b, which = evaluate.evaluation_problems(np.random.default_rng([seed, length]), *ranges,
                                               count)
    digits = framing.encoding_digits(length, trained)
    decoded = evaluate.decode_problems(model, params, framing, a, b, digits,
                                       config.eval.batch_size)
    start = framing.answer_start(digits)
    rows.append({**row, 'encodable': True, 'problems': which, 'count': len(a),
                 'exact_match': float(np.mean(decoded['products'] == a * b)),
                 **score(decoded['predictions'][:, start:], decoded['targets'][:, start:],
                         framing.digit_order)})
  return {'workdir': workdir, 'positions': framing.positions, 'max_digits': framing.max_digits,
          'place_offset': framing.place_offset, 'trained_digits': trained,
          'step': meta['step'], 'checkpoint_stage': meta.get('curriculum', {}).get('stage'),
          'seed': seed,
          'device': jax.devices()[0].device_kind, 'seconds': time.perf_counter() - begin,
          'rows': rows}


def percent(x) -> str:
  return '-' if x is None else f'{100 * x:.2f}%'


def format_table(result: Dict) -> str:
  """The rows as a markdown table, then the accuracy per place of the answer."""
  rows = result['rows']
  lines = ['| size | problems | exact match | per digit | EOS |', '|---|---|---|---|---|']
  for r in rows:
    size = r['size'] + (' (longer than trained)' if r['longer_than_trained'] else '')
    if not r['encodable']:
      lines.append(f'| {size} | - | {r["reason"]} | | |')
      continue
    lines.append(f'| {size} | {r["count"]} {r["problems"]} | {percent(r["exact_match"])} | '
                 f'{percent(r["digit_accuracy"])} | {percent(r["eos_accuracy"])} |')
  scored = [r for r in rows if r['encodable']]
  if scored:
    places = max(len(r['place_accuracy']) for r in scored)
    lines += ['', 'accuracy at each place of the answer (0: units):', '',
              '| size | ' + ' | '.join(str(p) for p in range(places)) + ' |',
              '|---|' + '---|' * places]
    lines += [f'| {r["size"]} | ' + ' | '.join(
        percent(x) for x in r['place_accuracy'] + [None] * (places - len(r['place_accuracy'])))
              + ' |' for r in scored]
  return '\n'.join(lines)


def plot(result: Dict, path: str):
  """Exact match and per-digit accuracy against L (lengths it cannot encode marked), and the
  accuracy at each place of the answer, into `path`."""
  rows = result['rows']
  scored = [r for r in rows if r['encodable']]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  lengths = [r['length'] for r in scored]
  left.plot(lengths, [100 * r['exact_match'] for r in scored], 'o-', label='exact match')
  left.plot(lengths, [100 * r['digit_accuracy'] for r in scored], 's--', label='per digit')
  for i, r in enumerate(r for r in rows if not r['encodable']):  # Not scored: no point.
    left.axvspan(r['length'] - 0.5, r['length'] + 0.5, color='0.9',
                 label=None if i else 'cannot encode (not scored)')
  left.axvline(result['trained_digits'] + 0.5, color='gray', linestyle=':',
               label=f'trained up to {result["trained_digits"]} digits')
  left.set(xlabel='operand length L (L×L problems)', ylabel='accuracy (%)', ylim=(-3, 103),
           xticks=[r['length'] for r in rows],
           title=f'{result["workdir"]} ({result["positions"]})')
  left.legend(loc='best')
  places = max((len(r['place_accuracy']) for r in scored), default=1)
  grid = np.full((len(scored), places), np.nan)
  for i, r in enumerate(scored):
    grid[i, :len(r['place_accuracy'])] = [np.nan if x is None else 100 * x
                                          for x in r['place_accuracy']]
  image = right.imshow(grid, aspect='auto', vmin=0, vmax=100, cmap='viridis', origin='lower')
  right.set(xlabel='place of the answer digit (0: units)', ylabel='operand length L',
            yticks=range(len(scored)), yticklabels=lengths, title='accuracy at each place (%)')
  fig.colorbar(image, ax=right)
  fig.tight_layout()
  files.save_figure(fig, path, dpi=90)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--lengths', default='1-10', help='operand lengths, e.g. 1-10 or 3,5,7')
  parser.add_argument('--count', type=int, default=2000, help='problems per length')
  parser.add_argument('--seed', type=int, default=1234, help='seeds the draw of the problems')
  parser.add_argument('--step', type=int, default=None,
                      help='score this saved step of a training workdir (default: the best)')
  parser.add_argument('--out', default=None, help='folder of length.json and length.png')
  parser.add_argument('--json', default=None, help='write the result here instead')
  parser.add_argument('--png', default=None, help='write the picture here instead')
  args = parser.parse_args(argv)
  if args.count < 1:
    raise SystemExit(f'error: --count={args.count}: score at least 1 problem per length')
  out = outputs.output_dir(args.workdir, args.out)
  json_path = args.json or os.path.join(out, 'length.json')
  png_path = args.png or os.path.join(out, 'length.png')
  try:
    lengths = parse_lengths(args.lengths)
    # Before any folder is made for the results.
    loaded = ckpt.load_for_inference(args.workdir, args.step)
    files.check_outputs(json_path, png_path)
    result = run(args.workdir, loaded, lengths, args.count, args.seed)
  except (factory.ConfigError, ckpt.CheckpointError) as e:
    raise SystemExit(f'error: {e}') from None
  except OSError as e:
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  print(format_table(result))
  print(f'{len(lengths)} lengths of step {result["step"]} in {result["seconds"]:.1f} s '
        f'({result["device"]}, compilation included)')
  try:
    files.write_json(json_path, result)
    plot(result, png_path)
  except OSError as e:
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  print(f'wrote {json_path} and {png_path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
