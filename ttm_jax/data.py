"""Multiplication problems as TTM steps: curriculum stages, batches, augmentation.

Two step framings (DESIGN §2), chosen by `framing`:

* `'problem'` (problem-per-step): every step sees the whole problem `a×b<EOS>` padded to
  `problem_len = 2 * max_digits + 2` tokens, plus one slot holding the previous answer token
  (PAD at the first step). Step t predicts answer token t. `inputs [B, S, problem_len + 1]`.
* `'stream'`: one token per step, the problem (padded to the stage's length) then the answer;
  each step predicts the next token. `inputs [B, S, 1]`.

In both, `targets [B, S]` holds the token each step must predict (PAD where nothing is
predicted), and the token a step predicts is fed back in the last input slot of the next step;
`answer_start` is the first step that predicts. With `digit_order='lsb'` both operands and the
answer are written least significant digit first (the order a person carries in).

With `positions='places'` (issue 36; `model.py`) a problem is written at the batch's longest
operand (aligned, `n = 2 * digits + 3`) instead of `max_digits`, and training batches carry a
place offset per example (`offsets [B]`, uniform in `[0, place_offset]`, from the dataset's RNG
so that a resumed run draws the same ones).

The held-out split (DESIGN §2) is defined here and nowhere else: an unordered pair with both
operands >= 10 is held out when `crc32('{min}x{max}') % 10 == 0` (`is_held_out`). Training
batches never contain one (`MultiplicationDataset` redraws them; swapping operands keeps a
pair's status); evaluation scores only them wherever both operands have 2+ digits
(`evaluate.evaluation_problems`).
"""

import dataclasses
import json
import re
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ttm_jax import tokens as tok

STAGES: Tuple[Tuple[int, int], ...] = (
    (1, 9), (10, 99), (100, 999), (1000, 9999), (1, 99), (1, 999), (1, 9999))
FRAMINGS = ('problem', 'stream')
DIGIT_ORDERS = ('lsb', 'msb')
LAYOUTS = ('packed', 'aligned')
POSITIONS = ('slots', 'places')


