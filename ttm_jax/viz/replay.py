"""Replay: re-run the model from one step of a traced sequence with a (possibly edited)
memory, teacher-forced with the recorded step inputs, and compare with the recording.

The model is an injected `step_fn(memory [m, d], step_inputs [n] int, step) ->
(new_memory [m, d], logits [vocab])` (`StepFn`); `checkpoint_step_fn` builds one
from a checkpoint. Nothing here writes to the dump files.
"""

import dataclasses
import os
from typing import Callable, List, Tuple

import numpy as np

from ttm_jax import dumps
from ttm_jax import tokens

# (memory [m, d], step_inputs [n] int, step index) -> (new_memory [m, d], logits [vocab]).
StepFn = Callable[[np.ndarray, np.ndarray, int], Tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class ReplayStep:
  """One replayed step: `memory` `[m, d]` after it, `logits` `[vocab]`, `prediction`
  (argmax), and the recorded `original_prediction` of that step."""
  step: int
  memory: np.ndarray
  logits: np.ndarray
  prediction: int
  original_prediction: int


@dataclasses.dataclass
class ReplayResult:
  """A replay of `sequence_path` from `start_step` on (one `ReplayStep` per step)."""
  sequence_path: str
  start_step: int
  steps: List[ReplayStep]

  def at(self, step: int) -> ReplayStep:
    """The replayed step `step` (KeyError if it was not replayed)."""
    for replayed in self.steps:
      if replayed.step == step:
        return replayed
    raise KeyError(f'step {step} was not replayed (replay starts at {self.start_step})')

  @property
  def changed_steps(self) -> List[int]:
    """Steps whose predicted token differs from the recording."""
    return [s.step for s in self.steps if s.prediction != s.original_prediction]

  def summary(self) -> str:
    """One line: the predicted tokens, original -> replayed, and where they differ."""
    original = tokens.tokens_to_string([s.original_prediction for s in self.steps])
    replayed = tokens.tokens_to_string([s.prediction for s in self.steps])
    changed = ', '.join(map(str, self.changed_steps)) or 'none'
    return (f'steps {self.start_step}-{self.steps[-1].step}: {original} -> {replayed} '
            f'(changed steps: {changed})')


def _recorded_prediction(records: dict, where: str) -> int:
  if 'prediction' in records:
    return int(records['prediction']['data'])
  if 'logits' in records:
    return int(np.argmax(records['logits']['data']))
  raise dumps.DumpError(f'{where}: step has neither prediction nor logits to compare with')


def replay(sequence: dumps.DumpSequence, start_step: int, memory: np.ndarray,
           step_fn: StepFn) -> ReplayResult:
  """Runs `step_fn` from `start_step` to the sequence's last step.

  Args:
    sequence: the recorded sequence (its `inputs` records are fed step by step).
    start_step: first step to run; `memory` is the memory going into it.
    memory: `[m, d]`, e.g. the recorded `memory_in` of `start_step`, possibly edited.
    step_fn: the model step (see module docstring).

  Returns:
    The replayed memory, logits and prediction of every step from `start_step` on.
  """
  steps = [s for s in sequence.steps if s >= start_step]
  if not steps:
    raise ValueError(f'{sequence.path}: no steps at or after step {start_step} to replay')
  memory = np.array(memory, np.float32)
  replayed = []
  for step in steps:
    records = sequence.at_step(step)
    if 'inputs' not in records:
      raise dumps.DumpError(f'{sequence.path}: step {step} has no inputs record to replay')
    memory, logits = step_fn(memory, records['inputs']['data'], step)
    memory, logits = np.asarray(memory, np.float32), np.asarray(logits, np.float32)
    replayed.append(ReplayStep(step, memory, logits, int(np.argmax(logits)),
                               _recorded_prediction(records, str(sequence.path))))
  return ReplayResult(str(sequence.path), start_step, replayed)


def checkpoint_step_fn(path: os.PathLike) -> StepFn:
  """A `step_fn` running `MultiplicationTTM.step` with a workdir's best checkpoint
  (`ttm_jax.checkpoint.load_for_inference`), one example at a time, jitted.

  The logits are the model's raw logits (no EOS masking after a predicted EOS).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from ttm_jax import checkpoint  # pylint: disable=import-outside-toplevel

  model, params, _, _ = checkpoint.load_for_inference(os.fspath(path))

  @jax.jit
  def apply(params, memory, step_inputs, step):
    return model.apply({'params': params}, memory[None], step_inputs[None], step,
                       method=model.step)

  def step_fn(memory: np.ndarray, step_inputs: np.ndarray, step: int):
    new_memory, logits = apply(params, jnp.asarray(memory, jnp.float32),
                               jnp.asarray(step_inputs, jnp.int32), jnp.int32(step))
    return np.asarray(new_memory[0]), np.asarray(logits[0])

  return step_fn
