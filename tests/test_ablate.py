"""tools/ablate.py: run configs per variant, task and budget; a tiny ablation end to end."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from configs import mult
from tools import ablate
from ttm_jax import checkpoint as ckpt


def test_variants_name_their_seed_counts_or_ranges():
  assert ablate.parse_variants('TL:3,none,transformer:1,TL-m32:1-2,TL-m64:4-4') == [
      ('TL', [0, 1, 2]), ('none', [0]), ('transformer', [0]), ('TL-m32', [1, 2]),
      ('TL-m64', [4])]
  with pytest.raises(ValueError, match='unknown variant'):
    ablate.parse_variants('TL,NTM')
  for bad in ('TL:0', 'TL:x', 'TL:2-1', 'TL:1-', 'TL:-3', 'TL:1-2-3'):
    with pytest.raises(ValueError, match='positive seed count'):
      ablate.parse_variants(bad)


def test_run_config_applies_task_variant_seed_and_budget():
  config = ablate.run_config('none', 2, ('minutes', 1.5), task='stream')
  assert (config.task.framing, config.task.layout) == ('stream', 'packed')
  assert (config.train.stages, config.train.last_stage) == ('1,5,2', 2)
  assert config.model.memory_mode == 'none' and config.seed == 2
  assert config.train.max_seconds == 90.0 and config.eval.track == '2x2'
  config = ablate.run_config('TL-AddErase', 0, ('steps', 500))
  assert config.train.num_steps == 500 and config.train.max_seconds == 0
  assert config.task.framing == 'problem' and config.eval.track == '2x2,3x3'
  assert config.model.memory_mode == 'TL-AddErase'
  config = ablate.run_config('TL', 0, ('steps', 500), task='stream-1-999')
  assert (config.task.framing, config.train.stages, config.train.last_stage) == (
      'stream', '1,5,6', 6)
  assert config.train.max_epochs_per_stage == 100 and config.eval.track == '2x2,3x3'


def _fields(config):
  """`{'section.key': value}` of every field of a config."""
  return {f'{section}.{key}' if isinstance(fields, dict) else section: value
          for section, fields in config.to_dict().items()
          for key, value in (fields.items() if isinstance(fields, dict) else [(None, fields)])}


def _differences(config, other):
  a, b = _fields(config), _fields(other)
  assert a.keys() == b.keys()
  return {field: a[field] for field in a if a[field] != b[field]}


@pytest.mark.parametrize('name', sorted(ablate.VARIANTS))
def test_every_variant_is_a_valid_config_in_every_task(name):
  # Issue 34: a variant differs from the task's default run only in the fields it declares,
  # each at its declared value; the default run from configs/mult.py only in the task's
  # fields and in what every run of an ablation sets.
  every_run = {'train.num_steps': 10, 'train.patience': 10**9, 'seed': 3,
               'trace.num_examples': 0}
  for task, (changes, track) in ablate.TASKS.items():
    config = ablate.run_config(name, 3, ('steps', 10), task=task)  # Runs config_check.
    default = ablate.run_config('TL', 3, ('steps', 10), task=task)
    declared = {field: value for field, value in ablate.VARIANTS[name].items()
                if _fields(default)[field] != value}
    assert _differences(config, default) == declared, (name, task)
    expected = {**changes, **every_run, 'eval.track': track}
    assert _differences(default, mult.get_config()) == {
        field: value for field, value in expected.items()
        if _fields(mult.get_config())[field] != value}, task


def test_forward_flops_grow_with_the_problem_and_the_memory():
  config = ablate.run_config('TL', 0, ('steps', 1), arg='runlocal')
  flops = ablate.forward_flops(config, digits=2)
  assert 0 < flops < ablate.forward_flops(config, digits=3)
  assert ablate.forward_flops(ablate.run_config('none', 0, ('steps', 1), arg='runlocal'),
                              digits=2) < flops


def test_a_run_another_process_trains_stops_the_command(tmp_path):
  run = tmp_path / 'TL-s1'
  with ckpt.training_lock(str(run)):
    with pytest.raises(SystemExit, match=f'^error: {run} is being trained by another process'):
      ablate.main([f'--workdir={tmp_path}', '--steps=20', '--config_arg=runlocal',
                   '--variants=TL:1-1', f'--out={tmp_path}/report'])
    assert os.listdir(run) == [ckpt.LOCK_FILE]  # Nothing trained, nothing written.


@pytest.mark.slow  # About a minute.
def test_tiny_ablation_trains_reports_and_resumes(tmp_path, capsys):
  argv = [f'--workdir={tmp_path}', '--steps=20', '--config_arg=runlocal',
          '--variants=TL:2,transformer', f'--out={tmp_path}/report']
  assert ablate.main(argv) == 0
  results = json.load(open(tmp_path / 'report.json'))
  assert [(r['variant'], r['seed']) for r in results] == [('TL', 0), ('TL', 1),
                                                          ('transformer', 0)]
  for r in results:
    assert r['steps'] == 20 and r['examples'] == 20 * 16 and r['forward_flops'] > 0
    assert [row['examples'] for row in r['curve']] == [160, 320]
    assert all(0 <= row['track/3x3'] <= 1 for row in r['curve'])
  assert results[0]['rows'] != results[1]['rows'] or \
      results[0]['curve'] != results[1]['curve']  # Two seeds, two runs.
  table = open(tmp_path / 'report.md').read().splitlines()
  assert table[0].startswith('| variant | seeds | parameters |')
  assert table[2].startswith('| TL | 2 |') and table[3].startswith('| transformer | 1 |')
  assert os.path.getsize(tmp_path / 'report.png') > 0
  assert os.path.getsize(tmp_path / 'report-curves.png') > 0
  mtime = os.path.getmtime(tmp_path / 'TL-s0' / 'result.json')
  assert ablate.main(argv[:-1] + ['--report', f'--out={tmp_path}/again']) == 0
  assert os.path.getmtime(tmp_path / 'TL-s0' / 'result.json') == mtime  # Not retrained.
  assert open(tmp_path / 'again.md').read() == open(tmp_path / 'report.md').read()
  longer = [argv[0], '--steps=30', *argv[2:3], '--variants=TL', f'--out={tmp_path}/longer']
  assert ablate.main(longer) == 0  # A larger budget resumes the run from its checkpoint.
  (result,) = json.load(open(tmp_path / 'longer.json'))
  assert result['steps'] == 30 and result['budget'] == ['steps', 30]
  assert [row['examples'] for row in result['curve']] == [160, 320, 480]
  capsys.readouterr()


def test_ctrl_c_says_how_to_resume_in_one_line(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  process = subprocess.Popen(
      [sys.executable, 'tools/ablate.py', f'--workdir={tmp_path}', '--steps=1000',
       '--config_arg=runlocal', '--variants=TL'], cwd=root, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  first = tmp_path / 'TL-s0' / 'checkpoints' / '10'
  deadline = time.time() + 300
  while not first.is_dir() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  process.send_signal(signal.SIGINT)
  _, errors = process.communicate()
  assert process.returncode == 130, errors
  assert 'Traceback' not in errors
  assert errors.strip().splitlines()[-1] == (
      f'interrupted; run the same command to resume from the last checkpoint in '
      f'{tmp_path / "TL-s0"}')


def test_a_cut_result_json_in_report_is_one_error_line(tmp_path):
  # Issue 34: a kill or a full disk while an earlier version wrote it left it cut off.
  run = tmp_path / 'TL-s0'
  run.mkdir()
  (run / 'result.json').write_text('{"variant": "TL", "seed": 0, "rows": [{"si')
  with pytest.raises(SystemExit, match=rf'^error: {run}/result.json: cut off or not JSON '
                     r'\(.*\); run the same command without --report to score the run '
                     r'again$'):
    ablate.main([f'--workdir={tmp_path}', '--variants=TL', '--report',
                 f'--out={tmp_path}/report'])
  (run / 'result.json').write_text('[1, 2]')
  with pytest.raises(SystemExit, match=r'result.json: not the result of a run; run the same'):
    ablate.main([f'--workdir={tmp_path}', '--variants=TL', '--report',
                 f'--out={tmp_path}/report'])


def test_a_report_into_a_folder_that_cannot_be_made_is_one_error_line(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(SystemExit, match=rf'^error: {tmp_path}/file/sub: Not a directory$'):
    ablate.main([f'--workdir={tmp_path}', '--variants=TL', '--report',
                 f'--out={tmp_path}/file/sub/report'])
