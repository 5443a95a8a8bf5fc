"""The training loop: a runlocal run, exact resume after SIGKILL, curriculum promotion, early
stopping, non-finite losses, eval and predict modes, and one-line errors from main.py."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import cli
from ttm_jax import curriculum as curriculum_lib
from ttm_jax import data as data_lib
from ttm_jax import demo
from ttm_jax import devices
from ttm_jax import dump_files
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import files
from ttm_jax import hooks
from ttm_jax import optim
from ttm_jax import predict
from ttm_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**train_overrides):
  config = mult.get_config('runlocal')
  config.train.update({'num_steps': 20, 'steps_per_epoch': 10, **train_overrides})
  config.eval.update(num_examples=16, num_per_size=20, sizes='1x1,2x1')
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A runlocal model trained for 20 steps: (config, workdir, summary)."""
  workdir = str(tmp_path_factory.mktemp('runlocal'))
  config = tiny_config()
  summary = train.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_runlocal_run_writes_checkpoints_and_metrics(trained):
  config, workdir, summary = trained
  assert summary['step'] == 20
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '20']
  assert os.listdir(os.path.join(workdir, 'best'))
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['model'] == config.model.to_dict()
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['split'] for r in rows] == ['start'] + ['train', 'eval'] * 2 + ['end']
  assert rows[0]['step'] == 0 and rows[0]['config_digest'] == devices.config_digest(config)
  assert all(np.isfinite(r['loss']) for r in rows if r['split'] == 'train')
  assert {'learning_rate', 'grad_norm', 'examples_per_second'} <= set(rows[1])
  assert {'sequence_accuracy', 'position_accuracy', 'stage'} <= set(rows[2])
  assert any(f.startswith('events.out.tfevents') for f in
             os.listdir(os.path.join(workdir, 'tb')))


def test_rerun_resumes_instead_of_restarting(trained, tmp_path):
  config, workdir, _ = trained
  config = tiny_config(num_steps=30)
  summary = train.train_and_evaluate(config, workdir)
  assert summary['step'] == 30
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if r['split'] == 'train'] == [10, 20, 30]
  assert [r['step'] for r in rows if r['split'] == 'start'] == [0, 20]  # One per start.
  elapsed = [r['elapsed_seconds'] for r in rows if r['split'] == 'eval']
  assert 0 < elapsed[0] < elapsed[1] < elapsed[2]  # Carried over the resume.


def test_max_seconds_ends_the_run_and_a_longer_limit_resumes_it(tmp_path):
  config = tiny_config(num_steps=1000, max_seconds=1e-6)
  config.eval.track = '2x2'
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == 10 and summary['finished'] == 'reached max_seconds=1e-06'
  rows = [json.loads(line) for line in open(os.path.join(tmp_path, 'metrics.jsonl'))]
  assert 0 <= rows[2]['track/2x2'] <= 1
  config.train.max_seconds = 0
  config.train.num_steps = 20
  assert train.train_and_evaluate(config, str(tmp_path))['step'] == 20


def test_a_run_that_passed_its_last_stage_trains_on_under_a_higher_final_mark(tmp_path):
  config = tiny_config(num_steps=1000, stages='1', start_stage=1, last_stage=1, window=1,
                       final_threshold=0.0)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] == 10 and summary['finished'] == 'passed stage 1'
  config.train.update(num_steps=30, final_threshold=1.0)  # At least one more epoch.
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['step'] > 10 and summary['stage'] == 1


