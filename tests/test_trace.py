"""Tracing: host callbacks from the scanned decode, dump records, wiring into training, and the
viewer's replay on a real dump."""

import logging
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttm_jax import dumps
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import streaming
from ttm_jax import trace
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
  paths = trace.trace_problems(model, params, config, a, b, str(tmp_path))
  encoded = framing.encode(a, b, 2)
  predictions, logits = streaming.greedy_decode(model, params, jnp.asarray(encoded['inputs']),
                                                0)
  m, d, r, n = (config.model.memory_size, config.model.hidden_size, config.model.process_size,
                framing.tokens_per_step)
  expected_shapes = {'inputs': (n,), 'memory_in': (m, d), 'memory_out': (m, d),
                     'read_weights': (r, m + n), 'write_weights': (m, m + n + r),
                     'attention/layer0': (config.model.num_heads, r, r), 'outputs': (r, d),
                     'logits': (13,), 'prediction': ()}
  for i, path in enumerate(paths):
    sequence = dumps.load_sequence(path)
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
      # Raw logits: equal to the decode's wherever no EOS masking applied.
      if step == 0:
        np.testing.assert_allclose(records['logits']['data'], logits[i, 0], rtol=1e-5)
      if step:
        previous = sequence.at_step(step - 1)['memory_out']['data']
        np.testing.assert_array_equal(records['memory_in']['data'], previous)


def test_training_writes_loadable_dumps(run):
  _, workdir, _, _ = run
  index = dumps.load_index(os.path.join(workdir, 'dumps'))
  assert [(e['metadata']['epoch'], e['metadata']['batch']) for e in index] == [
      (1, 10), (1, 10), (2, 20), (2, 20)]  # 2 evaluations x 2 problems.
  for entry in index:
    assert dumps.load_sequence(entry['path']).info['num_steps'] == 3


def test_viewer_replay_reproduces_a_real_dump(run):
  config, workdir, _, _ = run
  # Traced with the best checkpoint, the parameters the viewer's replay loads.
  sequence = dumps.load_sequence(evaluate.run_trace(config, workdir, '47x8'))
  step_fn = replay_lib.checkpoint_step_fn(workdir)
  start = 1
  memory = sequence.at_step(start)['memory_in']['data']
  result = replay_lib.replay(sequence, start, memory, step_fn)
  recorded = [sequence.at_step(s)['logits']['data'] for s in sequence.steps[start:]]
  replayed = [step.logits for step in result.steps]
  np.testing.assert_allclose(np.stack(replayed), np.stack(recorded), atol=1e-5)


def test_truncated_traced_dump_is_rejected(run, tmp_path):
  config, _, model, params = run
  (path,) = trace.trace_problems(model, params, config, np.array([5]), np.array([6]),
                                 str(tmp_path))
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(dumps.DumpError, match=os.path.basename(path)):
    dumps.load_sequence(path)


def test_trace_mode_and_eval_tracing(run, capsys):
  config, workdir, _, _ = run
  path = evaluate.run_trace(config, workdir, '12x3')
  assert dumps.load_sequence(path).info['problem'] == '12×3'
  with pytest.raises(factory.ConfigError, match='malformed problem'):
    evaluate.run_trace(config, workdir, '12y3')


def test_memory_statistics_warn_when_exploding(run):
  config, _, model, params = run
  framing = factory.make_framing(config)
  batch = framing.encode(np.array([3, 4]), np.array([5, 6]), 1)
  quiet = train.memory_statistics(model, params, batch, 1e9)
  assert len(quiet['memory_max_abs_per_step']) == batch['inputs'].shape[1]
  assert quiet['memory_max_abs'] > 0
  warnings = []
  handler = logging.Handler()
  handler.emit = lambda record: warnings.append(record.getMessage())
  train.log.addHandler(handler)
  try:
    train.memory_statistics(model, params, batch, 1e-6)
  finally:
    train.log.removeHandler(handler)
  assert any('exploding' in w for w in warnings)
