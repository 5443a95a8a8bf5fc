"""Tracing: what happens inside the jitted, scanned TTM, sent to the host step by step.

`streaming.step(..., trace=True)` calls `send` inside the compiled step; `send` issues an
ordered `jax.debug.callback` to `receive`, which hands the step's tensors to the active
`Collector` (see `capture`), which turns them into dump records. `evaluate.trace_problems`
decodes problems with tracing on and writes the dump files the viewer reads. This module sits
below the model code: it imports nothing of ttm_jax but the dump format.
"""

import contextlib
import re
from typing import Any, Dict, List

import flax
import jax
import jax.numpy as jnp
import numpy as np

from ttm_jax import dumps

# Record name -> (record type, module) for the tensors `send` passes.
KINDS = {'inputs': ('tokens', 'input'), 'memory_in': ('tensor', 'memory'),
         'memory_out': ('tensor', 'memory'), 'read_weights': ('tensor', 'read'),
         'write_weights': ('tensor', 'write'), 'write_select': ('tensor', 'write'),
         'erase_weights': ('tensor', 'write'), 'add_weights': ('tensor', 'write'),
         'outputs': ('tensor', 'process'), 'logits': ('tensor', 'head'),
         'prediction': ('scalar', 'head')}
_ERASE_ADD = {'select': 'write_select', 'erase': 'erase_weights', 'add': 'add_weights'}


def name_intermediates(intermediates) -> Dict[str, jnp.ndarray]:
  """Sown intermediates of `MultiplicationTTM.step` -> named `[B, ...]` tensors:
  `read_weights [B, r, m+n]`, `write_weights [B, m, m+n+r]` (or `write_select`,
  `erase_weights`, `add_weights`), `attention/layer{l} [B, heads, r, r]`, `outputs [B, r, d]`.
  Learned-query (MHA) summarization weights are averaged over heads. With product steps (K
  TTM steps per step) they are those of the last TTM step (with `skip_unpaired` it may be one
  that kept the memory; `outputs` are then the last one's that ran, which give the answer)."""
  named = {}
  for path, values in flax.traverse_util.flatten_dict(intermediates).items():
    value = values[-1]
    leaf = path[-1]
    if leaf in _ERASE_ADD:
      named[_ERASE_ADD[leaf]] = value
    elif path == ('outputs',):
      named['outputs'] = value
    elif 'process' in path and leaf == 'attention_weights':
      layer = int(re.search(r'\d+$', path[-3]).group())
      named[f'attention/layer{layer}'] = value
    elif leaf in ('weights', 'attention_weights'):
      weights = value.mean(axis=1) if leaf == 'attention_weights' else value
      named['write_weights' if 'write' in path else 'read_weights'] = weights
  return named


class Collector:
  """Turns callback payloads into dump records, one sequence per example of the batch."""

  def __init__(self, recorder: dumps.Recorder, first_example: int = 0):
    self.recorder = recorder
    self.first_example = first_example

  def add(self, payload: Dict[str, Any]):
    # The callback hands over jax arrays: one host copy each, then numpy slicing (indexing a
    # jax array per example would dispatch a device op per record).
    payload = {name: np.asarray(value) for name, value in payload.items()}
    for i, step in enumerate(payload.pop('step').tolist()):
      for name, value in payload.items():
        kind, module = KINDS.get(name, ('tensor', 'process'))
        self.recorder.add(name, value[i], kind, step=step, example=self.first_example + i,
                          module=module)


_collectors: List[Collector] = []


def receive(payload):
  """The host side of the callback: passes the payload to the innermost active collector."""
  if _collectors:
    _collectors[-1].add(payload)


def send(state, step_tokens, memory, raw_logits, prediction, intermediates):
  """Device side: one ordered host callback with this step's tensors (all `[B, ...]`)."""
  payload = {'step': state['step'], 'inputs': step_tokens, 'memory_in': state['memory'],
             'memory_out': memory, 'logits': raw_logits, 'prediction': prediction,
             **name_intermediates(intermediates)}
  jax.debug.callback(receive, payload, ordered=True)


@contextlib.contextmanager
def capture(collector: Collector):
  """Routes traced steps to `collector` while the block runs (waits for every callback)."""
  _collectors.append(collector)
  try:
    yield collector
    jax.effects_barrier()
  finally:
    _collectors.remove(collector)