def test_tracked_rows_score_one_fixed_held_out_set(tmp_path):
  # Issue 34: the tracked rows of metrics.jsonl, at every evaluation, are the exact match of
  # that step's parameters on one fixed set of held-out problems (drawn with eval.seed, not
  # the step), decoded here again from the saved steps.
  config = tiny_config()
  config.eval.track = '1x1,2x2'
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  rows = [r for r in files.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))[0]
          if r['split'] == 'eval']
  assert [r['step'] for r in rows] == [10, 20]
  model, framing = factory.make_model(config), factory.make_framing(config)
  a, b, which = evaluate.evaluation_problems(np.random.default_rng(config.eval.seed), 10, 99,
                                             10, 99, config.eval.num_examples)
  assert which == 'held-out' and len(a) == config.eval.num_examples
  one_a, one_b = (x.ravel() for x in np.meshgrid(np.arange(1, 10), np.arange(1, 10)))
  for row in rows:
    params, _ = ckpt.load_params(workdir, config, step=row['step'])
    two = evaluate.decode_problems(model, params, framing, a, b,
                                   framing.encoding_digits(2, 1), 7)
    one = evaluate.decode_problems(model, params, framing, one_a, one_b,
                                   framing.encoding_digits(1, 1), 7)
    assert row['track/2x2'] == np.mean(two['products'] == a * b)
    assert row['track/1x1'] == np.mean(one['products'] == one_a * one_b)


def test_eval_mode_table_and_json(trained, capsys):
  config, workdir, _ = trained
  rows = evaluate.run_eval(config, workdir)
  assert [r['size'] for r in rows] == ['1x1', '2x1']
  assert [(r['count'], r['problems']) for r in rows] == [(81, 'all'), (20, 'random')]
  assert all(0.0 <= r['exact_match'] <= 1.0 for r in rows)
  assert capsys.readouterr().out == evaluate.format_table(rows) + '\n'
  assert json.load(open(os.path.join(workdir, 'eval.json')))['rows'] == rows


def test_eval_mode_scores_the_shipped_checkpoint_exactly(tmp_path, capsys, digest):
  workdir = shutil.copytree(os.path.join(ROOT, 'checkpoints', 'mult'), tmp_path / 'mult')
  before = digest(workdir)
  config = mult.get_config()  # The shipped model is right on every 1×1, 2×1 and 2×2 problem.
  config.eval.update(sizes='1x1,2x1,2x2', num_per_size=100)
  config.trace.num_examples = 1
  out = tmp_path / 'out'
  rows = evaluate.run_eval(config, str(workdir), out=str(out))
  assert [(r['size'], r['exact_match'], r['position_accuracy']) for r in rows] == [
      ('1x1', 1.0, 1.0), ('2x1', 1.0, 1.0), ('2x2', 1.0, 1.0)]
  # An export is only read: eval.json and the traces go to the output folder.
  assert json.load(open(out / 'eval.json'))['rows'] == rows
  assert len(dump_files.load_index(out / 'dumps')) == 3
  assert digest(workdir) == before
  capsys.readouterr()


def test_eval_mode_of_a_saved_step(trained, capsys):
  config, workdir, _ = trained
  rows = evaluate.run_eval(config, workdir, step=10)
  saved = json.load(open(os.path.join(workdir, 'eval-step10.json')))
  assert saved['rows'] == rows and saved['step'] == 10
  first, _ = ckpt.load_params(workdir, config, step=10)
  second, _ = ckpt.load_params(workdir, config, step=20)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(first),
                                                      jax.tree_util.tree_leaves(second)))
  capsys.readouterr()
  assert cli.run('eval', config, workdir, step=15) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'has no saved step 15; it has 10, 20' in err


def test_predict_answers_each_line_and_flags_malformed(trained):
  config, workdir, _ = trained
  model, params, _, _ = ckpt.load_for_inference(workdir)
  lines = ['12×3', '7*8', 'seven times 8', '123456x2', '4 x 9']
  out = predict.predict_lines(model, params, config, lines, 5)
  assert out[2:4] == [
      "error: malformed problem 'seven times 8': expected two non-negative integers (ASCII "
      'digits) joined by ×, * or x, like 123×45',
      "error: problem '123456x2': an operand has 6 digits; the model was trained on operands "
      'up to 5 digits']
  session = demo.Demo(model, params, config)  # Decodes one step at a time, unbatched.
  for i, (a, b) in zip((0, 1, 4), ((12, 3), (7, 8), (4, 9))):
    answer = session.answer(a, b)['answer']
    assert out[i] == ('error: the model produced no number' if answer is None else str(answer))


