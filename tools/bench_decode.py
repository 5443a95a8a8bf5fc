"""Per-step decoding latency: the TTM's streaming step vs a causal Transformer with a KV cache.

  python tools/bench_decode.py [--max-steps 16384] [--reps 20] [--json out.json] [--plot out.png]

Both jitted, batch 1, paper sizes (d=128, 4 layers, 4 heads, MLP 512; TTM m=96, r=16, one new
token per step). The TTM really runs every step from 1 to the largest count, and the latency
at step t is the median time of the steps just before t: its state is the memory alone, so t
cannot matter. The Transformer's cache is sized to the step count t and holds t entries (random
keys and values: its cost does not depend on their values), and the latency is the median time
of decoding the token at position t-1, which attends over all t. Prints a table and the
crossover: the first step count at which the Transformer's step is slower than the TTM's.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from ttm_jax import TokenTuringMachineEncoder
from ttm_jax import files
from ttm_jax.baseline import CausalTransformer

D, LAYERS, HEADS, MLP = 128, 4, 4, 512


def ttm_latencies(counts, reps):
  """Median seconds per TTM step near each step count, stepping from 1 to max(counts)."""
  encoder = TokenTuringMachineEncoder(process_size=16, memory_size=96, num_layers=LAYERS,
                                      num_heads=HEADS, mlp_dim=MLP,
                                      use_positional_embedding=True, memory_init='learned')
  params = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 1, D)))
  step = jax.jit(lambda memory, x: encoder.apply(params, memory, x, method='step'))
  memory = encoder.apply(params, 1, D, method='initial_memory')
  tokens = jax.random.normal(jax.random.PRNGKey(1), (64, 1, 1, D))
  jax.block_until_ready(step(memory, tokens[0]))
  results, times = {}, []
  for t in range(1, max(counts) + 1):
    start = time.perf_counter()
    memory, out = step(memory, tokens[t % 64])
    out.block_until_ready()
    times.append(time.perf_counter() - start)
    if t in counts:
      results[t] = float(np.median(times[-reps:]))
  return results


def transformer_latencies(counts, reps):
  """Median seconds to decode position t-1 with a cache of t entries, per step count t."""
  results = {}
  for t in counts:
    model = CausalTransformer(hidden_size=D, num_layers=LAYERS, num_heads=HEADS, mlp_dim=MLP,
                              max_len=t)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
    cache = model.apply(params, 1, t, method=model.init_cache)
    cache = jax.tree_util.tree_map(
        lambda x: jax.random.normal(jax.random.PRNGKey(2), x.shape), cache)
    step = jax.jit(lambda c, tok, pos: model.apply(params, c, tok, pos,
                                                   method=model.decode_step)[1])
    token = jnp.zeros((1,), jnp.int32)
    step(cache, token, t - 1).block_until_ready()
    times = []
    for _ in range(reps):
      start = time.perf_counter()
      step(cache, token, t - 1).block_until_ready()
      times.append(time.perf_counter() - start)
    results[t] = float(np.median(times))
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--min-steps', type=int, default=64)
  parser.add_argument('--max-steps', type=int, default=16384)
  parser.add_argument('--reps', type=int, default=20)
  parser.add_argument('--json', default=None, help='write the results here')
  parser.add_argument('--plot', default=None, help='write a PNG plot here')
  args = parser.parse_args()
  try:
    files.check_outputs(args.json, args.plot)
  except OSError as e:  # A missing folder that cannot be made, a read-only one.
    raise SystemExit(f'error: {files.os_error_message(e)}') from None
  counts = []
  t = args.min_steps
  while t <= args.max_steps:
    counts.append(t)
    t *= 2
  ttm = ttm_latencies(counts, args.reps)
  transformer = transformer_latencies(counts, args.reps)
  device = jax.devices()[0].device_kind
  print(f'per-step decode latency, batch 1, {device}')
  print(f'{"steps":>7} {"TTM (ms)":>10} {"Transformer+KV (ms)":>20}')
  for t in counts:
    print(f'{t:>7} {1000 * ttm[t]:>10.3f} {1000 * transformer[t]:>20.3f}')
  crossover = next((t for t in counts if transformer[t] > ttm[t]), None)
  drift = ttm[counts[-1]] / ttm[counts[0]] - 1
  print(f'TTM step at {counts[-1]} vs {counts[0]}: {100 * drift:+.1f}%')
  print(f'crossover: the Transformer step is slower from {crossover} steps on'
        if crossover else 'crossover: none in this range')
  result = {'device': device, 'steps': counts, 'ttm_seconds': [ttm[t] for t in counts],
            'transformer_seconds': [transformer[t] for t in counts], 'crossover': crossover,
            'ttm_drift': drift}
  if args.json:
    files.write_json(args.json, result)
  if args.plot:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(counts, [1000 * ttm[t] for t in counts], 'o-', label='TTM streaming step')
    ax.loglog(counts, [1000 * transformer[t] for t in counts], 's-',
              label='Transformer, KV cache')
    if crossover:
      ax.axvline(crossover, color='gray', linestyle=':', label=f'crossover {crossover}')
    ax.set(xlabel='step count', ylabel='ms per step', title=f'decode latency ({device})')
    ax.legend()
    fig.tight_layout()
    files.save_figure(fig, args.plot, dpi=90)


if __name__ == '__main__':
  main()
