"""The package's shape: no import cycles in `ttm_jax/`, the layering the code relies on
(tracing below the model, evaluation below training), and no module over 350 lines."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'ttm_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph():
  """Module -> the `ttm_jax` modules it imports (anywhere in the file)."""
  modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        targets = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
      else:
        continue
      edges |= {t for t in targets if t in modules and t != name}
    graph[name] = edges - {'ttm_jax'}  # The package's __init__ imports nothing eagerly.
  return graph


def find_cycle(graph):
  """A list of modules forming an import cycle, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycles():
  graph = import_graph()
  assert {'ttm_jax.train', 'ttm_jax.evaluate', 'ttm_jax.trace'} <= set(graph)
  assert find_cycle(graph) is None


def test_layers():
  graph = import_graph()
  assert graph['ttm_jax.trace'] <= {'ttm_jax.dumps'}
  assert 'ttm_jax.train' not in graph['ttm_jax.evaluate']
  assert 'ttm_jax.evaluate' in graph['ttm_jax.train']


@pytest.mark.parametrize('path', sorted(PACKAGE.rglob('*.py')), ids=lambda p: p.name)
def test_no_module_over_350_lines(path):
  assert len(path.read_text().splitlines()) <= 350
