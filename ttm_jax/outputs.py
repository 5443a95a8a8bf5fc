"""Where commands that read a model write what they make (`eval.json`, traces, plots).

A training workdir (one with `checkpoints/`) keeps its own outputs, so that a viewer following
it sees its traces. Any other folder, such as a shipped export (`tools/export.py`: `best/`,
`config.json`, `metrics.jsonl`; the repository's `checkpoints/mult`), is only read: its outputs
go to `runs/<name>-outputs/` under the current directory (ignored by git), or to `--out`.
Numpy-free, for the light tools (`tools/plot.py`).
"""

import os
from typing import Optional

RUNS = 'runs'  # Ignored by git (.gitignore).
SUFFIX = '-outputs'


def is_training_workdir(workdir: str) -> bool:
  """Whether `workdir` is a training run's (it has `checkpoints/`), not an export."""
  return os.path.isdir(os.path.join(workdir, 'checkpoints'))


def output_dir(workdir: str, out: Optional[str] = None) -> str:
  """`out` if given; else `workdir` for a training workdir, `runs/<name>-outputs` for any
  other (`<name>`: the folder's own name, e.g. `runs/mult-outputs` for `checkpoints/mult`)."""
  if out:
    return out
  if is_training_workdir(workdir):
    return workdir
  name = os.path.basename(os.path.abspath(workdir)) or 'root'
  return os.path.join(RUNS, name + SUFFIX)


def trace_dir(out: str, a: int, b: int) -> str:
  """The dumps folder of one `--mode=trace` problem: a folder of its own, so that the viewer
  shows that trace alone whatever else was traced before (`OUT/trace-92x98`)."""
  return os.path.join(out, f'trace-{a}x{b}')
