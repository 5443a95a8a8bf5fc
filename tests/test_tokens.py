"""Vocabulary and conversions (checklist Phase 2)."""

from hypothesis import given
from hypothesis import strategies as st
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


@pytest.mark.parametrize('text', ['123×45', '123*45', '123 x 45', ' 123X45 ', '123x45\r'])
def test_parse_problem_accepts(text):
  assert tok.parse_problem(text) == (123, 45)


@pytest.mark.parametrize('text', ['123', '12×', '×4', '1.5×2', '-3×4', '12+4', '1×2×3', 'abc',
                                  '١٢×٣', '１２×３', '12×٣', '²×3', '12\u00a0x3'])
def test_parse_problem_rejects_with_the_problem_named(text):
  with pytest.raises(ValueError) as raised:
    tok.parse_problem(text)
  assert str(raised.value) == (f'malformed problem {text.strip()!r}: expected two non-negative '
                               'integers (ASCII digits) joined by ×, * or x, like 123×45')


@pytest.mark.parametrize('text', ['', ' ', '\t', '\r'])
def test_parse_problem_blank_line(text):
  with pytest.raises(ValueError) as raised:
    tok.parse_problem(text)
  assert str(raised.value) == 'empty line: expected a problem like 123×45'


def test_parse_problem_rejects_too_long_operands():
  with pytest.raises(ValueError) as raised:
    tok.parse_problem('12345×6', max_digits=4)
  assert str(raised.value) == ("problem '12345×6': an operand has 5 digits; the model was "
                               'trained on operands up to 4 digits')
  assert tok.parse_problem('0012×6', max_digits=2) == (12, 6)
  with pytest.raises(ValueError, match=r'^problem .12×6.: an operand has 2 digits; the model '
                     r'was trained on operands up to 1 digit$'):
    tok.parse_problem('12×6', max_digits=1)


def test_a_huge_operand_is_measured_before_conversion():
  text = '7' * 5000 + 'x2'  # Past Python's 4300-digit limit on int(str).
  with pytest.raises(ValueError) as raised:
    tok.parse_problem(text, max_digits=3)
  assert str(raised.value) == (f"problem {'7' * 40!r}...: an operand has 5000 digits; the "
                               'model was trained on operands up to 3 digits')


def test_a_long_malformed_line_is_cut_in_the_message():
  with pytest.raises(ValueError) as raised:
    tok.parse_problem('a' * 1000)
  assert str(raised.value).startswith(f"malformed problem {'a' * 40!r}...: expected")


# Text that is often nearly a problem: digits of many scripts, signs, spaces, anything.
PROBLEMISH = st.lists(st.one_of(st.sampled_from(list('0123456789×*xX  ١２²-.')), st.characters()),
                      max_size=30).map(''.join)


@given(st.one_of(PROBLEMISH, st.text()), st.integers(1, 6))
def test_parse_problem_answers_or_raises_one_line(text, max_digits):
  try:
    a, b = tok.parse_problem(text, max_digits)
  except ValueError as e:
    message = str(e)
    assert message.startswith(('empty line:', 'malformed problem ', 'problem ')), message
    assert len(message.splitlines()) == 1
    return
  assert 0 <= a < 10**max_digits and 0 <= b < 10**max_digits
  assert set(text.strip()) <= set('0123456789×*xX \t\n\r\x0b\x0c')


def test_problem_to_tokens():
  assert tok.problem_to_tokens(5, 7) == [5, 10, 7, 11]