@dataclasses.dataclass(frozen=True)
class Framing:
  """How problems become steps.

  Attributes:
    max_digits: the longest operand the model is built for (fixes `problem_len`).
    framing: 'problem' or 'stream' (module docstring).
    digit_order: 'lsb' or 'msb': the order digits of operands and answer are written in.
    layout: 'packed' (`a×b<EOS>` as written) or 'aligned' (each operand padded with PAD to
      `max_digits`, so a digit's slot says its place value whatever the operands' lengths;
      'problem' framing only).
    positions: 'slots' or 'places' (module docstring; 'places': aligned problem framing, each
      operand padded to the batch's longest instead of `max_digits`).
    place_offset: the largest random place offset of a training example ('places' only).
  """
  max_digits: int = 4
  framing: str = 'problem'
  digit_order: str = 'lsb'
  layout: str = 'packed'
  positions: str = 'slots'
  place_offset: int = 0

  def __post_init__(self):
    for name, choices in (('framing', FRAMINGS), ('digit_order', DIGIT_ORDERS),
                          ('layout', LAYOUTS), ('positions', POSITIONS)):
      if getattr(self, name) not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {getattr(self, name)!r}')
    if self.layout == 'aligned' and self.framing != 'problem':
      raise ValueError("layout 'aligned' is for the 'problem' framing only")
    if self.positions == 'places' and self.layout != 'aligned':
      raise ValueError("positions 'places' needs the 'aligned' layout (and 'problem' framing)")
    if self.place_offset < 0 or (self.place_offset and self.positions != 'places'):
      raise ValueError(f"place_offset {self.place_offset}: 0, or positive with 'places'")

  @property
  def problem_len(self) -> int:
    """Tokens of `a×b<EOS>` with both operands at `max_digits`."""
    return 2 * self.max_digits + 2

  @property
  def tokens_per_step(self) -> int:
    """n: input tokens per step (in 'places', of a batch with operands of `max_digits`)."""
    return self.problem_len + 1 if self.framing == 'problem' else 1

  def step_tokens(self, digits: int) -> int:
    """n of a batch of operands up to `digits` digits (`tokens_per_step` in 'slots')."""
    return 2 * digits + 3 if self.positions == 'places' else self.tokens_per_step

  def num_steps(self, digits: int) -> int:
    """S for operands of up to `digits` digits (answer of up to 2*digits digits, then EOS)."""
    answer_steps = 2 * digits + 1
    return answer_steps if self.framing == 'problem' else 2 * digits + 2 + answer_steps

  def answer_start(self, digits: int) -> int:
    """First step whose prediction is an answer token."""
    return 0 if self.framing == 'problem' else 2 * digits + 1

  def encoding_digits(self, digits: int, trained_digits: int) -> int:
    """The length to encode a problem with operands of up to `digits` digits at, for a model
    trained on operands of up to `trained_digits`. In the stream framing the answer starts
    after the problem padded to the batch's length, and training batches are padded to their
    stage's longest operand, so a shorter problem is padded to the trained length (else a model
    trained on 1-99 would be asked for 3×4 two steps earlier than it ever answered); in the
    problem framing every problem starts answering at step 0, so it keeps its own length."""
    return max(digits, trained_digits) if self.framing == 'stream' else digits

  def _digits(self, number: int) -> List[int]:
    d = tok.number_to_tokens(number)
    return d[::-1] if self.digit_order == 'lsb' else d

  def _operand(self, number: int, width: int) -> List[int]:
    digits = self._digits(number)
    if self.layout == 'packed':
      return digits
    padding = [tok.PAD_TOKEN] * (width - len(digits))
    return digits + padding if self.digit_order == 'lsb' else padding + digits

  def problem_tokens(self, a: int, b: int, digits: Optional[int] = None) -> List[int]:
    """`a×b<EOS>` in this framing's digit order and layout, in a batch of operands up to
    `digits` digits (default `max_digits`)."""
    width = (digits or self.max_digits) if self.positions == 'places' else self.max_digits
    return (self._operand(a, width) + [tok.TIMES_TOKEN] + self._operand(b, width)
            + [tok.EOS_TOKEN])

  def answer_tokens(self, product: int) -> List[int]:
    """The product's digits in this framing's digit order, then EOS."""
    return self._digits(product) + [tok.EOS_TOKEN]

  def answer_to_number(self, tokens: Sequence[int]) -> Optional[int]:
    """Decodes predicted answer tokens (up to the first EOS); None if not a number."""
    tokens = [int(t) for t in tokens]
    digits = tokens[:tokens.index(tok.EOS_TOKEN)] if tok.EOS_TOKEN in tokens else tokens
    if not digits or any(t not in tok.DIGIT_TOKENS for t in digits):
      return None
    return tok.tokens_to_number(digits[::-1] if self.digit_order == 'lsb' else digits)

  def encode(self, a: np.ndarray, b: np.ndarray, digits: int,
             offsets: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Encodes operand arrays `[B]` into a teacher-forced batch with S = num_steps(digits).

    Args:
      a, b: the operands `[B]`.
      digits: the batch's operand length (at least the longest operand's).
      offsets: `[B]` place offsets ('places' only; default 0: evaluation and inference).

    Returns:
      dict with `inputs [B, S, n]` int32 (n = `step_tokens(digits)`), `targets [B, S]` int32,
      `a [B]`, `b [B]` int64, and in 'places' `offsets [B]` int32.
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if np.any(a < 0) or np.any(b < 0):
      raise ValueError('operands must be non-negative')
    longest = longest_operand(a, b)
    if longest > min(digits, self.max_digits):
      raise ValueError(f'an operand has {longest} digits; this batch allows '
                       f'{min(digits, self.max_digits)} (model max_digits={self.max_digits})')
    if offsets is not None and self.positions != 'places':
      raise ValueError("place offsets are for positions 'places' only")
    batch, steps, start = len(a), self.num_steps(digits), self.answer_start(digits)
    inputs = np.full((batch, steps, self.step_tokens(digits)), tok.PAD_TOKEN, np.int32)
    targets = np.full((batch, steps), tok.PAD_TOKEN, np.int32)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
      problem = self.problem_tokens(x, y, digits)
      answer = self.answer_tokens(x * y)
      targets[i, start:start + len(answer)] = answer
      if self.framing == 'problem':
        inputs[i, :, :len(problem)] = problem
      else:
        inputs[i, :len(problem), 0] = problem
      # Teacher forcing: the token predicted at step t is the input of step t + 1.
      inputs[i, start + 1:start + len(answer), -1] = answer[:-1]
    encoded = {'inputs': inputs, 'targets': targets, 'a': a, 'b': b}
    if self.positions == 'places':
      encoded['offsets'] = np.asarray(np.zeros(batch) if offsets is None else offsets, np.int32)
    return encoded


