"""Made-up trace dumps for the tests: records of the shapes a traced run writes, without a model.

`sequence` stands in for a traced run wherever a test needs a dump (the dump format,
the viewer's mappers, scene, camera, picking, rendering, dashboard and replay).
"""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ttm_jax import dumps
from ttm_jax import tokens
from ttm_jax.viz import replay


def sequence(problem: str = '123×45', *, d: int = 128, m: int = 96, r: int = 16, n: int = 11,
             heads: int = 4, layers: int = 4, seed: int = 0, run: str = 'synthetic',
             epoch: int = 0, batch: int = 0, example: int = 0,
             step_fn: Optional[replay.StepFn] = None
             ) -> Tuple[List[dumps.Record], Dict[str, Any]]:
  """Realistic-shape records of one problem-per-step sequence, with made-up values.

  Step t sees `problem tokens + <EOS> + answer token t-1` padded to `n` and emits answer
  token t (digits most significant first, then <EOS>). Memory starts as noisy waves that
  drift along the embedding axis, or evolves by `step_fn` when given (then `memory_out`,
  `logits` and `prediction` are exactly what `step_fn` computes, so replays can be checked
  against it).

  Returns:
    `(records, info)` ready for `dump_files.write_sequence`: per step `inputs [n]`,
    `memory_in [m, d]`, `read_weights [r, m+n]`, `attention/layer{l} [heads, r, r]`,
    `outputs [r, d]`, `write_weights [m, m+n+r]`, `memory_out [m, d]`, `logits [13]`,
    `prediction []`.
  """
  rng = np.random.default_rng(seed)
  a, b = tokens.parse_problem(problem)
  problem_tokens = tokens.problem_to_tokens(a, b)
  answer = tokens.number_to_tokens(a * b) + [tokens.EOS_TOKEN]
  recorder = dumps.Recorder(run=run, epoch=epoch, batch=batch)

  def add(name, data, module, step, kind='tensor'):
    recorder.add(name, data, kind, step=step, example=example, module=module)

  def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

  # Smooth waves plus noise, drifting along the embedding axis step by step.
  slots, dims = np.meshgrid(np.linspace(0, 1, m), np.linspace(0, 1, d), indexing='ij')
  memory = (np.sin(2 * np.pi * (rng.uniform(1, 3) * slots + rng.uniform(1, 4) * dims))
            + rng.normal(0.0, 0.3, (m, d))).astype(np.float32)
  predicted = []
  for step, target_token in enumerate(answer):
    previous = answer[step - 1] if step else tokens.PAD_TOKEN
    inputs = np.array(tokens.pad_sequence(problem_tokens + [previous], n), np.int32)
    add('inputs', inputs, 'input', step, 'tokens')
    add('memory_in', memory, 'memory', step)
    add('read_weights', softmax(rng.normal(0, 2, (r, m + n))), 'read', step)
    for layer in range(layers):
      add(f'attention/layer{layer}', softmax(rng.normal(0, 2, (heads, r, r))), 'process', step)
    add('outputs', rng.normal(0, 1, (r, d)).astype(np.float32), 'process', step)
    add('write_weights', softmax(rng.normal(0, 2, (m, m + n + r))), 'write', step)
    if step_fn is None:
      memory = np.tanh(1.2 * np.roll(memory, 4, axis=1) + 0.3 * rng.normal(0, 1, (m, d)))
      logits = rng.normal(0, 1, 13)
      logits[target_token if rng.random() < 0.9 else rng.integers(13)] += 4.0
    else:
      memory, logits = step_fn(memory, inputs, step)
    memory = np.asarray(memory, np.float32)
    logits = np.asarray(logits, np.float32)
    add('memory_out', memory, 'memory', step)
    add('logits', logits, 'head', step)
    add('prediction', np.int32(np.argmax(logits)), 'head', step, 'scalar')
    predicted.append(int(np.argmax(logits)))

  key = recorder.sequences()[0]
  if tokens.EOS_TOKEN in predicted:
    predicted = predicted[:predicted.index(tokens.EOS_TOKEN)]
  prediction = tokens.tokens_to_string(predicted)
  info = {'problem': f'{a}×{b}', 'target': str(a * b), 'prediction': prediction,
          'correct': prediction == str(a * b), 'num_steps': len(answer),
          'config': {'d': d, 'm': m, 'r': r, 'n': n, 'num_heads': heads,
                     'num_layers': layers, 'memory_mode': 'TL', 'vocab_size': 13},
          'checkpoint': None}
  return recorder.records(key), info
