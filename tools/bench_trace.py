"""Overhead of tracing: greedy decoding of 100 problems with trace off vs on.

  python tools/bench_trace.py [--workdir W] [--config configs/mult.py-args] [--size 2x2]

Uses the workdir's best checkpoint and config, or a freshly initialized default model.
Prints the median of 3 runs (after a warm-up) for: untraced decode; traced decode keeping the
records in memory; traced decode writing one dump file per problem.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import dumps
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import profiling
from ttm_jax import streaming
from ttm_jax import trace


def median_ms(fn, reps=3):
  return 1000 * profiling.time_call(fn, reps)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=None)
  parser.add_argument('--size', default='2x2')
  parser.add_argument('--count', type=int, default=100)
  args = parser.parse_args()
  if args.workdir:
    model, params, config, _ = ckpt.load_for_inference(args.workdir)
  else:
    config = mult.get_config()
    model = factory.make_model(config)
    tokens = jnp.zeros((1, 1, factory.make_framing(config).tokens_per_step), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), tokens)['params']
  framing = factory.make_framing(config)
  da, db = (int(d) for d in args.size.split('x'))
  rng = np.random.default_rng(0)
  a, b = data.sample_operands(rng, args.count, *data.digit_range(da), *data.digit_range(db))
  digits = max(da, db)
  inputs = jnp.asarray(framing.encode(a, b, digits)['inputs'])
  start = framing.answer_start(digits)
  recorder = dumps.Recorder()

  def untraced():
    streaming.greedy_decode(model, params, inputs, start)[0].block_until_ready()

  def traced_in_memory():
    with trace.capture(trace.Collector(recorder)):
      streaming.greedy_decode(model, params, inputs, start, True)[0].block_until_ready()
    recorder.clear()

  with tempfile.TemporaryDirectory() as dump_dir:
    def traced_to_files():
      evaluate.trace_problems(model, params, factory.make_framing(config), a, b, dump_dir)
    rows = [('untraced decode', median_ms(untraced)),
            ('traced, records in memory', median_ms(traced_in_memory)),
            ('traced, one dump file per problem', median_ms(traced_to_files))]
  print(f'{args.count} problems of {args.size}, {jax.devices()[0].platform}:')
  for name, ms in rows:
    print(f'  {name:<36} {ms:8.0f} ms  ({ms / rows[0][1]:.1f}x)')


if __name__ == '__main__':
  main()
