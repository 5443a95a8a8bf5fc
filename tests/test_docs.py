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


@pytest.mark.parametrize('program', ['tools/viewer.py', 'tools/plot.py', 'tools/bench.py'])
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


@pytest.mark.slow
def test_shipped_model_commands_run(tmp_path):
  """Eval (on a few problems), predict, demo, trace, the viewer's screenshot and plot on a
  copy of the shipped model, as the usage block writes them."""
  shipped = tmp_path / 'mult'
  shutil.copytree(ROOT / 'checkpoints' / 'mult', shipped,
                  ignore=shutil.ignore_patterns('dumps'))
  outputs = {}
  for argv, stdin in COMMANDS:
    line = ' '.join(argv)
    if 'checkpoints/mult' not in line or argv[0] == 'main.py' and '--mode=' not in line or \
        argv[0] == 'tools/viewer.py' and '--screenshot' not in line:
      continue  # Training runs, and the viewer's window.
    argv = [a.replace('checkpoints/mult', str(shipped)).replace('/tmp/curves', str(tmp_path))
            for a in argv]
    argv = [str(tmp_path / 'shot.png') if a == 'out.png' else a for a in argv]
    if '--mode=eval' in line:
      argv += ['--config.eval.num_per_size=20', '--config.eval.sizes=2x2']
    if '--mode=demo' in line:
      stdin = '12x34\nquit\n'
    done = run(argv, stdin)
    if argv[0] == 'tools/viewer.py' and done.returncode == 2 and 'OpenGL' in done.stderr:
      pytest.skip(f'no headless OpenGL: {done.stderr.strip()}')
    assert done.returncode == 0, f'{line}\n{done.stderr[-2000:]}'
    outputs[line] = done.stdout
  predicted = next(out for line, out in outputs.items() if '--mode=predict' in line)
  assert predicted.split() == ['5535', '56']
  assert (shipped / 'dumps' / 'index.json').exists()
  assert (tmp_path / 'shot.png').stat().st_size > 10_000
  assert (tmp_path / 'training.png').exists()
  assert json.loads((shipped / 'eval.json').read_text())['rows'][0]['count'] == 20


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
