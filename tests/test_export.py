"""tools/export.py: a shipped checkpoint from a workdir's best step, written whole or not at
all, and never into a training workdir (issue 34)."""

import os
import shutil

import jax
import numpy as np
import pytest

from configs import mult
from tools import export
from ttm_jax import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


@pytest.mark.parametrize('out', ['new', 'empty', 'other files'])
def test_export_writes_a_loadable_checkpoint(tmp_path, capsys, out):
  target = tmp_path / 'out'
  if out != 'new':
    target.mkdir()
  if out == 'other files':
    (target / 'README').write_text('kept')
  export.main([SHIPPED, str(target)])
  (step,) = os.listdir(SHIPPED + '/best')
  assert capsys.readouterr().out.startswith(f'{target}/best/{step} (')
  config = mult.get_config()
  shipped, shipped_meta = ckpt.load_params(SHIPPED, config)
  exported, exported_meta = ckpt.load_params(str(target), config)
  # The same meta, the step it was restored from included, which is not saved into it.
  assert exported_meta == shipped_meta and exported_meta['step'] == int(step)
  saved = ckpt.manager(os.path.join(target, 'best'))
  assert 'step' not in ckpt.read_meta(saved, int(step))
  saved.close()
  for a, b in zip(jax.tree_util.tree_leaves(shipped), jax.tree_util.tree_leaves(exported),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  assert sorted(os.listdir(target)) == sorted(
      ['best', 'config.json', 'metrics.jsonl'] + (['README'] if out == 'other files' else []))
  assert sorted(os.listdir(tmp_path)) == ['out']  # No staging folder left behind.


@pytest.mark.parametrize('held', [['config.json', 'metrics.jsonl', 'checkpoints'], ['best']])
def test_export_into_a_training_workdir_is_refused(tmp_path, digest, held):
  # Issue 34: a workdir with no best/ used to lose its config.json and metrics.jsonl (exit 0).
  target = tmp_path / 'run'
  target.mkdir()
  for name in held:
    if '.' in name:
      (target / name).write_text('{"mine": 1}\n')
    else:
      (target / name / '10').mkdir(parents=True)
  before = digest(target)
  with pytest.raises(SystemExit) as raised:
    export.main([SHIPPED, str(target)])
  assert str(raised.value) == (f'error: {target} holds {", ".join(held)} already (a training '
                               'workdir or an export): export into a new or empty folder')
  assert digest(target) == before and sorted(os.listdir(tmp_path)) == ['run']


def test_export_from_a_folder_without_a_config_is_one_line(tmp_path):
  with pytest.raises(SystemExit, match=f'^error: {tmp_path} has no config.json: not a training '
                     'workdir$'):
    export.main([str(tmp_path), str(tmp_path / 'out')])
  shutil.rmtree(tmp_path / 'out', ignore_errors=True)