def test_init_from_starts_a_new_run_from_the_best_parameters(trained, tmp_path):
  config, workdir, _ = trained
  source, _ = ckpt.load_params(workdir, config)
  tuned = tiny_config(num_steps=10, init_from=workdir)
  tuned.optim.update(peak_lr=0.0, end_lr=0.0)  # Parameters stay where they started.
  summary = train.train_and_evaluate(tuned, str(tmp_path))
  assert summary['step'] == 10  # A new run: its own step count and optimizer.
  params, _ = ckpt.load_params(str(tmp_path), tuned, step=10)
  for a, b in zip(jax.tree_util.tree_leaves(source), jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(a, b)
  other = tiny_config(init_from=workdir)
  other.model.hidden_size = 64
  with pytest.raises(ckpt.CheckpointError, match='model.hidden_size: checkpoint 32 vs config 64'):
    train.train_and_evaluate(other, str(tmp_path / 'other'))


def test_mismatched_checkpoint_is_one_clear_error(trained, digest):
  config, workdir, _ = trained
  other = tiny_config()
  other.model.hidden_size = 64
  before = digest(workdir)
  with pytest.raises(ckpt.CheckpointError, match=r'model.hidden_size: checkpoint 32 vs config 64'):
    train.train_and_evaluate(other, workdir)
  assert digest(workdir) == before  # Nothing was written, added or deleted.


def test_second_trainer_of_one_workdir_is_one_clear_error(trained, digest):
  _, workdir, _ = trained
  before = digest(workdir)
  process = subprocess.Popen(  # Holds the lock as a trainer would, until told to stop.
      [sys.executable, '-c', 'import sys; from ttm_jax import checkpoint as c\n'
       f'with c.training_lock({workdir!r}):\n print("held", flush=True); sys.stdin.read()'],
      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert process.stdout.readline() == 'held\n'
    result = _main(workdir, '--config.train.num_steps=40')
  finally:
    process.communicate('')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: {workdir} is being trained by another process (pid {process.pid}); wait for it '
      'to end or stop it, or use another --workdir')
  assert digest(workdir) == before  # The holder's train.lock went with it.


def test_corrupt_latest_step_falls_back_to_previous(trained, tmp_path):
  config = tiny_config()
  workdir = str(tmp_path / 'copy')
  shutil.copytree(trained[1], workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '30'), ignore_errors=True)
  params_dir = os.path.join(workdir, 'checkpoints', '20', 'params')
  for root, _, names in os.walk(params_dir):
    for name in names:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')
  model_params, train_like = train.init_state(
      train.factory.make_model(config), train.optim.make_optimizer(config.optim),
      train.factory.make_framing(config), 0)
  checkpoints = ckpt.Checkpoints(workdir)
  params, train_state, meta = checkpoints.restore_latest(model_params, train_like, config)
  checkpoints.close()
  assert int(train_state['step']) == 10


