"""`python main.py ...` as a user runs it: each bad input is one `error:` line, the right exit
code, and nothing saved is modified."""

import os
import shutil
import signal
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')
(SHIPPED_STEP,) = os.listdir(os.path.join(SHIPPED, 'best'))  # The one step an export holds.


@pytest.fixture(name='workdir')
def fixture_workdir(tmp_path):
  """A private copy of the shipped checkpoint."""
  return str(shutil.copytree(SHIPPED, tmp_path / 'mult'))


def main(*args, stdin=''):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, input=stdin,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('args, error', [
    (['--config=configs/mult.py:runlocal', '--config.train.steps_per_epoch=0'],
     'error: config.train.steps_per_epoch: expected an integer at least 1, got 0'),
    (['--config=configs/mult.py', '--config.eval.batch_size=0'],
     'error: config.eval.batch_size: expected an integer at least 1, got 0'),
    (['--config=configs/mult.py', '--config.eval.sizes=1x1x1'],
     """error: config.eval.sizes: '1x1x1': expected rows like "1x1,2x1,3x3,1-9999" (AxB: """
     'digits of each operand, at least 1x1; L-H: both operands from L to H)'),
    (['--config=configs/mult.py', '--config.eval.sizes=0x1'],
     """error: config.eval.sizes: '0x1': expected rows like "1x1,2x1,3x3,1-9999" (AxB: """
     'digits of each operand, at least 1x1; L-H: both operands from L to H)'),
    (['--config=configs/mult.py', '--config.task.max_digits=2'],
     "error: config.task.max_digits: 2 is too small for the stages '1,5,2,6,3,7,4': they need "
     '4'),
    (['--config=configs/mult.py:runlocal=False', '--config.model.num_heads=5'],
     'error: config.model.hidden_size: 64 is not divisible by config.model.num_heads=5'),
    (['--config=configs/mult.py:runlocal=maybe'],
     "error: config argument runlocal: expected true, false, 1 or 0, got 'maybe'"),
    (['--config=configs/mult.py:stage=abc'],
     "error: config argument stage: expected a non-negative integer, got 'abc'"),
    (['--config=configs/mult.py', '--config.train.batchsize=3'],
     'error: config.train.batchsize: unknown field (Did you mean "batch_size" instead of '
     '"batchsize"?)'),
    (['--config=configs/mult.py', '--config.train.augment=maybe'],
     "error: config.train.augment: 'maybe': expected true or false"),
    (['--config=configs/mult.py', '--config.train.batch_size=abc'],
     "error: config.train.batch_size: 'abc': invalid literal for int() with base 10: 'abc'"),
    (['--config=configs/mult.py', '--mode=predict', '--step=3'],
     'error: --step: only with --mode=eval, not --mode=predict'),
    (['--config=configs/mult.py', '--mode=eval', '--problem=1x2'],
     'error: --problem: only with --mode=trace, not --mode=eval'),
    (['--config=configs/mult.py', '--mode=trace'],
     'error: --problem: required with --mode=trace, e.g. --problem=123x45'),
    (['--config=configs/mult.py', '--mode=predict', '--out=/tmp/x'],
     'error: --out: only with --mode=eval or --mode=trace, not --mode=predict'),
])
def test_bad_config_or_flags_exit_2_before_anything_runs(workdir, digest, args, error):
  before = digest(workdir)
  result = main(*args, f'--workdir={workdir}')
  assert (result.returncode, result.stderr) == (2, error + '\n')
  assert digest(workdir) == before


def test_missing_config_file_is_one_line(tmp_path):
  result = main('--config=configs/nope.py', f'--workdir={tmp_path}')
  assert (result.returncode, result.stderr) == (
      2, "error: cannot load the config file: [Errno 2] No such file or directory: "
      "'configs/nope.py'\n")
  assert not os.listdir(tmp_path)


