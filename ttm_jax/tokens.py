"""The multiplication task's vocabulary and conversions between numbers, problems and tokens.

Vocabulary (13 tokens): digits 0-9, `×` = 10, EOS = 11, PAD = 12.
"""

import re
from typing import List, Sequence, Tuple

VOCAB_SIZE = 13
DIGIT_TOKENS = list(range(10))
TIMES_TOKEN = 10
EOS_TOKEN = 11
PAD_TOKEN = 12

_SPECIAL_STRINGS = {TIMES_TOKEN: '×', EOS_TOKEN: '<EOS>', PAD_TOKEN: '<PAD>'}
# `123×45`, `123*45`, `123 x 45`: ASCII digits only, spaces around the sign allowed.
_PROBLEM_RE = re.compile(r'\s*([0-9]+)\s*[×*xX]\s*([0-9]+)\s*', re.ASCII)
_SHOWN_CHARS = 40  # A problem quoted in an error message is cut to this many characters.


def number_to_tokens(number: int) -> List[int]:
  """Digits of a non-negative integer, most significant first: 42 -> [4, 2]."""
  if number < 0:
    raise ValueError(f'number_to_tokens takes a non-negative integer, got {number}')
  return [int(c) for c in str(int(number))]


def tokens_to_number(tokens: Sequence[int]) -> int:
  """Inverse of `number_to_tokens` for digit tokens (most significant first)."""
  if not tokens or any(t not in DIGIT_TOKENS for t in tokens):
    raise ValueError(f'not a digit sequence: {list(tokens)}')
  return int(''.join(str(t) for t in tokens))


def tokens_to_string(tokens: Sequence[int]) -> str:
  """Readable string of tokens: [4, 2] -> '42'; specials shown as `×`, `<EOS>`, `<PAD>`."""
  return ''.join(_SPECIAL_STRINGS.get(int(t), str(int(t))) for t in tokens)


def pad_sequence(tokens: Sequence[int], length: int, pad: int = PAD_TOKEN) -> List[int]:
  """Appends `pad` until the sequence has `length` tokens; refuses to truncate."""
  if len(tokens) > length:
    raise ValueError(f'sequence of {len(tokens)} tokens does not fit in length {length}')
  return list(tokens) + [pad] * (length - len(tokens))


def _quoted(text: str) -> str:
  """`text` for an error message: stripped, quoted with escapes, cut if long."""
  text = text.strip()
  return repr(text) if len(text) <= _SHOWN_CHARS else repr(text[:_SHOWN_CHARS]) + '...'


def parse_problem(text: str, max_digits: int = None,
                  bound: str = 'was trained on') -> Tuple[int, int]:
  """Parses `123×45`, `123*45` or `123 x 45` (ASCII digits) into its operands.

  Raises:
    ValueError: naming the problem, for an empty line, anything else malformed, or an operand
      with more than `max_digits` digits (when given; checked before any conversion, so an
      operand of any length gets this message: `the model <bound> operands up to N digits`).
  """
  if not text.strip():
    raise ValueError('empty line: expected a problem like 123×45')
  match = _PROBLEM_RE.fullmatch(text)
  if not match:
    raise ValueError(f'malformed problem {_quoted(text)}: expected two non-negative '
                     'integers (ASCII digits) joined by ×, * or x, like 123×45')
  if max_digits is not None:
    for operand in match.groups():
      digits = len(operand.lstrip('0') or '0')
      if digits > max_digits:
        raise ValueError(f'problem {_quoted(text)}: an operand has {digits} digits; the model '
                         f'{bound} operands up to {max_digits} '
                         f'digit{"" if max_digits == 1 else "s"}')
  return int(match.group(1)), int(match.group(2))


def problem_to_tokens(a: int, b: int) -> List[int]:
  """`a×b<EOS>` as tokens (most significant digit first)."""
  return number_to_tokens(a) + [TIMES_TOKEN] + number_to_tokens(b) + [EOS_TOKEN]