def test_a_damaged_latest_step_is_skipped_then_overwritten(trained, tmp_path, caplog):
  # Issue 34: it used to fail with StepAlreadyExistsError on every rerun.
  config, source, _ = trained
  workdir = str(shutil.copytree(source, tmp_path / 'copy'))
  last = max(int(step) for step in os.listdir(os.path.join(workdir, 'checkpoints')))
  saved, _ = ckpt.load_params(workdir, config, step=last)
  rows = open(os.path.join(workdir, 'metrics.jsonl')).read()
  shutil.rmtree(os.path.join(workdir, 'checkpoints', str(last), 'params', 'd'))
  assert train.train_and_evaluate(tiny_config(num_steps=last), workdir)['step'] == last
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert len(warnings) == 1 and warnings[0].startswith(f'checkpoint step {last} in ')
  assert warnings[0].endswith(f'resuming from the step before it (training overwrites step '
                              f'{last} when it gets there)')
  again, _ = ckpt.load_params(workdir, config, step=last)  # Readable, and as it was.
  for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(again),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  # The rows of the step trained again are not written twice (timings aside, the same; each
  # invocation's own start and end rows stay).
  strip = lambda text: [{k: v for k, v in row.items()
                         if k not in ('examples_per_second', 'elapsed_seconds')}
                        for row in map(json.loads, text.splitlines())
                        if row['split'] in hooks.EPOCH_SPLITS]
  assert strip(open(os.path.join(workdir, 'metrics.jsonl')).read()) == strip(rows)
  assert train.train_and_evaluate(tiny_config(num_steps=last + 10), workdir)['step'] == last + 10


def test_metrics_lose_a_cut_last_line_and_the_epoch_rows_after_the_resumed_step(tmp_path,
                                                                               caplog):
  path = tmp_path / 'metrics.jsonl'
  rows = [{'step': 0, 'split': 'start'}, {'step': 10, 'split': 'train'},
          {'step': 10, 'split': 'eval'}, {'step': 20, 'split': 'train'},
          {'step': 20, 'split': 'start'}, {'step': 20, 'split': 'eval'}]
  text = ''.join(json.dumps(r) + '\n' for r in rows)
  path.write_text(text + '{"step": 30, "split": "tr')  # A kill in the middle of an append.
  hooks.repair_metrics(str(path), resume_step=10)
  assert path.read_text() == ''.join(json.dumps(r) + '\n' for r in rows[:3] + rows[4:5])
  assert 'dropped its last line, cut off by an interrupted write (25 bytes)' in caplog.text
  assert 'dropped 2 rows after step 10, which the resumed run writes again' in caplog.text
  path.write_text(text)  # Nothing to drop: the file is left as it is.
  before = os.stat(path)
  hooks.repair_metrics(str(path), resume_step=20)
  assert path.read_text() == text and os.stat(path).st_ino == before.st_ino
  # A writer appends after the repair, on a line of its own.
  path.write_text(text[:-1] + '\n{"step": 30, "split": "tr')
  writer = hooks.MetricsWriter(str(tmp_path), resume_step=20)
  writer.write(30, 'train', {'loss': 1.0})
  writer.close()
  assert files.read_jsonl(str(path)) == (rows + [{'step': 30, 'split': 'train', 'loss': 1.0}],
                                         '')


