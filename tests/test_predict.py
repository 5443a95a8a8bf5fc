"""--mode=predict and --mode=trace with the shipped checkpoint (`checkpoints/mult`, 100% on 1×1,
2×1 and held-out 2×2): exact answers, the trained operand length, streaming, and random text."""

import io
import json
import os
import re
import shutil
import threading

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import demo
from ttm_jax import dump_files
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')
SHIPPED_DIGITS = 4  # Its curriculum stage 4 (4×4), the last of 1,5,2,6,3,7,4 in its config.


@pytest.fixture(scope='module')
def shipped():
  """`(config, model, params, meta)` of the shipped checkpoint."""
  config = mult.get_config()
  params, meta = ckpt.load_params(SHIPPED, config)
  return config, factory.make_model(config), params, meta


def test_shipped_checkpoint_answers_every_held_out_2x2_exactly(shipped):
  config, model, params, _ = shipped  # (Every 1×1: test_checkpoint.py.)
  problems = [(a, b) for a in range(10, 100) for b in range(10, 100) if data.is_held_out(a, b)]
  assert len(problems) == 770  # Both orders, as the table counts them.
  lines = [f'{a}×{b}' for a, b in problems]
  assert predict.predict_lines(model, params, config, lines, SHIPPED_DIGITS) == [
      str(a * b) for a, b in problems]


def test_an_answer_does_not_depend_on_the_lines_around_it(shipped):
  config, model, params, _ = shipped
  alone = predict.predict_lines(model, params, config, ['123x45'], SHIPPED_DIGITS)
  mixed = predict.predict_lines(model, params, config, ['7x8', 'junk', '123x45', '12x34'],
                                 SHIPPED_DIGITS)
  assert mixed == ['56', mixed[1], alone[0], '408']
  assert alone == [demo.Demo(model, params, config).report(123, 45)[0].split()[2]]


def test_checkpoint_digits_of_the_shipped_checkpoint(shipped):
  config, _, _, meta = shipped
  assert meta['curriculum']['stage'] == 4
  assert evaluate.checkpoint_digits(SHIPPED, meta, config) == SHIPPED_DIGITS


def test_checkpoint_digits_follow_the_recorded_stage_order(tmp_path):
  config, meta = mult.get_config(), {'curriculum': {'stage': 3}}
  workdir = str(tmp_path)
  recorded = mult.get_config()
  recorded.train.update(stages='1,2,4,3,5,6', last_stage=6)
  ckpt.write_config(workdir, recorded)
  assert evaluate.checkpoint_digits(workdir, meta, config) == 4  # Stage 4 (4 digits) came first.
  os.remove(os.path.join(workdir, ckpt.CONFIG_FILE))  # None recorded: the config's order.
  assert evaluate.checkpoint_digits(workdir, meta, config) == 3
  assert evaluate.checkpoint_digits(workdir, {'curriculum': {'stage': 2}}, config) == 2


def test_checkpoint_digits_without_a_recorded_stage_assume_the_last_stage(tmp_path, caplog):
  config = mult.get_config()
  config.train.update(stages='1,2,3,4', last_stage=3)
  assert evaluate.checkpoint_digits(str(tmp_path), {'config': {}}, config) == 3
  assert 'records no curriculum stage' in caplog.text


def test_predict_answers_past_the_trained_length_with_an_error(shipped):
  config, model, params, _ = shipped
  out = predict.predict_lines(model, params, config, ['99999x2', '2x12345', '999x9'],
                               SHIPPED_DIGITS)
  assert out == [
      "error: problem '99999x2': an operand has 5 digits; the model was trained on operands "
      'up to 4 digits',
      "error: problem '2x12345': an operand has 5 digits; the model was trained on operands up "
      'to 4 digits',
      '8991']


def test_run_predict_streams_before_the_input_ends(tmp_path):
  config = mult.get_config()
  read_end, write_end = os.pipe()
  stdout = io.StringIO()
  first = predict.PREDICT_CHUNK
  seen_before_end = threading.Event()

  def write():
    with os.fdopen(write_end, 'w') as pipe:
      pipe.write('3x4\n' * first)
      pipe.flush()
      for _ in range(6000):  # Up to 300 s for the model to load and answer.
        if stdout.getvalue().count('\n') >= first:
          seen_before_end.set()
          break
        threading.Event().wait(0.05)
      pipe.write('5x6\n' * 10)

  writer = threading.Thread(target=write)
  writer.start()
  with os.fdopen(read_end) as stdin:
    code = predict.run_predict(config, SHIPPED, stdin, stdout)
  writer.join()
  assert code == 0
  assert seen_before_end.is_set()
  assert stdout.getvalue() == '12\n' * first + '30\n' * 10


