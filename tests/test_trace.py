"""Tracing: host callbacks from the scanned decode, dump records, wiring into training, and the
viewer's replay on a real dump."""

import json
import logging
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import cli
from ttm_jax import dump_files
from ttm_jax import dumps
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import predict
from ttm_jax import model as model_lib
from ttm_jax import streaming
from ttm_jax import train
from ttm_jax.viz import replay as replay_lib


@pytest.fixture(scope='module')
def run(traced_run):
  """The shared traced runlocal run, with its model and best parameters."""
  config, workdir = traced_run
  model = factory.make_model(config)
  params = train.ckpt.load_params(workdir, config)[0]
  return config, workdir, model, params


def _callback_targets(model, params, inputs, traced):
  text = jax.jit(streaming.greedy_decode, static_argnums=(0, 3, 4)).lower(
      model, params, inputs, 0, traced).as_text()
  return set(re.findall(r'\w*callback\w*', text))


def test_untraced_program_has_no_host_callback(run):
  config, _, model, params = run
  inputs = jnp.zeros((2, 5, factory.make_framing(config).tokens_per_step), jnp.int32)
  assert not _callback_targets(model, params, inputs, False)
  assert _callback_targets(model, params, inputs, True)


def test_traced_records_match_the_untraced_run(run, tmp_path):
  config, _, model, params = run
  framing = factory.make_framing(config)
  a, b = np.array([12, 7, 3]), np.array([34, 8, 9])
  paths = evaluate.trace_problems(model, params, factory.make_framing(config), a, b, str(tmp_path))
  encoded = framing.encode(a, b, 2)
  start = framing.answer_start(2)
  predictions, logits = streaming.greedy_decode(model, params, jnp.asarray(encoded['inputs']),
                                                start)
  answering = np.arange(logits.shape[1]) >= start
  masked = model_lib.after_first_eos(model_lib.detect_eos(logits) & answering)  # [B, S].
  m, d, r, n = (config.model.memory_size, config.model.hidden_size, config.model.process_size,
                framing.tokens_per_step)
  expected_shapes = {'inputs': (n,), 'memory_in': (m, d), 'memory_out': (m, d),
                     'read_weights': (r, m + n), 'write_weights': (m, m + n + r),
                     'attention/layer0': (config.model.num_heads, r, r), 'outputs': (r, d),
                     'logits': (13,), 'prediction': ()}
  for i, path in enumerate(paths):
    sequence = dump_files.load_sequence(path)
    assert sequence.info['problem'] == f'{a[i]}×{b[i]}'
    assert sequence.steps == list(range(encoded['inputs'].shape[1]))
    for step in sequence.steps:
      records = sequence.at_step(step)
      assert {k: v['shape'] for k, v in records.items()} == expected_shapes
      for record in records.values():
        assert set(record) == {'name', 'type', 'shape', 'data', 'metadata'}
        assert set(record['metadata']) >= {'run', 'epoch', 'batch', 'step', 'example', 'module'}
        assert record['metadata']['example'] == i and record['metadata']['step'] == step
      assert int(records['prediction']['data']) == int(predictions[i, step])
      np.testing.assert_allclose(records['read_weights']['data'].sum(-1), 1.0, rtol=1e-5)
      # Raw logits: the decode's, before its EOS masking.
      np.testing.assert_allclose(
          model_lib.apply_eos_masking(records['logits']['data'], masked[i, step]),
          logits[i, step], rtol=1e-5, atol=1e-5)
      if step:
        previous = sequence.at_step(step - 1)['memory_out']['data']
        np.testing.assert_array_equal(records['memory_in']['data'], previous)


def test_training_writes_loadable_dumps(run):
  _, workdir, _, _ = run
  index = dump_files.load_index(os.path.join(workdir, 'dumps'))
  assert [(e['metadata']['epoch'], e['metadata']['batch']) for e in index] == [
      (1, 10), (1, 10), (2, 20), (2, 20)]  # 2 evaluations x 2 problems.
  for entry in index:
    assert dump_files.load_sequence(entry['path']).info['num_steps'] == 3


def _copy(workdir, tmp_path):
  """A private copy of the shared run's workdir, for tests that add dumps to it."""
  return shutil.copytree(workdir, tmp_path / 'workdir')


