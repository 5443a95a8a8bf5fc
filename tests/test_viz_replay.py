"""Tests for replaying a traced sequence from an edited memory (no OpenGL needed). That an
unedited replay reproduces a real model's recording: test_trace.py."""

import hashlib

import numpy as np
import pytest

from tests import synthetic
from ttm_jax import dump_files
from ttm_jax.viz import replay as replay_lib


def toy_step(memory, step_inputs, step):
  """A stand-in model: memory decays and takes in the tokens; logits read slot 0."""
  pattern = np.zeros(memory.shape[1], np.float32)
  pattern[:len(step_inputs)] = np.asarray(step_inputs) / 12
  new_memory = (0.5 * memory + 0.1 * pattern + 0.01 * step).astype(np.float32)
  return new_memory, 10 * new_memory[0, :13]


@pytest.fixture(name='sequence')
def fixture_sequence(tmp_path):
  records, info = synthetic.sequence('123×45', d=16, m=6, r=4, heads=1, layers=1,
                                     step_fn=toy_step)
  return dump_files.load_sequence(dump_files.write_sequence(tmp_path, records, info))


def test_edited_memory_changes_outputs_and_leaves_the_file_alone(sequence):
  digest = hashlib.sha256(sequence.path.read_bytes()).hexdigest()
  memory = np.array(sequence.at_step(1)['memory_in']['data'])
  memory[0, 7] = 50.0
  result = replay_lib.replay(sequence, 1, memory, toy_step)
  assert [s.prediction for s in result.steps] == [7, 7, 7, 7]
  assert result.changed_steps == [s.step for s in result.steps
                                  if s.original_prediction != 7]
  assert result.changed_steps
  assert not np.allclose(result.at(2).memory, sequence.at_step(2)['memory_out']['data'])
  assert '-> 7777' in result.summary()
  assert hashlib.sha256(sequence.path.read_bytes()).hexdigest() == digest
  with pytest.raises(KeyError, match='step 0 was not replayed'):
    result.at(0)


def test_replay_past_the_end_is_an_error(sequence):
  with pytest.raises(ValueError, match='no steps at or after step 9'):
    replay_lib.replay(sequence, 9, np.zeros((6, 16)), toy_step)