def test_predict_from_a_user_s_point_of_view(workdir, digest):
  before = digest(workdir)
  lines = ['12x3', '١٢×٣', '１２×３', '99999x2', '', '7' * 5000 + 'x2', '999 * 9']
  result = main('--config=configs/mult.py', f'--workdir={workdir}', '--mode=predict',
                stdin=''.join(line + '\n' for line in lines))
  malformed = ('expected two non-negative integers (ASCII digits) joined by ×, * or x, like '
               '123×45')
  assert result.stdout.splitlines() == [
      '36',
      f"error: malformed problem '١٢×٣': {malformed}",
      f"error: malformed problem '１２×３': {malformed}",
      "error: problem '99999x2': an operand has 5 digits; the model was trained on operands up "
      'to 4 digits',
      'error: empty line: expected a problem like 123×45',
      f"error: problem {'7' * 40!r}...: an operand has 5000 digits; the model was trained on "
      'operands up to 4 digits',
      '8991']
  assert result.returncode == 1 and result.stderr == ''
  assert digest(workdir) == before


def test_undecodable_input_is_an_error_line(workdir):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/mult.py', f'--workdir={workdir}',
       '--mode=predict'], cwd=ROOT, input=b'\xff\xfe\n7x8\n', capture_output=True, timeout=300)
  assert result.stdout.decode().splitlines() == [
      "error: malformed problem '\ufffd\ufffd': expected two non-negative integers (ASCII "
      'digits) joined by ×, * or x, like 123×45', '56']
  assert result.returncode == 1


@pytest.mark.parametrize('mode', ['eval', 'predict', 'demo', 'trace'])
def test_corrupt_meta_is_one_line_in_every_mode(workdir, digest, mode):
  with open(os.path.join(workdir, 'best', SHIPPED_STEP, 'meta', 'metadata'), 'w') as f:
    f.write('{"curriculum": ')
  before = digest(workdir)
  extra = ['--problem=12x3'] if mode == 'trace' else []
  result = main('--config=configs/mult.py', f'--workdir={workdir}', f'--mode={mode}', *extra,
                stdin='12x3\n')
  best = os.path.join(workdir, 'best')
  assert result.stderr == (f'error: cannot read the metadata of step {SHIPPED_STEP} in {best} '
                           '(JSONDecodeError: Expecting value: line 1 column 16 (char 15))\n')
  assert result.returncode == 1
  assert digest(workdir) == before


def test_missing_workdir_is_one_line_and_is_not_created(tmp_path):
  missing = str(tmp_path / 'nope')
  result = main('--config=configs/mult.py', f'--workdir={missing}', '--mode=predict',
                stdin='12x3\n')
  assert result.stderr == f'error: no checkpoint in {missing} (looked in best/ and checkpoints/)\n'
  assert result.returncode == 1 and not os.path.exists(missing)


def test_training_into_the_shipped_export_is_refused(workdir, digest):
  before = digest(workdir)
  result = main('--config=configs/mult.py', f'--workdir={workdir}')
  assert result.returncode == 1
  assert result.stderr.startswith(f'error: {workdir} has a best checkpoint but no checkpoints/')
  assert len(result.stderr.splitlines()) == 1
  assert {k: v for k, v in digest(workdir).items() if not k.startswith('checkpoints')} == before


def _run_in_process(capsys, mode, workdir, config=None, problem=None):
  """`cli.run` as main.py calls it: `(exit code, stdout, stderr)`."""
  from configs import mult  # pylint: disable=g-import-not-at-top
  from ttm_jax import cli  # pylint: disable=g-import-not-at-top
  config = config or mult.get_config()
  config.eval.update(sizes='1x1', num_per_size=10)
  out = workdir if mode in ('eval', 'trace') else None  # Not runs/<name>-outputs of an export.
  code = cli.run(mode, config, workdir, problem=problem if mode == 'trace' else None, out=out)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.mark.parametrize('text, why', [
    ('[1, 2]', 'its model and task are not JSON objects'),
    ('{"model": 3, "task": {}, "train": {}}', 'its model and task are not JSON objects'),
    ('{"model": {}, "task": {}, "train": {}}', 'AttributeError: '),  # Fields missing.
])
@pytest.mark.parametrize('mode', ['eval', 'trace'])
def test_a_config_json_of_the_wrong_shape_is_one_line(workdir, digest, capsys, text, why, mode):
  # Issue 34: valid JSON, but not a config: it used to be a traceback.
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(text)
  before = digest(workdir)
  code, out, err = _run_in_process(capsys, mode, workdir, problem='12x3')
  assert code == 1 and out == ''
  assert err.startswith(f'error: {workdir}/config.json is not the config of a ttm_jax run ('
                        + why) and len(err.splitlines()) == 1, err
  assert digest(workdir) == before