def test_viewer_replay_reproduces_a_real_dump(run, tmp_path):
  config, workdir, _, _ = run
  workdir = _copy(workdir, tmp_path)
  # Traced with the best checkpoint, the parameters the viewer's replay loads.
  sequence = dump_files.load_sequence(predict.run_trace(config, workdir, '4x8'))
  step_fn = replay_lib.checkpoint_step_fn(workdir)
  start = 1
  memory = sequence.at_step(start)['memory_in']['data']
  result = replay_lib.replay(sequence, start, memory, step_fn)
  recorded = [sequence.at_step(s)['logits']['data'] for s in sequence.steps[start:]]
  replayed = [step.logits for step in result.steps]
  np.testing.assert_allclose(np.stack(replayed), np.stack(recorded), atol=1e-5)


def test_truncated_traced_dump_is_rejected(run, tmp_path):
  config, _, model, params = run
  (path,) = evaluate.trace_problems(model, params, factory.make_framing(config), np.array([5]), np.array([6]),
                                 str(tmp_path))
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(dumps.DumpError, match=os.path.basename(path)):
    dump_files.load_sequence(path)


def test_trace_mode_writes_one_dump(run, tmp_path, capsys):
  config, workdir, _, _ = run
  workdir = _copy(workdir, tmp_path)
  assert cli.run('trace', config, workdir, '2x3') == 0
  answer, path, view = capsys.readouterr().out.splitlines()
  info = dump_files.load_sequence(path).info
  assert info['problem'] == '2×3'
  assert answer == f'2×3 = {info["prediction"]} (' + (
      'correct)' if info['correct'] else 'wrong: 2×3 = 6)')
  # A training workdir keeps the trace, in a folder of its own: the viewer shows it alone.
  folder = os.path.join(workdir, 'trace-2x3')
  assert view == f'(view it: python tools/viewer.py {folder})'
  assert [e['path'] for e in dump_files.load_index(folder)] == [path]
  for bad, code, why in (('12y3', 1, "malformed problem '12y3'"),
                         ('12x3', 1, "problem '12x3': an operand has 2 digits; the model was "
                          'trained on operands up to 1 digit'),  # 20 steps of stage 1 (1×1).
                         (None, 2, 'required with --mode=trace')):
    assert cli.run('trace', config, workdir, bad) == code
    error = capsys.readouterr().err
    assert error.startswith(f'error: --problem: {why}') and error.count('\n') == 1


def _warnings_of(fn):
  warnings = []
  handler = logging.Handler()
  handler.emit = lambda record: warnings.append(record.getMessage())
  train.log.addHandler(handler)
  try:
    fn()
  finally:
    train.log.removeHandler(handler)
  return warnings


def test_memory_statistics_of_the_decode(run):
  config, _, model, params = run
  framing = factory.make_framing(config)
  a, b = np.array([3, 4, 7]), np.array([5, 6, 9])
  decoded = evaluate.decode_problems(model, params, framing, a, b, 1, batch_size=2)
  stats = evaluate.memory_statistics(decoded['memory_moments'], 1e9)
  # The same numbers from the decode's memory, stepped in Python.
  state = streaming.init_state(model, params, 3)
  inputs = framing.encode(a, b, 1)['inputs']
  for t in range(inputs.shape[1]):
    tokens = inputs[:, t].copy()
    if t > framing.answer_start(1):
      tokens[:, -1] = decoded['predictions'][:, t - 1]
    state, _ = streaming.step(model, params, state, tokens, framing.answer_start(1))
    memory = np.asarray(state['memory'])
    np.testing.assert_allclose(
        [stats['memory_mean_per_step'][t], stats['memory_std_per_step'][t],
         stats['memory_max_abs_per_step'][t]],
        [memory.mean(), memory.std(), np.abs(memory).max()], rtol=1e-4, atol=1e-6)
  assert stats['memory_max_abs'] == max(stats['memory_max_abs_per_step']) > 0
  assert not _warnings_of(lambda: evaluate.memory_statistics(decoded['memory_moments'], 1e9))
  assert any('exploding' in w for w in _warnings_of(
      lambda: evaluate.memory_statistics(decoded['memory_moments'], 1e-6)))
  broken = decoded['memory_moments'].copy()
  broken[0, -1, 2] = np.nan
  assert any('non-finite' in w for w in _warnings_of(
      lambda: evaluate.memory_statistics(broken, 1e9)))


def test_training_metrics_hold_memory_statistics(run):
  _, workdir, _, _ = run
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    evals = [row for row in map(json.loads, f) if row['split'] == 'eval']
  assert len(evals) == 2
  for row in evals:
    assert len(row['memory_std_per_step']) == 3 and row['memory_max_abs'] > 0
