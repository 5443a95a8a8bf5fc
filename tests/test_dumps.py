"""Tests for the trace dump format (ttm_jax.dumps)."""

import json
import os
import threading

import numpy as np
import pytest

from tests import synthetic
from ttm_jax import dump_files
from ttm_jax import dumps


@pytest.fixture(name='sequence')
def fixture_sequence():
  return synthetic.sequence('123×45', seed=1)


def test_synthetic_records_have_standard_keys_and_paper_shapes(sequence):
  records, info = sequence
  assert set(info) >= dumps.INFO_KEYS
  assert info['num_steps'] == 5  # 5535 + <EOS>
  for record in records:
    assert set(record) == dumps.RECORD_KEYS
    assert record['shape'] == record['data'].shape
    assert set(record['metadata']) >= set(dumps.METADATA_KEYS)
  step0 = {r['name']: r for r in records if r['metadata']['step'] == 0}
  expected = {'inputs': (11,), 'memory_in': (96, 128), 'memory_out': (96, 128),
              'read_weights': (16, 96 + 11), 'write_weights': (96, 96 + 11 + 16),
              'attention/layer0': (4, 16, 16), 'outputs': (16, 128), 'logits': (13,),
              'prediction': ()}
  for name, shape in expected.items():
    assert step0[name]['shape'] == shape, name
  assert step0['inputs']['type'] == 'tokens' and step0['prediction']['type'] == 'scalar'


def test_round_trip(tmp_path, sequence):
  records, info = sequence
  path = dump_files.write_sequence(tmp_path, records, info)
  loaded = dump_files.load_sequence(path)
  assert loaded.info == info
  assert len(loaded.records) == len(records)
  for original, back in zip(records, loaded.records):
    assert set(back) == dumps.RECORD_KEYS
    assert back['name'] == original['name'] and back['type'] == original['type']
    assert back['shape'] == original['shape'] and back['metadata'] == original['metadata']
    assert back['data'].dtype == original['data'].dtype
    np.testing.assert_array_equal(back['data'], original['data'])
  assert loaded.steps == list(range(5))
  assert loaded.at_step(2)['memory_in']['metadata']['step'] == 2


def test_recorder_groups_by_sequence_and_converts_numpy_metadata():
  recorder = dumps.Recorder(run='r')
  recorder.set_context(epoch=2, batch=7)
  recorder.add('memory_in', np.zeros((3, 4)), step=np.int64(0), example=0, module='memory')
  recorder.add('memory_in', np.ones((3, 4)), step=0, example=1, module='memory')
  recorder.add('inputs', np.arange(5), 'tokens', step=1, example=0, module='input')
  assert recorder.sequences() == [('r', 2, 7, 0), ('r', 2, 7, 1)]
  first = recorder.records(('r', 2, 7, 0))
  assert [r['name'] for r in first] == ['memory_in', 'inputs']
  assert type(first[0]['metadata']['step']) is int  # pylint: disable=unidiomatic-typecheck
  with pytest.raises(dumps.DumpError, match='unknown type'):
    recorder.add('x', np.zeros(2), 'image', step=0)
  with pytest.raises(dumps.DumpError, match='tokens holds float'):
    recorder.add('x', np.zeros(2), 'tokens', step=0)


def test_write_rejects_bad_records(tmp_path, sequence):
  records, info = sequence
  bad = dict(records[0], shape=(1, 2))
  with pytest.raises(dumps.DumpError, match=r"shape \(1, 2\) != data shape"):
    dump_files.write_sequence(tmp_path, [bad], info)
  with pytest.raises(dumps.DumpError, match='record keys'):
    dump_files.write_sequence(tmp_path, [{'name': 'x', 'data': np.zeros(1)}], info)
  with pytest.raises(dumps.DumpError, match='lacks'):
    dump_files.write_sequence(tmp_path, records, {'problem': '1×1'})
  assert not list(tmp_path.iterdir())


def test_truncated_file_rejected(tmp_path, sequence):
  path = dump_files.write_sequence(tmp_path, *sequence)
  size = path.stat().st_size
  with open(path, 'r+b') as f:
    f.truncate(size // 2)
  with pytest.raises(dumps.DumpError) as info:
    dump_files.load_sequence(path)
  message = str(info.value)
  assert str(path) in message and 'truncated' in message and '\n' not in message


def test_garbage_and_missing_files_rejected(tmp_path):
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(os.urandom(4096))
  with pytest.raises(dumps.DumpError, match='garbage.npz: corrupt'):
    dump_files.load_sequence(garbage)
  with pytest.raises(dumps.DumpError, match='no such dump file'):
    dump_files.load_sequence(tmp_path / 'missing.npz')
  with pytest.raises(dumps.DumpError, match='no dump index'):
    dump_files.load_index(tmp_path)
  (tmp_path / 'index.json').write_text('{"format": "ttm_jax.dump_index", "vers')
  with pytest.raises(dumps.DumpError, match='index.json: corrupt dump index'):
    dump_files.load_index(tmp_path)
  other = tmp_path / 'other.npz'
  np.savez(other, x=np.zeros(3))
  with pytest.raises(dumps.DumpError, match='not a ttm_jax dump'):
    dump_files.load_sequence(other)


def test_index_lists_sequences_and_replaces_rewrites(tmp_path):
  for example in range(3):
    dump_files.write_sequence(tmp_path, *synthetic.sequence('12×3', example=example,
                                                            d=8, m=4, r=2))
  dump_files.write_sequence(tmp_path, *synthetic.sequence('7×8', example=1, d=8, m=4,
                                                          r=2))
  entries = dump_files.load_index(tmp_path)
  assert [e['metadata']['example'] for e in entries] == [0, 2, 1]
  assert [e['info']['problem'] for e in entries] == ['12×3', '12×3', '7×8']
  for entry in entries:
    assert dump_files.load_sequence(entry['path']).info == entry['info']
  assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith('.')) == [
      'index.json', 'synthetic-e0000-b000000-x000.npz', 'synthetic-e0000-b000000-x001.npz',
      'synthetic-e0000-b000000-x002.npz']


def test_index_updated_atomically_while_read(tmp_path):
  """A reader polling during many writes always sees a complete, valid index."""
  small = dict(d=8, m=4, r=2, n=6)
  dump_files.write_sequence(tmp_path, *synthetic.sequence('1×2', **small))
  done = threading.Event()
  seen, errors = [], []

  def writer():
    for example in range(1, 40):
      dump_files.write_sequence(tmp_path, *synthetic.sequence('1×2', example=example,
                                                              **small))
    done.set()

  thread = threading.Thread(target=writer)
  thread.start()
  while not done.is_set():
    try:
      seen.append(len(dump_files.load_index(tmp_path)))
      json.loads((tmp_path / 'index.json').read_bytes())
    except (dumps.DumpError, ValueError) as e:
      errors.append(e)
  thread.join()
  assert not errors
  assert seen == sorted(seen) and len(dump_files.load_index(tmp_path)) == 40
  assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