@pytest.mark.parametrize('mode', ['eval', 'trace', 'train'])
def test_a_damaged_dump_index_is_one_line_before_the_work(workdir, tmp_path, digest, capsys,
                                                          mode):
  from configs import mult  # pylint: disable=g-import-not-at-top
  config = mult.get_config()
  if mode == 'train':  # A run of its own, tracing at its evaluations.
    workdir = str(tmp_path / 'run')
    config = mult.get_config('runlocal')
    config.trace.num_examples = 1
  dumps = 'trace-12x3' if mode == 'trace' else 'dumps'  # A trace has a folder of its own.
  os.makedirs(os.path.join(workdir, dumps), exist_ok=True)
  with open(os.path.join(workdir, dumps, 'index.json'), 'w') as f:
    f.write('{"format": "ttm_jax.dump_index", "vers')
  before = {k: v for k, v in digest(workdir).items() if k != 'config.json'}
  code, out, err = _run_in_process(capsys, mode, workdir, config, problem='12x3')
  # Training says where it trains first; nothing else comes before the error.
  assert code == 1 and out == ('' if mode != 'train' else
                               f'training in {workdir} on {len(jax.devices())} CPU device(s): '
                               'setting up the model, the data and the checkpoints\n')
  assert err.startswith(f'error: {workdir}/{dumps}/index.json: corrupt dump index') and len(
      err.splitlines()) == 1, err
  assert {k: v for k, v in digest(workdir).items() if k != 'config.json'} == before


def test_predict_into_a_pipe_closed_early_is_one_line(workdir, tmp_path):
  # `--mode=predict | head -1`: the reader leaves after one line.
  problems = ''.join(f'{i % 90 + 10}x{i % 9 + 1}\n' for i in range(3000))
  result = subprocess.run(
      ['bash', '-c', f'{sys.executable} main.py --config=configs/mult.py --workdir={workdir} '
       f'--mode=predict 2>{tmp_path}/errors | head -1; echo "${{PIPESTATUS[0]}}"'],
      cwd=ROOT, input=problems, capture_output=True, text=True, timeout=300)
  first, code = result.stdout.splitlines()
  assert first == str(10 * 1) and code == '1'
  assert open(tmp_path / 'errors').read() == (
      'error: the output was closed before everything was written (broken pipe)\n')


def test_where_commands_write():
  from ttm_jax import outputs  # pylint: disable=import-outside-toplevel
  assert outputs.output_dir(SHIPPED) == os.path.join('runs', 'mult-outputs')  # An export.
  assert outputs.output_dir(SHIPPED, '/tmp/o') == '/tmp/o'
  assert outputs.trace_dir('runs/mult-outputs', 92, 98) == 'runs/mult-outputs/trace-92x98'


def test_eval_of_an_export_writes_to_out_and_leaves_the_export_as_it_was(workdir, digest,
                                                                         tmp_path):
  before = digest(workdir)
  out = tmp_path / 'out'
  result = main('--config=configs/mult.py', f'--workdir={workdir}', '--mode=eval', f'--out={out}',
                '--config.eval.sizes=1x1', '--config.eval.num_per_size=10')
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[-1].split() == ['1x1', '81', 'all', '100.00%', '100.00%']
  assert result.stderr.splitlines()[-1] == (f'wrote {out}/eval.json and traces in {out}/dumps')
  assert sorted(os.listdir(out)) == ['dumps', 'eval.json']
  assert digest(workdir) == before


def test_ctrl_c_in_predict_says_interrupted_and_nothing_about_resuming(workdir):
  # SIGINT as from a terminal, also where the tests run in the background (which ignores it):
  # a small Python resets it, then becomes main.py.
  reset = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
           'os.execv(sys.executable, [sys.executable] + sys.argv[1:])')
  process = subprocess.Popen(
      [sys.executable, '-c', reset, 'main.py', '--config=configs/mult.py',
       f'--workdir={workdir}', '--mode=predict'], cwd=ROOT, stdin=subprocess.PIPE,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  process.stdin.write('7x8\n' * 256)  # One chunk: answered and flushed at once.
  process.stdin.flush()
  answers = [process.stdout.readline() for _ in range(256)]
  assert answers == ['56\n'] * 256
  process.send_signal(signal.SIGINT)  # While it waits for more input.
  _, stderr = process.communicate(timeout=60)
  assert (process.returncode, stderr) == (130, '\ninterrupted (--mode=predict)\n')
