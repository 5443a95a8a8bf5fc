"""Vocabulary and conversions (checklist Phase 2)."""

import pytest

from ttm_jax import tokens as tok


def test_vocabulary_constants():
  assert tok.VOCAB_SIZE == 13
  assert list(tok.DIGIT_TOKENS) == list(range(10))
  assert (tok.TIMES_TOKEN, tok.EOS_TOKEN, tok.PAD_TOKEN) == (10, 11, 12)


def test_number_tokens_round_trip():
  assert tok.number_to_tokens(42) == [4, 2]
  assert tok.number_to_tokens(0) == [0]
  assert tok.tokens_to_number([1, 0, 7]) == 107
  with pytest.raises(ValueError):
    tok.number_to_tokens(-3)
  with pytest.raises(ValueError):
    tok.tokens_to_number([1, tok.EOS_TOKEN])


def test_tokens_to_string_shows_specials():
  assert tok.tokens_to_string([4, 2]) == '42'
  assert tok.tokens_to_string([5, 10, 7, 11, 12]) == '5×7<EOS><PAD>'


def test_pad_sequence():
  assert tok.pad_sequence([1, 2], 4) == [1, 2, 12, 12]
  assert tok.pad_sequence([1, 2], 2) == [1, 2]
  with pytest.raises(ValueError, match='does not fit'):
    tok.pad_sequence([1, 2, 3], 2)


@pytest.mark.parametrize('text', ['123×45', '123*45', '123 x 45', ' 123X45 '])
def test_parse_problem_accepts(text):
  assert tok.parse_problem(text) == (123, 45)


@pytest.mark.parametrize('text', ['', '123', '12×', '×4', '1.5×2', '-3×4', '12+4', '1×2×3',
                                  'abc'])
def test_parse_problem_rejects_with_the_problem_named(text):
  with pytest.raises(ValueError, match='malformed problem'):
    tok.parse_problem(text)


def test_parse_problem_rejects_too_long_operands():
  with pytest.raises(ValueError, match='more than 4 digits'):
    tok.parse_problem('12345×6', max_digits=4)
  assert tok.parse_problem('0012×6', max_digits=2) == (12, 6)


def test_problem_to_tokens():
  assert tok.problem_to_tokens(5, 7) == [5, 10, 7, 11]
