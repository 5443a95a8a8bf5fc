"""Streaming inference: the memory is the state, so every step costs the same.

The state is a plain pytree (a dict of arrays) for a batch of independent sessions:
`memory [B, m, d]`, `step [B]` (each session's step index), `done [B]` (EOS seen). It can be
saved with orbax, restored and continued. `greedy_decode` runs the multiplication model on
this API, feeding each prediction back as the next step's input; `decode_with_memory_moments`
also returns per-step memory statistics for monitoring, and `decode_with_memory_reset` sets the
memory back to its initial value before chosen steps (a knock-out probe: tools/probe_memory.py).
"""

import functools
from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttm_jax import model as model_lib
from ttm_jax import tokens as tok
from ttm_jax import trace as trace_lib

State = Dict[str, jnp.ndarray]


@functools.partial(jax.jit, static_argnums=(0, 2))
def init_state(model: nn.Module, params, batch_size: int) -> State:
  """A fresh state for `batch_size` sessions."""
  memory = model.apply({'params': params}, batch_size, method=model.initial_memory)
  return {'memory': memory, 'step': jnp.zeros(batch_size, jnp.int32),
          'done': jnp.zeros(batch_size, bool)}


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def step(model: nn.Module, params, state: State, step_tokens: jnp.ndarray,
         answer_start: int = 0, trace: bool = False) -> Tuple[State, jnp.ndarray]:
  """Advances every session by one step.

  Args:
    model: a `MultiplicationTTM`.
    params: its parameters.
    state: from `init_state` or an earlier `step`.
    step_tokens: `[B, n]` int tokens.
    answer_start: steps before this one predict nothing, so an EOS there is not an answer's
      end (`Framing.answer_start`).
    trace: call back to the host (`trace.receive`) with the step's tensors; when False the
      compiled program has no callback.

  Returns:
    `(new_state, logits [B, 13])`; sessions past their first EOS get EOS-masked logits.
  """
  if trace:
    (memory, raw_logits), variables = model.apply(
        {'params': params}, state['memory'], step_tokens, state['step'], method=model.step,
        mutable=['intermediates'])
  else:
    memory, raw_logits = model.apply({'params': params}, state['memory'], step_tokens,
                                     state['step'], method=model.step)
  logits = model_lib.apply_eos_masking(raw_logits, state['done'])
  if trace:
    trace_lib.send(state, step_tokens, memory, raw_logits, jnp.argmax(logits, -1),
                   variables['intermediates'])
  answering = state['step'] >= answer_start
  new_state = {'memory': memory, 'step': state['step'] + 1,
               'done': state['done'] | (answering & model_lib.detect_eos(logits))}
  return new_state, logits


@functools.partial(jax.jit, static_argnums=0)
def reset(model: nn.Module, params, state: State, sessions: jnp.ndarray) -> State:
  """Restarts the sessions where `sessions` `[B]` is True; the others are untouched."""
  fresh = init_state(model, params, sessions.shape[0])
  return jax.tree_util.tree_map(
      lambda new, old: jnp.where(sessions.reshape((-1,) + (1,) * (old.ndim - 1)), new, old),
      fresh, state)


def _decode(model: nn.Module, params, inputs: jnp.ndarray, answer_start: int, trace: bool,
            reset_before: Optional[jnp.ndarray] = None):
  """`greedy_decode`, plus the memory moments `[B, S, 3]` (see `decode_with_memory_moments`);
  with `reset_before [B, S]`, see `decode_with_memory_reset`."""
  def body(carry, xs):
    state, previous = carry
    t, step_tokens, reset = xs
    if reset is not None:  # Shape: [B].
      state = {**state, 'memory': jnp.where(reset[:, None, None], initial, state['memory'])}
    fed_back = step_tokens.at[:, -1].set(previous)
    state, logits = step(model, params, state,
                         jnp.where(t > answer_start, fed_back, step_tokens), answer_start,
                         trace)
    prediction = jnp.argmax(logits, axis=-1).astype(step_tokens.dtype)
    memory = state['memory']  # Shape: [B, m, d]; m is 0 in the memory-less ablation.
    size = max(memory.shape[1] * memory.shape[2], 1)
    moments = jnp.stack([memory.sum((1, 2)) / size, jnp.square(memory).sum((1, 2)) / size,
                         jnp.abs(memory).max((1, 2), initial=0.0)], -1)  # Shape: [B, 3].
    return (state, prediction), (prediction, logits, moments)

  batch, steps, _ = inputs.shape
  state = init_state(model, params, batch)
  initial = state['memory']  # Shape: [B, m, d].
  start = jnp.full((batch,), tok.PAD_TOKEN, inputs.dtype)
  resets = None if reset_before is None else jnp.swapaxes(reset_before, 0, 1)
  _, outputs = jax.lax.scan(
      body, (state, start), (jnp.arange(steps), jnp.swapaxes(inputs, 0, 1), resets))
  return tuple(jnp.swapaxes(x, 0, 1) for x in outputs)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def greedy_decode(model: nn.Module, params, inputs: jnp.ndarray, answer_start: int,
                  trace: bool = False) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Decodes without teacher forcing.

  Args:
    model: a `MultiplicationTTM`.
    params: its parameters.
    inputs: `[B, S, n]` step tokens; only the problem part is read: from step
      `answer_start + 1` on, the last slot is replaced by the previous step's prediction.
    answer_start: the first step that predicts an answer token (`Framing.answer_start`).
    trace: trace every step (see `step`).

  Returns:
    `(predictions [B, S], logits [B, S, 13])`.
  """
  return _decode(model, params, inputs, answer_start, trace)[:2]


@functools.partial(jax.jit, static_argnums=(0, 3))
def decode_with_memory_moments(model: nn.Module, params, inputs: jnp.ndarray,
                               answer_start: int
                               ) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """`greedy_decode` that also returns, computed on device, the memory moments
  `[B, S, 3]`: mean, mean square and max |x| of each session's memory after each step."""
  return _decode(model, params, inputs, answer_start, False)


@functools.partial(jax.jit, static_argnums=(0, 3))
def decode_with_memory_reset(model: nn.Module, params, inputs: jnp.ndarray, answer_start: int,
                             reset_before: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """`greedy_decode` with the memory set back to the model's initial memory just before the
  steps where `reset_before` holds.

  Steps before a reset run as usual; from a reset on, decoding goes on greedily from the
  initial memory, feeding back its own predictions. Only the memory is reset: the step index
  and the EOS-seen flag carry on (a session past its EOS stays done). The mask is traced, so
  every mask of one shape runs the same compiled program.

  Args:
    model: a `MultiplicationTTM`.
    params: its parameters.
    inputs: `[B, S, n]` step tokens, as for `greedy_decode`.
    answer_start: the first step that predicts an answer token (`Framing.answer_start`).
    reset_before: `[B, S]` bool: reset session b's memory just before its step t.

  Returns:
    `(predictions [B, S], logits [B, S, 13])`.
  """
  return _decode(model, params, inputs, answer_start, False, reset_before)[:2]
