"""The shipped checkpoint (checkpoints/mult): it loads with the default config and multiplies;
and the lock that keeps two trainers out of one workdir."""

import fcntl
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import mult
from ttm_jax import checkpoint as ckpt
from ttm_jax import data
from ttm_jax import evaluate
from ttm_jax import factory
from ttm_jax import optim
from ttm_jax import predict
from ttm_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')
(SHIPPED_STEP,) = os.listdir(os.path.join(SHIPPED, 'best'))  # The one step an export holds.


@pytest.fixture(scope='module')
def shipped():
  """`(model, params, config, eval rows recorded when it was shipped)`."""
  config = mult.get_config()
  params, _ = ckpt.load_params(SHIPPED, config)  # Raises if it does not match the default.
  with open(os.path.join(SHIPPED, 'eval.json')) as f:
    recorded = {row['size']: row for row in json.load(f)['rows']}
  return factory.make_model(config), params, config, recorded


def test_shipped_checkpoint_is_small_and_has_no_optimizer_state():
  files = [os.path.join(root, name) for root, _, names in os.walk(SHIPPED) for name in names]
  assert sum(os.path.getsize(f) for f in files) < 20 * 2**20
  items = set(os.listdir(os.path.join(SHIPPED, 'best', SHIPPED_STEP)))
  assert {'meta', 'params'} <= items and 'train' not in items


def test_shipped_checkpoint_was_trained_with_the_default_config():
  # Issue 19: the shipped model is what `python main.py --config=configs/mult.py` makes, with no
  # overrides (a field the run's config.json lacks was added later, at its default of 'off').
  # Issue 34: config.json is rewritten by every resume, so the model and task are checked on
  # what does not move, the config the step's own metadata recorded when it was saved...
  _, meta = ckpt.load_params(SHIPPED, mult.get_config())
  default_sections = ckpt.config_sections(mult.get_config())
  saved = {section: {key: meta['config'][section].get(key, ckpt.ADDED_FIELDS.get(
      (section, key))) for key in fields} for section, fields in default_sections.items()}
  assert saved == default_sections
  assert set(meta['config']['model']) | set(k for s, k in ckpt.ADDED_FIELDS if s == 'model') \
      >= set(default_sections['model'])
  # ...and the training settings on config.json, the only record of them.
  with open(os.path.join(SHIPPED, 'config.json')) as f:
    recorded = json.load(f)
  default = mult.get_config().to_dict()
  differences = [f'{section}.{key}' for section, fields in recorded.items()
                 if isinstance(fields, dict) for key, value in fields.items()
                 if default[section].get(key) != value]
  assert differences == []
  assert recorded['seed'] == default['seed'] and recorded['train']['init_from'] == ''


def test_recorded_table_is_the_default_evaluation_of_this_checkpoint(shipped):
  # Issue 34: any `--mode=eval` rewrites eval.json (another seed, fewer problems, another
  # step), which would move the rates the tests below compare with. It must be the default
  # evaluation of the shipped step: its rows, counts and, scored again here, its exact matches
  # (2x1, 2x2 and 3x3 are decoded again, on the very problems of the table).
  model, params, config, recorded = shipped
  with open(os.path.join(SHIPPED, 'eval.json')) as f:
    table = json.load(f)
  _, meta = ckpt.load_params(SHIPPED, config)
  assert table['step'] is None and table['checkpoint_stage'] == meta['curriculum']['stage']
  ranges = evaluate.parse_sizes(config.eval.sizes)
  assert list(recorded) == [evaluate.row_name(*r) for r in ranges]
  rng = np.random.default_rng(config.eval.seed)
  framing = factory.make_framing(config)
  for row, size_ranges in zip(table['rows'], ranges):
    a, b, which = evaluate.evaluation_problems(rng, *size_ranges, config.eval.num_per_size)
    assert (row['count'], row['problems']) == (len(a), which)
    if row['size'] in ('2x1', '2x2', '3x3'):
      digits = framing.encoding_digits(data.longest_operand(size_ranges[1], size_ranges[3]),
                                       evaluate.checkpoint_digits(SHIPPED, meta, config))
      decoded = evaluate.decode_problems(model, params, framing, a, b, digits,
                                         config.eval.batch_size)
      assert row['exact_match'] == float(np.mean(decoded['products'] == a * b)), row


