"""Tests for the documentation: every relative link and image in README.md and docs/ points at
a file (and heading) that exists, and every command of the README's usage block parses; the
slow tests run the cheap ones for real."""

import argparse
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from ttm_jax import tokens

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
DOCS = [README, *sorted((ROOT / 'docs').glob('*.md')), ROOT / 'docs' / 'experiments' / 'README.md']
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
HTML_LINK = re.compile(r'<(?:img|a)\s[^>]*?(?:src|href)="([^"]+)"')
FENCE = re.compile(r'^```.*?^```', re.S | re.M)
INLINE_CODE = re.compile(r'`[^`\n]*`')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*$', re.M)


def prose(path):
  """The text of a markdown file without code blocks and code spans."""
  return INLINE_CODE.sub('', FENCE.sub('', path.read_text()))


def anchor(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
  return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def relative_links():
  """`(markdown file, target)` of every link and image that is not a URL."""
  found = []
  for doc in DOCS:
    text = prose(doc)
    for target in LINK.findall(text) + HTML_LINK.findall(text):
      if not re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto: ...
        found.append((doc, target))
  return found


LINKS = relative_links()


def test_the_documents_have_links():
  assert len(LINKS) >= 30 and {doc for doc, _ in LINKS} >= {README, ROOT / 'docs' / 'performance.md'}


@pytest.mark.parametrize('doc, target', LINKS,
                         ids=[f'{d.relative_to(ROOT)}->{t}' for d, t in LINKS])
def test_relative_link_points_at_a_file_and_heading(doc, target):
  path, _, fragment = target.partition('#')
  path = (doc.parent / path).resolve() if path else doc
  assert path.exists(), f'{doc.relative_to(ROOT)}: {target} does not exist'
  if fragment and path.suffix == '.md':
    anchors = {anchor(h) for h in HEADING.findall(FENCE.sub('', path.read_text()))}
    assert fragment in anchors, f'{doc.relative_to(ROOT)}: no heading #{fragment} in {path.name}'


# ---- The README's commands. ----

TWO_COMMANDS = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && '
    'python main.py --config=configs/mult.py',
    '. .venv/bin/activate && python -m pytest -q')


def usage_commands():
  """The usage block's commands: `(argv from 'python' on, stdin text or None)`."""
  section = README.read_text().split('\n## Usage\n', 1)[1]
  block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
  commands = []
  for line in block.replace('\\\n', ' ').splitlines():
    words = shlex.split(line, comments=True)
    if not words:
      continue
    stdin = None
    if '|' in words:
      producer, words = words[:words.index('|')], words[words.index('|') + 1:]
      assert producer[0] == 'printf', line
      stdin = producer[1].encode().decode('unicode_escape').encode('latin-1').decode()
    assert words[0] == 'python', line
    commands.append((words[1:], stdin))
  return commands


COMMANDS = usage_commands()


def commands_of(program):
  return [(argv, stdin) for argv, stdin in COMMANDS if argv[0] == program]


def test_readme_keeps_the_two_commands():
  text = README.read_text()
  for command in TWO_COMMANDS:
    assert f'```bash\n{command}\n```' in text


def test_usage_block_shows_every_mode_and_tool():
  main = [' '.join(argv) for argv, _ in commands_of('main.py')]
  modes = {re.search(r'--mode=(\w+)', c).group(1) if '--mode=' in c else 'train' for c in main}
  assert modes == {'train', 'eval', 'predict', 'demo', 'trace'}
  for part in (':runlocal', ':stage=', '--config.train.batch_size=', '--config.train.init_from=',
               '--step=', '--problem='):
    assert any(part in c for c in main), part
  tools = [' '.join(argv) for argv, _ in COMMANDS if argv[0].startswith('tools/')]
  for part in ('tools/viewer.py', '--screenshot', 'tools/plot.py', 'tools/profile.py',
               'tools/bench.py'):
    assert any(part in c for c in tools), part
  assert len(COMMANDS) == len(main) + len(tools)  # Nothing else in the block.


