"""Compile time of the TTM encoder against the number of steps S: flat under `nn.scan`.

  python tools/compile_time.py [--steps 8,64] [--batch 8]

Paper sizes (d=128, m=96, r=16, 4 layers, 4 heads, MLP 512, n=11 tokens per step). Times
`jax.jit(apply).lower(...).compile()` of the forward pass and of its gradient, once per S.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp

from ttm_jax import TokenTuringMachineEncoder


def compile_seconds(fn, *args) -> float:
  start = time.perf_counter()
  jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', default='8,64', help='comma-separated step counts')
  parser.add_argument('--batch', type=int, default=8)
  args = parser.parse_args()
  encoder = TokenTuringMachineEncoder(process_size=16, memory_size=96, num_layers=4,
                                      num_heads=4, mlp_dim=512, use_positional_embedding=True,
                                      memory_init='learned')
  params = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 11, 128)))
  print(f'{"S":>5} {"forward (s)":>12} {"gradient (s)":>13}')
  for steps in (int(s) for s in args.steps.split(',')):
    x = jnp.zeros((args.batch, steps, 11, 128))
    forward = compile_seconds(encoder.apply, params, x)
    gradient = compile_seconds(jax.grad(lambda p, x: encoder.apply(p, x).sum()), params, x)
    print(f'{steps:>5} {forward:>12.2f} {gradient:>13.2f}')


if __name__ == '__main__':
  main()
