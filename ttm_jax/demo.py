"""`--mode=demo`: type a problem, watch the TTM answer it one streaming step at a time.

For each problem it prints the answer and whether it is right, the time per step and in
total, and how the memory changed: sparklines of the memory's norm and of the size of each
step's change. Bad input (a blank line included, as in `--mode=predict`) gets one `error:` line
and the prompt again; `quit` or Ctrl-D leaves.
"""

import sys
import time
from typing import List, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import streaming
from ttm_jax import tokens as tok

BLOCKS = '▁▂▃▄▅▆▇█'


def sparkline(values: List[float]) -> str:
  """One block character per value, scaled from the smallest to the largest."""
  values = np.asarray(values, float)
  if not len(values):
    return ''
  span = values.max() - values.min()
  levels = np.zeros(len(values), int) if span == 0 else np.round(
      (values - values.min()) / span * (len(BLOCKS) - 1)).astype(int)
  return ''.join(BLOCKS[i] for i in levels)


class Demo:
  """A loaded model answering problems through the jitted streaming step."""

  def __init__(self, model, params, config: ml_collections.ConfigDict, trained_digits: int = 0):
    """`trained_digits`: the longest operand the model was trained on
    (`Framing.encoding_digits`)."""
    self.model, self.params = model, params
    self.framing = factory.make_framing(config)
    self.trained_digits = trained_digits
    self.answer(1, 1)  # Compiles the step once, before the first prompt.

  def answer(self, a: int, b: int) -> dict:
    """Decodes `a×b` step by step; returns the answer, timings and memory trajectory."""
    framing = self.framing
    digits = framing.encoding_digits(data.longest_operand(a, b), self.trained_digits)
    inputs = framing.encode(np.array([a]), np.array([b]), digits)['inputs']
    start = framing.answer_start(digits)
    state = streaming.init_state(self.model, self.params, 1)
    memory = state['memory']
    previous, predictions, seconds, norms, changes = tok.PAD_TOKEN, [], [], [], []
    for t in range(inputs.shape[1]):
      tokens = inputs[:, t].copy()
      if t > start:
        tokens[:, -1] = previous
      begin = time.perf_counter()
      state, logits = streaming.step(self.model, self.params, state, jnp.asarray(tokens),
                                     start)
      previous = int(jnp.argmax(logits[0]))
      seconds.append(time.perf_counter() - begin)
      predictions.append(previous)
      norms.append(float(jnp.linalg.norm(state['memory'])))
      changes.append(float(jnp.linalg.norm(state['memory'] - memory)))
      memory = state['memory']
      if t >= start and bool(state['done'][0]):
        break
    return {'answer': framing.answer_to_number(predictions[start:]), 'seconds': seconds,
            'norms': norms, 'changes': changes}

  def report(self, a: int, b: int) -> List[str]:
    """The lines printed for one problem."""
    result = self.answer(a, b)
    answer, seconds = result['answer'], result['seconds']
    verdict = 'right' if answer == a * b else f'wrong, {a}×{b} = {a * b}'
    shown = '(no number)' if answer is None else answer
    return [f'{a}×{b} = {shown}   {verdict}',
            f'  {len(seconds)} steps, {1000 * np.mean(seconds):.2f} ms/step, '
            f'{1000 * np.sum(seconds):.1f} ms in total',
            f'  memory |M|   {sparkline(result["norms"])}  '
            f'{min(result["norms"]):.2f} .. {max(result["norms"]):.2f}',
            f'  change |ΔM|  {sparkline(result["changes"])}  '
            f'{min(result["changes"]):.2f} .. {max(result["changes"]):.2f}']


def run_demo(config: ml_collections.ConfigDict, workdir: str, stdin: TextIO = sys.stdin,
             stdout: TextIO = sys.stdout) -> int:
  """The interactive loop; returns the exit code (0)."""
  params, meta = ckpt.load_params(workdir, config)
  max_digits = evaluate.answerable_digits(workdir, meta, config)
  demo = Demo(factory.make_model(config), params, config,
              evaluate.checkpoint_digits(workdir, meta, config))
  stdout.write(f'TTM multiplication demo ({jax.devices()[0].platform}): type a problem like '
               f'123×45 or 123*45 (operands up to {max_digits} digits), or quit.\n')
  while True:
    stdout.write('> ')
    stdout.flush()
    line = stdin.readline()
    if not line or line.strip().lower() in ('quit', 'exit', 'q'):
      stdout.write('\n' if not line else '')
      return 0
    try:
      a, b = tok.parse_problem(line, max_digits, evaluate.BOUNDS[config.task.positions])
    except ValueError as e:
      stdout.write(f'error: {e}\n')
      continue
    stdout.write('\n'.join(demo.report(a, b)) + '\n')