def longest_operand(*operands) -> int:
  """Digits of the largest of non-negative `operands` (ints or arrays of them)."""
  return len(str(int(max(np.max(x) for x in operands))))


def check_stage_order(order: Sequence[int]):
  """Raises ValueError unless `order` lists distinct curriculum stages (1-based)."""
  if not order or not set(order) <= set(range(1, len(STAGES) + 1)) or \
      len(set(order)) != len(order):
    raise ValueError(f'expected distinct stages in 1..{len(STAGES)}, got {list(order)}')


def stage_digits(stage: int) -> int:
  """Digits of the largest operand in curriculum stage `stage` (1-based)."""
  return len(str(STAGES[stage - 1][1]))


def sample_operands(rng: np.random.Generator, batch_size: int, low: int, high: int,
                    low_b: Optional[int] = None, high_b: Optional[int] = None):
  """Uniform operands a in [low, high] and b in [low_b, high_b] (default: same range)."""
  low_b, high_b = low if low_b is None else low_b, high if high_b is None else high_b
  return (rng.integers(low, high + 1, size=batch_size),
          rng.integers(low_b, high_b + 1, size=batch_size))


def digit_range(digits: int) -> Tuple[int, int]:
  """Operands with exactly `digits` digits (1-digit operands are 1-9, as in stage 1)."""
  return (1 if digits == 1 else 10 ** (digits - 1)), 10 ** digits - 1


_SIZE_RE = re.compile(r'[1-9][0-9]*[x-][1-9][0-9]*')  # AxB (digits) or L-H (operands).


def size_ranges(sizes: str) -> List[Tuple[int, int, int, int]]:
  """`'1x1,2x1,1-9999'` -> operand ranges `[(low_a, high_a, low_b, high_b), ...]`: `AxB` is an
  A-digit times a B-digit operand, `L-H` both operands in [L, H].

  Raises:
    ValueError: naming the first row that is neither.
  """
  ranges = []
  for size in str(sizes).split(','):
    if not _SIZE_RE.fullmatch(size):
      raise ValueError(f'{size!r}: expected rows like "1x1,2x1,3x3,1-9999" (AxB: digits of each '
                       'operand, at least 1x1; L-H: both operands from L to H)')
    first, second = (int(v) for v in re.split('[x-]', size))
    if 'x' in size:
      ranges.append((*digit_range(first), *digit_range(second)))
    elif first > second:
      raise ValueError(f'{size!r}: the range runs from {first} down to {second}')
    else:
      ranges.append((first, second, first, second))
  return ranges


HELD_OUT_MIN = 10  # Both operands at least this for a pair to be held out...
HELD_OUT_MODULUS = 10  # ...and the pair's CRC-32 divisible by this (about 1 pair in 10).


def is_held_out(a: int, b: int) -> bool:
  """Whether the unordered pair {a, b} is held out: never trained on, evaluated on."""
  if min(a, b) < HELD_OUT_MIN:
    return False
  key = f'{min(a, b)}x{max(a, b)}'.encode()
  return zlib.crc32(key) % HELD_OUT_MODULUS == 0


def held_out_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """`is_held_out` of each pair of the operand arrays `[N]`: bool `[N]`."""
  return np.array([is_held_out(x, y) for x, y in zip(a.tolist(), b.tolist())], bool)