def test_every_one_digit_product(shipped):
  model, params, config, recorded = shipped
  assert recorded['1x1']['exact_match'] == 1.0
  a, b = np.meshgrid(np.arange(1, 10), np.arange(1, 10))
  lines = [f'{x}×{y}' for x, y in zip(a.ravel(), b.ravel())]
  assert predict.predict_lines(model, params, config, lines, 3) == [
      str(x * y) for x, y in zip(a.ravel(), b.ravel())]


@pytest.mark.parametrize('size', ['2x1', '2x2'])
def test_fresh_products_as_often_as_the_recorded_table_says(shipped, size):
  # 100 problems the table never saw; the count right is binomial around the recorded rate,
  # so allow 4 standard deviations (and at least 3 problems).
  model, params, config, recorded = shipped
  da, db = (int(d) for d in size.split('x'))
  rng = np.random.default_rng(2026)
  a, b = data.sample_operands(rng, 100, *data.digit_range(da), *data.digit_range(db))
  answers = predict.predict_lines(model, params, config, [f'{x}*{y}' for x, y in zip(a, b)],
                                     3)
  right = sum(answer == str(x * y) for answer, x, y in zip(answers, a, b))
  rate = recorded[size]['exact_match']
  assert abs(right - 100 * rate) <= max(4 * np.sqrt(100 * rate * (1 - rate)), 3)


def test_held_out_3x3_as_often_as_the_recorded_table_says(shipped):
  # 300 held-out 3×3 problems the table never saw (another seed), with the same binomial bound.
  model, params, config, recorded = shipped
  a, b, which = evaluate.evaluation_problems(np.random.default_rng(2026), 100, 999, 100, 999,
                                             300)
  assert which == 'held-out' and len(a) == 300 and data.held_out_mask(a, b).all()
  decoded = evaluate.decode_problems(model, params, factory.make_framing(config), a, b, 3, 300)
  right = int(np.sum(decoded['products'] == a * b))
  rate = recorded['3x3']['exact_match']
  assert abs(right - 300 * rate) <= max(4 * np.sqrt(300 * rate * (1 - rate)), 3), right


def test_predict_mode_on_the_shipped_checkpoint():
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/mult.py', f'--workdir={SHIPPED}',
       '--mode=predict'], input='7×8\n3*9\n12×\n', cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 1  # One malformed line.
  lines = result.stdout.splitlines()
  assert lines[:2] == ['56', '27'] and lines[2].startswith('error: ')


def test_checkpoints_from_before_a_field_existed_read_as_its_old_value(tmp_path):
  config = mult.get_config('runlocal')
  saved = ckpt.config_sections(config)
  del saved['model']['kind'], saved['model']['token_embed_stddev'], saved['task']['layout']
  with pytest.raises(ckpt.CheckpointError, match='token_embed_stddev: checkpoint 0.01'):
    ckpt.check_config_matches(saved, config, 'old')  # The default is 0.125 now.
  config.model.token_embed_stddev, config.task.layout = 0.01, 'packed'
  ckpt.check_config_matches(saved, config, 'old')
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  read = ckpt.read_config(str(tmp_path))
  assert (read.model.kind, read.model.token_embed_stddev, read.task.layout) == (
      'ttm', 0.01, 'packed')


@pytest.mark.parametrize('meta, message', [
    ('{"curriculum": ', 'cannot read the metadata of step {step} in {best} (JSONDecodeError: '),
    ('{"curriculum": {"stage": 6}}', 'step {step} in {best} is not a ttm_jax checkpoint (its '
     'metadata has no model config)'),
    ('[1, 2]', 'step {step} in {best} is not a ttm_jax checkpoint'),
])
def test_corrupt_or_foreign_meta_is_one_error_and_nothing_changes(tmp_path, digest, meta,
                                                                  message):
  workdir = str(shutil.copytree(SHIPPED, tmp_path / 'mult'))
  with open(os.path.join(workdir, 'best', SHIPPED_STEP, 'meta', 'metadata'), 'w') as f:
    f.write(meta)
  before = digest(workdir)
  with pytest.raises(ckpt.CheckpointError) as raised:
    ckpt.load_params(workdir, mult.get_config())
  assert str(raised.value).startswith(
      message.format(step=SHIPPED_STEP, best=os.path.join(workdir, 'best')))
  assert len(str(raised.value).splitlines()) == 1
  assert digest(workdir) == before


