"""The parameter average against the trained parameters of one saved step, on the same held-out
problems: the paired measure of what `--config.optim.ema_decay` buys.

  python tools/ema_paired.py WORKDIR [--step=N] [--sizes=1-99,2x2] [--count=2000]

WORKDIR is a training workdir of a run with `optim.ema_decay > 0`; its step (default: the
latest) holds the average as `params` and the trained parameters in the `train` item. Prints one
line per parameter set: exact match per row of `--sizes` (as `--mode=eval` scores them, with
`config.eval.seed`).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import optim
from ttm_jax import train


def paired(workdir: str, step: int, sizes: str, count: int):
  """`(step, {'trained': rows, 'average': rows})`, rows as `evaluate.evaluate_sizes`'."""
  config = ckpt.read_config(workdir)
  if not config.optim.get('ema_decay'):
    raise ckpt.CheckpointError(f'{workdir} was trained without a parameter average '
                               '(optim.ema_decay is 0)')
  config.eval.update(sizes=sizes, num_per_size=count)
  model, framing = factory.make_model(config), factory.make_framing(config)
  steps = ckpt.manager(os.path.join(workdir, 'checkpoints'))
  step = steps.latest_step() if step is None else step
  if step not in steps.all_steps():
    raise ckpt.CheckpointError(f'{workdir}/checkpoints has no step {step}')
  params, train_state = train.init_state(model, optim.make_optimizer(config.optim), framing,
                                         config.seed, ema=True)
  like = train.to_saved(params, train_state)
  restored = steps.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(like[0]), train=ocp.args.StandardRestore(like[1])))
  trained, train_state = train.from_saved(restored['params'], restored['train'])
  digits = evaluate.checkpoint_digits(workdir, ckpt.read_meta(steps, step), config)
  return step, {name: evaluate.evaluate_sizes(model, p, config, digits)
                for name, p in (('trained', trained), ('average', train_state['ema']))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--step', type=int, default=None, help='saved step (default: latest)')
  parser.add_argument('--sizes', default='1-99', help='rows, as config.eval.sizes')
  parser.add_argument('--count', type=int, default=2000, help='problems per row')
  args = parser.parse_args(argv)
  try:
    step, rows = paired(args.workdir, args.step, args.sizes, args.count)
  except (ckpt.CheckpointError, factory.ConfigError) as e:
    raise SystemExit(f'error: {e}') from None
  for name, scored in rows.items():
    cells = ', '.join(f'{r["size"]} {100 * r["exact_match"]:.2f}%' for r in scored)
    print(f'step {step} {name}: {cells}')


if __name__ == '__main__':
  main()
