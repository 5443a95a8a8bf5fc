"""The numbers of the documents are the numbers of the files they come from (issue 34): the
README's results table is checkpoints/mult/eval.json, its stage table is what
`tools/plot.py --stages` makes of checkpoints/mult/metrics.jsonl, and the ablation tables of
docs/memory.md are what `tools/ablate.py --report` makes of the docs/*.json they name."""

import json
import os
import re

import numpy as np
import pytest

from tools import ablate
from tools import plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'checkpoints', 'mult')


def _tables(text):
  """`[(line number of the header, header cells, [row cells, ...]), ...]` of the Markdown
  tables in `text`."""
  tables, lines = [], text.splitlines()
  i = 0
  while i < len(lines):
    if lines[i].startswith('|') and i + 1 < len(lines) and lines[i + 1].startswith('|---'):
      cells = lambda line: [c.strip() for c in line.strip().strip('|').split('|')]
      rows, j = [], i + 2
      while j < len(lines) and lines[j].startswith('|'):
        rows.append(cells(lines[j]))
        j += 1
      tables.append((i + 1, cells(lines[i]), rows))
      i = j
    else:
      i += 1
  return tables


def _table(text, first_cells):
  (table,) = [t for t in _tables(text) if t[1][:len(first_cells)] == first_cells]
  return table


def _readme():
  return open(os.path.join(ROOT, 'README.md')).read()


def test_readme_results_table_is_the_shipped_eval_json():
  _, header, rows = _table(_readme(), ['size', 'problems', 'which', 'exact match'])
  recorded = json.load(open(os.path.join(SHIPPED, 'eval.json')))['rows']
  assert len(rows) == len(recorded)
  for cells, row in zip(rows, recorded):
    size = cells[0].replace('×', 'x').split(' (')[0]
    assert (size, cells[1], cells[2]) == (row['size'], str(row['count']), row['problems'])
    assert cells[3] == f'{100 * row["exact_match"]:.2f}%', (cells, row)
    assert cells[4] == f'{100 * row["position_accuracy"]:.2f}%', (cells, row)
    assert cells[0].endswith('(never trained)') == row['longer_than_trained']


def test_readme_stage_table_is_the_shipped_metrics():
  _, header, rows = _table(_readme(), ['stage', 'operands', 'from minute'])
  assert header == ['stage', 'operands', 'from minute', 'minutes', 'steps']
  made = _tables(plot.stage_table(plot.read_metrics(SHIPPED)[1]))[0]
  assert made[1][:6] == ['stage', 'operands', 'from step', 'from minute', 'steps', 'minutes']
  assert [[c[0], c[1], c[3], c[5], c[4]] for c in made[2]] == rows


def _plain(cell):
  """A cell without emphasis and footnote marks, commas and spaces."""
  return re.sub(r'\*\*|\\\*|,| ', '', cell)


def _cells(runs, column):
  """What `tools/ablate.py --report` puts in `column` for a variant's runs (plain)."""
  sizes = [row['size'] for row in runs[0]['rows']]
  size = column.replace('×', 'x')
  if size in sizes:
    return ablate._spread([r['rows'][sizes.index(size)]['exact_match'] for r in runs])  # pylint: disable=protected-access
  values = {
      'seeds': str(len(runs)),
      'parameters': str(runs[0]['parameters']),
      'forward MFLOPs (3×3)': f'{runs[0]["forward_flops"] / 1e6:.2f}',
      'examples/s': f'{np.median([r["examples_per_second"] for r in runs]):.0f}',
      'examples': f'{np.median([r["examples"] for r in runs]):.0f}',
      'minutes': f'{np.median([r["train_seconds"] for r in runs]) / 60:.0f}',
      'stage': '/'.join(str(r['stage']) for r in runs),
  }
  minutes = [r['train_seconds'] / 60 for r in runs]
  values['minutes, median (range)'] = (f'{np.median(minutes):.0f} ({min(minutes):.0f}-'
                                       f'{max(minutes):.0f})')
  values['stage at the end'] = '/'.join(  # A run that passed its last stage: 'passed'.
      'passed' if str(r['finished']).startswith('passed') else str(r['stage']) for r in runs)
  assert column in values, f'a column the test does not know: {column!r}'
  return values[column]


# docs/memory.md's names of the variants, where they say more than the name.
_VARIANT_NAMES = {'causal Transformer, stream framing': 'transformer'}


def test_memory_md_ablation_tables_are_their_json():
  text = open(os.path.join(ROOT, 'docs', 'memory.md')).read()
  tables = [t for t in _tables(text) if t[1][0] == 'variant']
  assert len(tables) >= 2
  lines = text.splitlines()
  for line, header, rows in tables:
    # The JSON is the --out of the last ablate command before the table.
    outs = re.findall(r'--out=(docs/[\w.-]+)', '\n'.join(lines[:line]))
    assert outs, f'docs/memory.md line {line}: no tools/ablate.py command before the table'
    results = json.load(open(os.path.join(ROOT, outs[-1] + '.json')))
    for cells in rows:
      name = _VARIANT_NAMES.get(cells[0], cells[0].split(' (')[0])
      runs = [r for r in results if r['variant'] == name]
      assert runs, f'docs/memory.md line {line}: no runs of {name!r} in {outs[-1]}.json'
      for column, cell in zip(header[1:], cells[1:]):
        expected = _cells(runs, column)
        if column.startswith('stage'):  # '7, 7, 6' or '7/7/6'.
          cell = cell.replace(', ', '/')
        assert _plain(cell) == _plain(expected), (outs[-1], name, column, cell, expected)


@pytest.mark.parametrize('name', ['ablations-problem', 'ablations-problem-80k',
                                  'ablations-stream'])
def test_ablation_reports_are_their_json(name):
  results = json.load(open(os.path.join(ROOT, 'docs', name + '.json')))
  _, header, rows = _tables(open(os.path.join(ROOT, 'docs', name + '.md')).read())[0]
  for cells in rows:
    runs = [r for r in results if r['variant'] == cells[0]]
    for column, cell in zip(header[1:], cells[1:]):
      assert _plain(cell) == _plain(_cells(runs, column)), (name, cells[0], column)