LINE_TEXT = st.text(st.characters(blacklist_characters='\n\r'), max_size=12)
PROBLEM_TEXT = st.builds('{}{}{}'.format, st.integers(0, 10**6), st.sampled_from('×*xX+ '),
                         st.integers(0, 10**6))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(LINE_TEXT, PROBLEM_TEXT), max_size=12))
def test_predict_stream_answers_every_line_with_digits_or_one_error(shipped, lines):
  config, model, params, _ = shipped
  stdout = io.StringIO()
  failed = predict.predict_stream(model, params, config, SHIPPED_DIGITS,
                                   io.StringIO(''.join(line + '\n' for line in lines)), stdout)
  out = stdout.getvalue().split('\n')
  assert out[-1] == '' and len(out) - 1 == len(lines)
  for line, answer in zip(lines, out):
    assert answer.isdigit() or answer.startswith('error: '), (line, answer)
  assert failed == any(answer.startswith('error: ') for answer in out)


def test_trace_of_a_problem_past_the_trained_length_is_an_error(tmp_path, digest, capsys):
  workdir = shutil.copytree(SHIPPED, tmp_path / 'mult')
  before = digest(workdir)
  config = mult.get_config()
  config.trace.num_examples = 0
  with pytest.raises(factory.ConfigError, match="^--problem: problem '12345x5': an operand has "
                     '5 digits; the model was trained on operands up to 4 digits$'):
    predict.run_trace(config, str(workdir), '12345x5')
  out = tmp_path / 'out'
  path = predict.run_trace(config, str(workdir), '12x34', out=str(out))
  assert json.load(open(out / 'trace-12x34' / 'index.json'))
  assert os.path.basename(path) in os.listdir(out / 'trace-12x34')
  assert capsys.readouterr().out.splitlines()[0] == '12×34 = 408 (correct)'
  assert digest(workdir) == before  # An export is only read.


def test_a_places_model_answers_operands_up_to_max_digits(places_run):
  config, workdir = places_run  # Trained on 1×1 only; operands up to 12 digits.
  params, meta = ckpt.load_params(workdir, config)
  assert evaluate.checkpoint_digits(workdir, meta, config) == 1
  assert evaluate.answerable_digits(workdir, meta, config) == 12
  out = predict.predict_lines(factory.make_model(config), params, config,
                              ['123456789012x3', '1234567890123x3', '7x8'], 12)
  assert re.fullmatch(r'[0-9]+|error: the model produced no number', out[0])
  assert out[1] == ("error: problem '1234567890123x3': an operand has 13 digits; the model "
                    'takes operands up to 12 digits')
  stdout = io.StringIO()
  predict.run_predict(config, workdir, io.StringIO('123456x78\n'), stdout)
  assert re.fullmatch(r'([0-9]+|error: the model produced no number)\n', stdout.getvalue())


def test_a_places_model_traces_and_demos_a_problem_longer_than_trained(places_run, tmp_path,
                                                                      capsys):
  config, workdir = places_run
  path = predict.run_trace(config, workdir, '123456x78', out=str(tmp_path))
  info = dump_files.load_sequence(path).info
  assert info['config']['n'] == 2 * 6 + 3 and info['num_steps'] == 2 * 6 + 1
  assert capsys.readouterr().out.startswith('123456×78 = ')
  stdout = io.StringIO()
  demo.run_demo(config, workdir, io.StringIO('123456*78\n1234567890123*1\nquit\n'), stdout)
  lines = stdout.getvalue().splitlines()
  assert 'operands up to 12 digits' in lines[0]
  assert lines[1].startswith('> 123456×78 = ') and lines[1].endswith(('right', '9629568'))
  assert lines[-2].endswith('the model takes operands up to 12 digits')


@pytest.mark.slow  # About a minute on two idle cores: it trains, then compiles K = 6 TTM steps.
def test_a_products_model_answers_and_traces_a_longer_problem(products_run, tmp_path, capsys):
  config, workdir = products_run  # Trained on 1×1, where an answer step is one TTM step.
  model, params, _, _ = ckpt.load_for_inference(workdir)
  framing = factory.make_framing(config)
  # Each call of the streaming step is K = 6 TTM steps on a 6-digit problem; predict, trace
  # and eval's batched decoding give the same answer.
  (answer,) = predict.predict_lines(model, params, config, ['123456x78'], 12)
  decoded = evaluate.decode_problems(model, params, framing, np.array([123456]), np.array([78]),
                                     6, 1)
  assert answer == str(decoded['products'][0]) or (answer.startswith('error: ') and
                                                   decoded['products'][0] == -1)
  path = predict.run_trace(config, workdir, '123456x78', out=str(tmp_path))
  assert dump_files.load_sequence(path).info['num_steps'] == 2 * 6 + 1  # A step per answer step.
  assert capsys.readouterr().out.startswith('123456×78 = ' + (answer if answer.isdigit() else ''))