# Run in a fresh interpreter per program: absl flags are process-wide, and config_flags reads
# the overrides (`--config.x.y=...`) from sys.argv.
ABSL_PARSE = '''
import importlib.util, json, sys
from absl import flags
from ttm_jax import tokens
program, commands = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location('program', program)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for argv in commands:
  sys.argv = argv
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(argv)
    config = flags.FLAGS['config'].value
    config.keys()  # Loads the config file and applies the overrides.
    problem = flags.FLAGS['problem'].value if 'problem' in flags.FLAGS else None
    if problem is not None:
      tokens.parse_problem(problem, config.task.max_digits)
  except Exception as e:
    sys.exit(f'{" ".join(argv)}: {type(e).__name__}: {e}')
  print('parsed', ' '.join(argv))
'''


@pytest.mark.parametrize('program', ['main.py', 'tools/profile.py'])
def test_absl_commands_parse(program):
  commands = [argv for argv, _ in commands_of(program)]
  assert commands
  done = subprocess.run([sys.executable, '-c', ABSL_PARSE, program, json.dumps(commands)],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.count('parsed') == len(commands)


def test_the_parse_check_catches_a_bad_override():
  """The check above fails on what it should: a typo in a config field, a bad problem."""
  for argv in (['main.py', '--config=configs/mult.py', '--config.train.batchsize=3'],
               ['main.py', '--config=configs/mult.py', '--mode=trace', '--problem=12y3']):
    done = subprocess.run([sys.executable, '-c', ABSL_PARSE, 'main.py', json.dumps([argv])],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode != 0 and 'parsed' not in done.stdout


def test_predict_input_parses():
  (_, stdin), = [(argv, stdin) for argv, stdin in commands_of('main.py') if stdin]
  problems = stdin.splitlines()
  assert len(problems) >= 2
  for problem in problems:
    tokens.parse_problem(problem)


class _Parsed(Exception):
  """Raised with the namespace once a tool's argparse has parsed its arguments."""


@pytest.mark.parametrize('program', ['tools/viewer.py', 'tools/plot.py', 'tools/bench.py',
                                     'tools/length.py'])
def test_argparse_tool_commands_parse(program, monkeypatch):
  commands = [argv for argv, _ in commands_of(program)]
  assert commands
  spec = importlib.util.spec_from_file_location(f'readme_{pathlib.Path(program).stem}',
                                                ROOT / program)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  main = module.main if hasattr(module, 'main') else module.cli.main  # viewer.py: cli.main.
  parse = argparse.ArgumentParser.parse_args

  def parse_and_stop(self, args=None, namespace=None):
    raise _Parsed(parse(self, args, namespace))
  monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_and_stop)
  for argv in commands:
    monkeypatch.setattr(sys, 'argv', [str(ROOT / argv[0]), *argv[1:]])
    with pytest.raises(_Parsed):  # An unknown option would exit (SystemExit) instead.
      main()


# ---- The cheap commands, for real. ----

def run(argv, stdin=None, timeout=300):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, *argv], input=stdin, cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env=env)


def clone_of_the_working_tree(where: pathlib.Path) -> pathlib.Path:
  """A git repository at `where` holding the checkout's files as they are now (tracked, and
  untracked but not ignored), committed: a user's fresh clone of this version."""
  listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                          cwd=ROOT, capture_output=True, check=True).stdout.decode()
  for name in filter(None, listed.split('\0')):
    if (ROOT / name).is_file():  # Not a file deleted in the working tree.
      (where / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(ROOT / name, where / name)
  git = ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com']
  for command in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'clone']):
    subprocess.run(git + command, cwd=where, check=True, capture_output=True)
  return where


def git_status(clone: pathlib.Path) -> str:
  return subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=clone,
                        capture_output=True, text=True, check=True).stdout


def view_and_properties(png):
  """The screenshot's 3D view and properties panel (the top 540 rows: what the trace shows),
  without the timeline's status line and the frame rates, which vary from run to run."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  return np.asarray(Image.open(png).convert('RGB'), np.int16)[:540]


def same_picture(a, b) -> bool:
  """At most 0.2% of the pixels differ visibly (llvmpipe may round an edge differently on
  another CPU; a different example, step or detail level changes far more)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  return a.shape == b.shape and np.mean(np.abs(a - b).max(-1) > 40) <= 0.002