def test_non_finite_loss_stops_without_saving(tmp_path):
  config = tiny_config()
  config.optim.peak_lr = float('inf')
  with pytest.raises(train.TrainingError, match='non-finite'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(os.path.join(tmp_path, 'checkpoints'))


RUNLOCAL = ['main.py', '--config=configs/mult.py:runlocal', '--config.train.num_steps=30',
            '--config.train.steps_per_epoch=10', '--config.eval.num_examples=8']


@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  """An environment whose JAX processes share a persistent compilation cache."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp('jax_cache')),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


def _main(workdir, *flags, env=None):
  return subprocess.run([sys.executable, *RUNLOCAL, f'--workdir={workdir}', *flags], cwd=ROOT,
                        capture_output=True, text=True, env=env)


def _final_params(workdir, step, folder='checkpoints'):
  # On this process's device, whichever devices the run saved from.
  params, _ = ckpt.load_params(workdir, ckpt.read_config(workdir), step=step, folder=folder)
  return jax.tree_util.tree_leaves(params)


def _start(workdir, env):
  return subprocess.Popen([sys.executable, *RUNLOCAL, f'--workdir={workdir}'], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(path, process):
  deadline = time.time() + 300
  while not os.path.isdir(path) and process.poll() is None and time.time() < deadline:
    time.sleep(0.02)


def test_ctrl_c_then_sigkill_then_resume_equals_uninterrupted_run(tmp_path, jax_cache):
  straight, stopped = str(tmp_path / 'straight'), str(tmp_path / 'stopped')
  uninterrupted = _start(straight, jax_cache)  # Runs beside the interrupted one.
  # Ctrl-C: the run saves the step it is at and exits with 130.
  process = _start(stopped, jax_cache)
  _wait_for(os.path.join(stopped, 'checkpoints', '10'), process)
  process.send_signal(signal.SIGINT)
  output, _ = process.communicate()
  assert process.returncode == 130, output
  saved = int(re.search(r'stopping: saved step (\d+)', output).group(1))
  assert os.path.isdir(os.path.join(stopped, 'checkpoints', str(saved)))
  # SIGKILL: nothing is saved; the restart resumes from the last checkpoint.
  process = _start(stopped, jax_cache)
  _wait_for(os.path.join(stopped, 'checkpoints', '20'), process)
  process.send_signal(signal.SIGKILL)
  process.communicate()
  result = _main(stopped, env=jax_cache)
  assert result.returncode == 0, result.stderr
  assert 'resumed from step' in result.stderr
  output, _ = uninterrupted.communicate()
  assert uninterrupted.returncode == 0, output
  for a, b in zip(_final_params(straight, 30), _final_params(stopped, 30), strict=True):
    np.testing.assert_array_equal(a, b)
  # Issue 34: the epoch the stop ended was evaluated (here, with one call an epoch, every stop
  # ends one), so the metrics and the best checkpoint are those of the uninterrupted run.
  timings = ('examples_per_second', 'elapsed_seconds')
  rows = [[{k: v for k, v in row.items() if k not in timings}
           for row in files.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))[0]
           if row['split'] in hooks.EPOCH_SPLITS]  # Not each invocation's start and end.
          for workdir in (straight, stopped)]
  assert [r['step'] for r in rows[1] if r['split'] == 'eval'] == [10, 20, 30]
  assert rows[1] == rows[0]
  best = [os.listdir(os.path.join(workdir, 'best')) for workdir in (straight, stopped)]
  assert best[1] == best[0]
  for a, b in zip(*(_final_params(workdir, int(best[0][0]), 'best')
                    for workdir in (straight, stopped)), strict=True):
    np.testing.assert_array_equal(a, b)
  # A start leaves a row (the killed one, if it got that far); main.py split the CPU into
  # one device per core.
  starts = [row for row in map(json.loads, open(os.path.join(stopped, 'metrics.jsonl')))
            if row['split'] == 'start']
  assert [row['step'] for row in starts][:2] == [0, saved] and len(starts) in (2, 3)
  batch = mult.get_config('runlocal').train.batch_size
  assert {row['devices'] for row in starts} == {f'{devices.cpu_device_count(batch)} x cpu'}


def test_training_on_a_non_terminal_says_what_it_does_from_the_start(tmp_path, jax_cache):
  """Output to a pipe (a log file, CI, nohup: no progress bar): a line as soon as training
  starts and one before compiling, the first call's loss and time before the first evaluation,
  each line as it happens (the first while the run is still going), and a closing sentence
  instead of a dict."""
  workdir = str(tmp_path / 'run')
  process = _start(workdir, jax_cache)
  first = process.stdout.readline()
  running = process.poll() is None
  lines = [first] + process.stdout.read().splitlines()
  process.wait()
  assert process.returncode == 0, '\n'.join(lines)
  assert running, 'the first line came only when the run ended'
  assert re.fullmatch(rf'training in {workdir} on \d+ CPU device\(s\): setting up the model, '
                      r'the data and the checkpoints\n', first)
  assert lines[1] == ('step 0, stage 1: compiling the train step (the first call compiles it, '
                      'which takes a while)')
  assert re.fullmatch(r'step 10: loss [\d.]+; compiled and ran 10 steps in [\d.]+ s', lines[2])
  assert re.fullmatch(r'step 10 stage 1: train loss [\d.]+, eval exact match [\d.]+ \(8 '
                      r'problems, none held out: 1-digit operands\), lr .*, \d+ examples/s',
                      lines[3])
  assert lines[-1] == ('training stopped at step 30 in stage 1: it reached '
                       'config.train.num_steps=30 before the curriculum ended; a larger value '
                       'resumes it from there')
  assert not any('{' in line for line in lines)


@pytest.mark.parametrize('shard_params', ['false', 'true'])
def test_evaluations_trace_problems_when_training_on_two_devices(tmp_path, jax_cache,
                                                                  shard_params):
  """The default command trains on one CPU device per core and traces a few evaluation problems
  every 10 evaluations; on two devices the trace's ordered host callbacks used to stop it at
  its first trace (step 2000) with a traceback. Replicated or sharded, the parameters the
  trace decodes with are gathered onto one device, and the dumps are written."""
  workdir = tmp_path / 'run'
  result = _main(workdir, '--cpu_devices=2', '--config.trace.num_examples=2',
                 '--config.trace.every_epochs=2', '--config.optim.ema_decay=0.9',
                 f'--config.train.shard_params={shard_params}', env=jax_cache)
  assert result.returncode == 0, result.stdout + result.stderr
  starts = [row for row in files.read_jsonl(str(workdir / 'metrics.jsonl'))[0]
            if row['split'] == 'start']
  assert [row['devices'] for row in starts] == ['2 x cpu']
  traced = sorted(name for name in os.listdir(workdir / 'dumps') if name.endswith('.npz'))
  assert traced == [f'train-e{e:04d}-b{10 * e:06d}-x{x:03d}.npz' for e in (2,) for x in (0, 1)]


def test_progress_lines_come_at_growing_intervals_without_a_progress_bar():
  now = [0.0]
  written = []
  progress = hooks.ProgressLines(written.append, batch_size=4, heartbeat=True,
                                 clock=lambda: now[0])
  progress.start(0, 1)
  for step in range(1, 200):
    now[0] += 1.0  # One second per call of one step.
    progress.after_call(step, np.array([2.0]))
  assert written[0].endswith('compiling the train step (the first call compiles it, which '
                             'takes a while)')
  assert written[1] == 'step 1: loss 2.0000; compiled and ran 1 steps in 1.0 s'
  steps = [int(line.split(':')[0].split()[1]) for line in written[2:]]
  assert steps == [6, 16, 36, 76, 136, 196]  # After 5, 10, 20, 40, then every 60 s.
  assert written[2] == 'step 6: loss 2.0000, 4 examples/s'
  quiet = []
  progress = hooks.ProgressLines(quiet.append, 4, heartbeat=False, clock=lambda: now[0])
  for step in range(1, 100):
    now[0] += 1.0
    progress.after_call(step, np.array([2.0]))
  assert len(quiet) == 1  # A progress bar shows the rest.


def test_training_profiles_the_chosen_steps(traced_run):
  _, workdir = traced_run
  runs = glob.glob(os.path.join(workdir, 'profile', 'plugins', 'profile', '*'))
  assert len(runs) == 1  # One trace, of steps 12-13.
  assert glob.glob(os.path.join(runs[0], '*.xplane.pb'))


def test_ema_averages_the_parameters_step_by_step():
  config = tiny_config()
  config.optim.ema_decay = 0.75
  model, framing = factory.make_model(config), factory.make_framing(config)
  tx = optim.make_optimizer(config.optim)
  params, train_state = train.init_state(model, tx, framing, 0, ema=True)
  dataset = data_lib.MultiplicationDataset(16, 0, curriculum_lib.Curriculum.from_config(config),
                                           framing, True)
  step = train.make_train_step(model, tx, config.optim)
  to_numpy = lambda tree: jax.tree_util.tree_map(np.asarray, tree)
  params, train_state, _ = step(params, train_state, train.draw_batches(dataset, 1))
  before, average = to_numpy(params), to_numpy(train_state['ema'])  # (Step 0's rate is 0.)
  params, train_state, _ = step(params, train_state, train.draw_batches(dataset, 1))
  decay = 2 / 11  # Step 1 of the stage: (1 + 1) / (10 + 1), below ema_decay.
  expected = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * np.asarray(p),
                                    average, params)
  for a, b in zip(jax.tree_util.tree_leaves(expected),
                  jax.tree_util.tree_leaves(train_state['ema'])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Far into a stage the decay is ema_decay's.
  train_state['stage_start'] = jnp.asarray(-1000, jnp.int32)
  average = to_numpy(train_state['ema'])
  params, train_state, _ = step(params, train_state, train.draw_batches(dataset, 1))
  expected = jax.tree_util.tree_map(lambda e, p: 0.75 * e + 0.25 * np.asarray(p), average,
                                    params)
  for a, b in zip(jax.tree_util.tree_leaves(expected),
                  jax.tree_util.tree_leaves(train_state['ema'])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(before),
                                                   jax.tree_util.tree_leaves(params)))


def _assert_resumes_exactly(config, tmp_path, stop: int) -> str:
  """Trains `config` for its `num_steps` straight, and again stopped at `stop` and resumed;
  asserts the final parameters are equal. Returns the straight run's workdir."""
  steps = config.train.num_steps
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  train.train_and_evaluate(config, straight)
  config.train.num_steps = stop
  train.train_and_evaluate(config, resumed)
  config.train.num_steps = steps
  train.train_and_evaluate(config, resumed)
  for a, b in zip(_final_params(straight, steps), _final_params(resumed, steps)):
    np.testing.assert_array_equal(a, b)
  return straight


def test_ema_run_serves_the_average_and_resumes_exactly(tmp_path):
  config = tiny_config(num_steps=30)
  config.optim.ema_decay = 0.9
  straight = _assert_resumes_exactly(config, tmp_path, stop=20)
  # The checkpoint's params are the average; tools/ema_paired.py scores it and the trained ones.
  result = subprocess.run([sys.executable, 'tools/ema_paired.py', straight, '--sizes=1x1',
                           '--count=20'], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [line.split(':')[0] for line in lines] == ['step 30 trained', 'step 30 average']
  assert all(re.search(r'1x1 \d+\.\d\d%$', line) for line in lines)
  plain = str(tmp_path / 'plain')
  train.train_and_evaluate(tiny_config(num_steps=10), plain)
  result = subprocess.run([sys.executable, 'tools/ema_paired.py', plain], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 1 and result.stderr.startswith('error: ') and \
      len(result.stderr.splitlines()) == 1


def test_places_batches_carry_offsets_and_a_resumed_run_draws_the_same(tmp_path):
  config = tiny_config(stages='5,2', start_stage=5, last_stage=2)  # 1-99: two digits.
  config.task.update(positions='places', max_digits=12, place_offset=6)
  dataset = data_lib.MultiplicationDataset(
      16, 0, curriculum_lib.Curriculum.from_config(config), factory.make_framing(config))
  batches = train.draw_batches(dataset, 3)
  assert batches['inputs'].shape == (3, 16, 5, 2 * 2 + 3) and batches['offsets'].shape == (3, 16)
  assert batches['offsets'].max() <= 6 and len(np.unique(batches['offsets'])) > 1
  model = factory.make_model(config)
  params, _ = train.init_state(model, optim.make_optimizer(config.optim),
                               factory.make_framing(config), 0)
  batch = {k: v[0] for k, v in batches.items()}
  key = jax.random.PRNGKey(0)
  loss = lambda b: float(train.loss_fn(model, params, b, key)[0])
  assert loss(batch) != loss({**batch, 'offsets': np.zeros_like(batch['offsets'])})
  _assert_resumes_exactly(config, tmp_path, stop=10)