def _fresh_state(config):
  return train.init_state(factory.make_model(config), optim.make_optimizer(config.optim),
                          factory.make_framing(config), 0)


def test_training_into_a_shipped_export_is_refused(tmp_path, digest):
  workdir = str(shutil.copytree(SHIPPED, tmp_path / 'mult'))
  config = mult.get_config()
  before = digest(workdir)
  checkpoints = ckpt.Checkpoints(workdir)
  with pytest.raises(ckpt.CheckpointError, match=r'has a best checkpoint but no checkpoints/ '
                     r'to resume from \(a shipped export\?\); to train from it, use '
                     f'--config.train.init_from={workdir} with another --workdir'):
    checkpoints.restore_latest(*_fresh_state(config), config)
  checkpoints.close()
  assert {k: v for k, v in digest(workdir).items() if not k.startswith('checkpoints')} == before


def test_no_readable_latest_step_is_an_error_not_a_fresh_start(tmp_path, digest):
  config = mult.get_config('runlocal')
  params, train_state = _fresh_state(config)
  checkpoints = ckpt.Checkpoints(str(tmp_path))
  for step in (1, 2):
    checkpoints.save(step, params, train_state, {'config': ckpt.config_sections(config)}, True)
  for step in (1, 2):
    with open(tmp_path / 'checkpoints' / str(step) / 'meta' / 'metadata', 'w') as f:
      f.write('not json')
  before = digest(tmp_path)
  with pytest.raises(ckpt.CheckpointError, match=r'none of the saved steps in .*checkpoints '
                     r'\(2, 1\) is readable'):
    checkpoints.restore_latest(params, train_state, config)
  checkpoints.close()
  assert digest(tmp_path) == before


def test_training_lock_keeps_a_second_trainer_out_until_released(tmp_path):
  workdir = str(tmp_path / 'run')
  lock = os.path.join(workdir, ckpt.LOCK_FILE)
  with ckpt.training_lock(workdir):  # Creates the workdir; a second open file cannot lock it.
    assert open(lock).read() == f'{os.getpid()}\n'
    with pytest.raises(ckpt.CheckpointError, match=rf'is being trained by another process '
                       rf'\(pid {os.getpid()}\); wait for it'):
      with ckpt.training_lock(workdir):
        pass
  assert os.listdir(workdir) == []  # Released: the file is gone...
  with ckpt.training_lock(workdir):  # ...and the lock is taken again.
    pass
  with pytest.raises(RuntimeError, match='boom'):
    with ckpt.training_lock(workdir):
      raise RuntimeError('boom')
  with ckpt.training_lock(workdir):  # Also released when the body raised.
    pass
  assert os.listdir(workdir) == []


def test_training_lock_of_a_file_removed_under_it_locks_the_new_one(tmp_path, monkeypatch):
  """A process that opened the lock file just before its holder removed it and let go."""
  workdir = str(tmp_path)
  path = os.path.join(workdir, ckpt.LOCK_FILE)
  flock, calls = fcntl.flock, []

  def flock_then_replace(f, operation):
    flock(f, operation)
    if not calls:  # The first file locked is removed and replaced, as a releasing holder would.
      os.remove(path)
      open(path, 'w').close()
    calls.append(os.fstat(f.fileno()).st_ino)

  monkeypatch.setattr(fcntl, 'flock', flock_then_replace)
  with ckpt.training_lock(workdir):
    assert len(calls) == 2 and calls[0] != calls[1]
    assert os.stat(path).st_ino == calls[1] and open(path).read() == f'{os.getpid()}\n'
