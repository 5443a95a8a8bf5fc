"""Packs a training run's best checkpoint for shipping: parameters and metadata only.

  python tools/export.py WORKDIR OUT      # e.g. OUT=checkpoints/mult

OUT gets the run's `config.json` and `best/<step>/` with the `params` and `meta` items (no
optimizer state, which is twice the parameters' size), and `metrics.jsonl` when the run has
one. `python main.py --config=configs/mult.py --workdir=OUT --mode=eval` then loads it like
any workdir. OUT must not hold a checkpoint already.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top


def export(workdir: str, out: str) -> str:
  """Writes the shipped checkpoint; returns its step directory."""
  config = ckpt.read_config(workdir)
  params, meta = ckpt.load_params(workdir, config)
  if os.path.exists(os.path.join(out, 'best')):
    raise ckpt.CheckpointError(f'{out}/best exists already; remove it or choose another OUT')
  ckpt.write_config(out, config)
  source = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'best')))
  step = source.latest_step()
  source.close()
  if step is None:
    raise ckpt.CheckpointError(f'{workdir} has no best/ checkpoint')
  manager = ocp.CheckpointManager(
      os.path.abspath(os.path.join(out, 'best')),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))
  manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                             meta=ocp.args.JsonSave(meta)))
  manager.close()
  metrics = os.path.join(workdir, 'metrics.jsonl')
  if os.path.exists(metrics):
    shutil.copyfile(metrics, os.path.join(out, 'metrics.jsonl'))
  return os.path.join(out, 'best', str(step))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('out')
  args = parser.parse_args()
  try:
    path = export(args.workdir, args.out)
  except ckpt.CheckpointError as e:
    raise SystemExit(f'error: {e}') from None
  size = sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(args.out) for name in names)
  print(f'{path} ({size / 2**20:.1f} MiB in {args.out})')


if __name__ == '__main__':
  main()