def without_held_out(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, low: np.ndarray,
                     high: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Training draws: redraws each held-out pair from its range until none is held out, so
  each pair is uniform over the range's pairs that are not held out.

  Args:
    rng: the generator to draw from.
    a, b: operands `[N]`, drawn uniformly from `[low, high]`.
    low, high: each example's operand range, `[N]` (or scalars).

  Returns:
    `(a, b)`, new arrays.
  """
  a, b = a.copy(), b.copy()
  low, high = np.broadcast_to(low, a.shape), np.broadcast_to(high, a.shape)
  while (index := np.flatnonzero(held_out_mask(a, b))).size:
    a[index] = rng.integers(low[index], high[index] + 1)
    b[index] = rng.integers(low[index], high[index] + 1)
  return a, b


def held_out_like(rng: np.random.Generator, a: np.ndarray,
                  b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Evaluation draws: every pair with both operands >= 10 is redrawn, keeping each operand's
  number of digits, until it is held out; pairs with a smaller operand (too few to hold out)
  stay as drawn. The digit lengths of the draw are unchanged.

  Returns:
    `(a, b)`, new arrays `[N]`.
  """
  a, b = a.copy(), b.copy()
  holdable = np.minimum(a, b) >= HELD_OUT_MIN
  while (index := np.flatnonzero(holdable & ~held_out_mask(a, b))).size:
    for x in (a, b):
      digits = np.array([len(str(v)) for v in x[index].tolist()])
      x[index] = rng.integers(10 ** (digits - 1), 10 ** digits)
  return a, b


class MultiplicationDataset:
  """Random multiplication problems of the curriculum's current stage, from a seeded numpy RNG.

  Attributes:
    curriculum: says which stage each example comes from (`curriculum.Curriculum`:
      `example_stages(rng, batch_size)`).
  """

  def __init__(self, batch_size: int, seed: int, curriculum, framing: Framing = Framing(),
               augment: bool = True):
    if stage_digits(max(curriculum.order)) > framing.max_digits:
      raise ValueError(f'stage {max(curriculum.order)} needs max_digits >= '
                       f'{stage_digits(max(curriculum.order))}')
    self.batch_size = batch_size
    self.curriculum = curriculum
    self.framing = framing
    self.augment = augment
    self.rng = np.random.default_rng(seed)

  def generate_batch(self) -> Dict[str, np.ndarray]:
    """A batch, encoded (see `Framing.encode` for its arrays)."""
    return self.framing.encode(*self.draw_operands(), self.draw_offsets())

  def draw_offsets(self) -> Optional[np.ndarray]:
    """The place offsets of a batch, `[B]` uniform in `[0, framing.place_offset]`, drawn
    after its operands; None (and nothing drawn) when `place_offset` is 0."""
    if not self.framing.place_offset:
      return None
    return self.rng.integers(0, self.framing.place_offset + 1, size=self.batch_size)

  def draw_operands(self) -> Tuple[np.ndarray, np.ndarray, int]:
    """The operands of a batch: `(a [B], b [B], digits)`, no pair held out, augmented;
    `digits` is the longest operand length the batch's stages allow."""
    stages = self.curriculum.example_stages(self.rng, self.batch_size)
    low, high = np.array(STAGES)[stages - 1].T
    a = self.rng.integers(low, high + 1)
    b = self.rng.integers(low, high + 1)
    a, b = without_held_out(self.rng, a, b, low, high)
    if self.augment:
      a, b = self.augment_operands(a, b)
    return a, b, max(stage_digits(stage) for stage in set(stages.tolist()))

  def augment_operands(self, a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Swaps the operands of a random half (a×b = b×a) and permutes the examples."""
    a, b = a.copy(), b.copy()
    swap = self.rng.random(len(a)) < 0.5
    a[swap], b[swap] = b[swap], a[swap]
    order = self.rng.permutation(len(a))
    return a[order], b[order]

  def get_state(self) -> str:
    """The RNG state as a JSON string (saved in checkpoints)."""
    return json.dumps({'rng': self.rng.bit_generator.state})

  def set_state(self, state: str):
    """Restores what `get_state` returned."""
    self.rng.bit_generator.state = json.loads(state)['rng']
