"""Packs a training run's checkpoint for shipping: parameters and metadata only.

  python tools/export.py WORKDIR OUT [--which=latest]     # e.g. OUT=checkpoints/mult

OUT gets the run's `config.json` and `best/<step>/` with the `params` and `meta` items of the
run's best step (with `--which=latest`, of its latest step), without the optimizer state (twice
the parameters' size), and `metrics.jsonl` when the run has one. `python main.py --config=configs/mult.py --workdir=OUT --mode=eval` then loads it like
any workdir. OUT must not hold a checkpoint already.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top


def export(workdir: str, out: str, which: str = 'best') -> str:
  """Writes the shipped checkpoint from `workdir`'s `which` ('best' or 'latest') step;
  returns its step directory."""
  config = ckpt.read_config(workdir)
  folder = 'best' if which == 'best' else 'checkpoints'
  directory = os.path.join(workdir, folder)
  step = None
  if os.path.isdir(directory):
    source = ckpt.manager(directory)
    step = source.latest_step()
    source.close()
  if step is None:
    raise ckpt.CheckpointError(f'{workdir} has no checkpoint in {folder}/')
  params, meta = ckpt.load_params(workdir, config, which)
  if os.path.exists(os.path.join(out, 'best')):
    raise ckpt.CheckpointError(f'{out}/best exists already; remove it or choose another OUT')
  ckpt.write_config(out, config)
  shipped = ckpt.manager(os.path.join(out, 'best'))
  shipped.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                             meta=ocp.args.JsonSave(meta)))
  shipped.close()
  metrics = os.path.join(workdir, 'metrics.jsonl')
  if os.path.exists(metrics):
    shutil.copyfile(metrics, os.path.join(out, 'metrics.jsonl'))
  return os.path.join(out, 'best', str(step))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('out')
  parser.add_argument('--which', choices=('best', 'latest'), default='best')
  args = parser.parse_args()
  try:
    path = export(args.workdir, args.out, args.which)
  except ckpt.CheckpointError as e:
    raise SystemExit(f'error: {e}') from None
  size = sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(args.out) for name in names)
  print(f'{path} ({size / 2**20:.1f} MiB in {args.out})')


if __name__ == '__main__':
  main()