def test_the_usage_commands_leave_a_clone_clean_and_give_the_readme_picture(tmp_path,
                                                                           skip_or_fail):
  """The usage block's commands on the shipped model, as written, run in a fresh clone (eval
  on a few problems; the training commands, the viewer's window, profile and bench left out),
  with the stage table of the Results section: `git status` stays clean (the shipped model is
  only read; outputs go to ignored `runs/`), and the viewer's screenshot is the README's
  picture, before and after another `--mode=eval` adds its traces."""
  clone = clone_of_the_working_tree(tmp_path / 'clone')
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}

  def run_here(argv, stdin=None):
    return subprocess.run([sys.executable, *argv], input=stdin, cwd=clone, capture_output=True,
                          text=True, timeout=300, env=env)

  outputs, screenshot, no_opengl = {}, None, ''
  commands = [(argv, stdin) for argv, stdin in COMMANDS
              if argv[0] == 'main.py' and '--mode=' in ' '.join(argv)
              and '--workdir=checkpoints/mult' in argv or
              argv[0] == 'tools/viewer.py' and '--screenshot' in argv or
              argv[0] == 'tools/plot.py']
  commands.append((['tools/plot.py', 'checkpoints/mult', '--stages'], None))  # Results.
  evaluate = next(argv for argv, _ in commands if '--mode=eval' in argv)
  for argv, stdin in commands:
    line = ' '.join(argv)
    argv = [a.replace('/tmp/curves', str(tmp_path / 'curves')) for a in argv]
    if '--mode=eval' in line:
      argv = argv + ['--config.eval.sizes=2x2', '--config.eval.num_per_size=20']
    if '--mode=demo' in line:
      stdin = '12x34\nquit\n'
    done = run_here(argv, stdin)
    if argv[0] == 'tools/viewer.py' and done.returncode == 2 and 'OpenGL' in done.stderr:
      no_opengl = done.stderr.strip()
      continue
    assert done.returncode == 0, f'{line}\n{done.stderr[-2000:]}'
    outputs[line] = done.stdout
    if '--screenshot' in argv:
      screenshot = clone / argv[argv.index('--screenshot') + 1]
  predicted = next(out for line, out in outputs.items() if '--mode=predict' in line)
  assert predicted.split() == ['5535', '56']
  traced = next(out for line, out in outputs.items() if '--mode=trace' in line)
  assert traced.splitlines()[0] == '92×98 = 9016 (correct)'
  assert (tmp_path / 'curves' / 'training.png').exists()
  assert git_status(clone) == ''
  if no_opengl:
    skip_or_fail(f'the screenshot needs headless OpenGL (EGL): {no_opengl}')
  first = view_and_properties(screenshot)
  assert same_picture(first, view_and_properties(ROOT / 'docs' / 'viewer-heldout.png'))
  # The other order: eval's traces after the trace's; the same picture.
  assert run_here(evaluate + ['--config.eval.sizes=1x1,2x2', '--config.eval.num_per_size=20']
                  ).returncode == 0
  viewer = next(argv for argv, _ in commands if '--screenshot' in argv)
  assert run_here(viewer).returncode == 0
  assert same_picture(first, view_and_properties(screenshot))
  assert git_status(clone) == ''


@pytest.mark.slow
def test_runlocal_training_then_eval_of_a_saved_step(tmp_path):
  train, = [argv for argv, _ in commands_of('main.py') if ':runlocal' in ' '.join(argv)
            and '--mode' not in ' '.join(argv)]
  evaluate, = [argv for argv, _ in commands_of('main.py') if '--step=' in ' '.join(argv)]
  for argv in (train, evaluate):
    done = run([a.replace('runs/tiny', str(tmp_path / 'tiny')) for a in argv])
    assert done.returncode == 0, f'{" ".join(argv)}\n{done.stderr[-2000:]}'
  step = re.search(r'--step=(\d+)', ' '.join(evaluate)).group(1)
  assert json.loads((tmp_path / 'tiny' / f'eval-step{step}.json').read_text())['step'] == int(step)
