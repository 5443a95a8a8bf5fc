"""Packs a training run's checkpoint for shipping: parameters and metadata only.

  python tools/export.py WORKDIR OUT [--which=latest]     # e.g. OUT=checkpoints/mult

OUT gets the run's `config.json` and `best/<step>/` with the `params` and `meta` items of the
run's best step (with `--which=latest`, of its latest step), without the optimizer state (twice
the parameters' size), and `metrics.jsonl` when the run has one.
`python main.py --config=configs/mult.py --workdir=OUT --mode=eval` then loads it like any
workdir. OUT must be new or hold no training files (config.json, metrics.jsonl, best/,
checkpoints/): exporting into a training workdir is refused.
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

from ttm_jax import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
from ttm_jax import cli  # pylint: disable=g-import-not-at-top


# What a training workdir or an earlier export holds: OUT must have none of them.
TRAINING_FILES = (ckpt.CONFIG_FILE, 'metrics.jsonl', 'best', 'checkpoints', ckpt.LOCK_FILE)


def export(workdir: str, out: str, which: str = 'best') -> str:
  """Writes the shipped checkpoint from `workdir`'s `which` ('best' or 'latest') step;
  returns its step directory. It is made in a folder beside OUT and moved into place when
  complete, so a failure (a full disk, say) leaves OUT as it was."""
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
  present = [name for name in TRAINING_FILES if os.path.exists(os.path.join(out, name))]
  if present:
    raise ckpt.CheckpointError(f'{out} holds {", ".join(present)} already (a training workdir '
                               'or an export): export into a new or empty folder')
  params, meta = ckpt.load_params(workdir, config, which)
  meta = {k: v for k, v in meta.items() if k != 'step'}  # The step it is saved under says it.
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(os.path.abspath(out))}.')
  try:
    ckpt.write_config(staging, config)
    metrics = os.path.join(workdir, 'metrics.jsonl')
    if os.path.exists(metrics):
      shutil.copyfile(metrics, os.path.join(staging, 'metrics.jsonl'))
    shipped = ckpt.manager(os.path.join(staging, 'best'))
    shipped.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                               meta=ocp.args.JsonSave(meta)))
    shipped.close()
    if not os.path.exists(out) or not os.listdir(out):
      os.replace(staging, out)  # Whole, in one step (an empty OUT is replaced).
    else:  # OUT holds other files (a README, say): the export's join them, best/ last.
      for name in sorted(os.listdir(staging), key=lambda name: name == 'best'):
        os.rename(os.path.join(staging, name), os.path.join(out, name))
      os.rmdir(staging)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(out, 'best', str(step))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('out')
  parser.add_argument('--which', choices=('best', 'latest'), default='best')
  args = parser.parse_args(argv)
  try:
    path = export(args.workdir, args.out, args.which)
  except cli.USER_ERRORS as e:
    raise SystemExit(cli.error_line(e)) from None
  size = sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(args.out) for name in names)
  print(f'{path} ({size / 2**20:.1f} MiB in {args.out})')


if __name__ == '__main__':
  main()
