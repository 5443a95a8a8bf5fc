"""Trace dumps on disk: one `.npz` file per traced sequence, listed in `index.json`.

`write_sequence` writes a sequence's records (see `dumps.py`) as arrays `r0000`, `r0001`, ...
plus a JSON header array `header` holding names, types, shapes, metadata and the sequence
info, and lists the file in `DUMP_DIR/index.json`. Both are written atomically
(`files.atomic_file`: temp file in the same folder, fsync, `os.replace`), so a concurrent reader
sees the old file or the new one, never half. `load_sequence` and `load_index` validate everything and raise one
`dumps.DumpError` whose message names the file.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import re
import zipfile
from typing import Any, Dict, List, Union

import numpy as np

from ttm_jax import dumps
from ttm_jax import files

FORMAT = 'ttm_jax.dump'
INDEX_FORMAT = 'ttm_jax.dump_index'
VERSION = 1
INDEX_NAME = 'index.json'

PathLike = Union[str, os.PathLike]


def check_writable(dump_dir: PathLike):
  """Raises what writing a dump to `dump_dir` would raise: OSError for a folder that cannot be
  written, `dumps.DumpError` for a damaged index. Called before the work whose dumps go there."""
  files.check_writable(os.fspath(dump_dir))
  if (pathlib.Path(dump_dir) / INDEX_NAME).exists():
    load_index(dump_dir)


def sequence_filename(metadata: Dict[str, Any]) -> str:
  """`[run-]eEPOCH-bBATCH-xEXAMPLE.npz` for a record's metadata; run made filename-safe."""
  run = re.sub(r'[^A-Za-z0-9_.]+', '_', metadata['run']).strip('._')
  stem = f"e{metadata['epoch']:04d}-b{metadata['batch']:06d}-x{metadata['example']:03d}"
  return f'{run}-{stem}.npz' if run else f'{stem}.npz'


def write_sequence(dump_dir: PathLike, records: List[dumps.Record], info: Dict[str, Any]
                   ) -> pathlib.Path:
  """Writes one traced sequence to `dump_dir` and lists it in `dump_dir/index.json`.

  Args:
    dump_dir: folder (created if needed).
    records: the sequence's records (validated; all share run, epoch, batch and example).
    info: sequence info with the standard keys (extra JSON-serializable keys are kept).

  Returns:
    The path of the `.npz` written (named by `sequence_filename`; a sequence written
    again replaces its file and its index entry).
  """
  dump_dir = pathlib.Path(dump_dir)
  if not records:
    raise dumps.error(str(dump_dir), 'write_sequence needs at least one record')
  records = [_with_plain_metadata(r, f'{dump_dir}: record {i}') for i, r in enumerate(records)]
  dumps.validate_info(info, f'{dump_dir}: info')
  info = dumps.plain_json(info, f'{dump_dir}: info')
  first = records[0]['metadata']
  identity = ('run', 'epoch', 'batch', 'example')
  for record in records:
    if any(record['metadata'][k] != first[k] for k in identity):
      raise dumps.error(str(dump_dir), f"record {record['name']!r} belongs to another "
                        f'sequence ({identity} differ from the first record)')
  dump_dir.mkdir(parents=True, exist_ok=True)
  path = dump_dir / sequence_filename(first)

  header = {'format': FORMAT, 'version': VERSION, 'info': info, 'records': [
      {'name': r['name'], 'type': r['type'], 'shape': list(r['shape']),
       'metadata': r['metadata']} for r in records]}
  arrays = {f'r{i:04d}': r['data'] for i, r in enumerate(records)}
  arrays['header'] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
  with files.atomic_file(path, 'wb') as f:
    np.savez(f, **arrays)

  entry = {'file': path.name, 'info': info,
           'metadata': {k: first[k] for k in identity},
           'num_records': len(records),
           'num_steps': len({r['metadata']['step'] for r in records})}
  with _index_lock(dump_dir):
    index_path = dump_dir / INDEX_NAME
    entries = load_index(dump_dir) if index_path.exists() else []
    entries = [{k: v for k, v in e.items() if k != 'path'} for e in entries
               if e['file'] != path.name]
    entries.append(entry)
    text = json.dumps({'format': INDEX_FORMAT, 'version': VERSION, 'sequences': entries},
                      indent=1)
    files.write_text(index_path, text)
  return path


def _with_plain_metadata(record: Any, where: str) -> dumps.Record:
  """`record` validated, its metadata made plain JSON (numpy ints become ints) and its
  data a numpy array (from e.g. a JAX array)."""
  if isinstance(record, dict) and isinstance(record.get('metadata'), dict):
    record = {**record, 'metadata': dumps.plain_json(record['metadata'], f'{where} metadata')}
  if isinstance(record, dict) and 'data' in record:
    record = {**record, 'data': np.asarray(record['data'])}
  dumps.validate_record(record, where)
  return record


@contextlib.contextmanager
def _index_lock(dump_dir: pathlib.Path):
  """Exclusive lock serializing index read-modify-write among writers of one folder."""
  with open(dump_dir / '.index.lock', 'a', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def load_sequence(path: PathLike) -> dumps.DumpSequence:
  """Reads and validates one sequence file written by `write_sequence`.

  Raises:
    dumps.DumpError: naming the file, if it is missing, truncated, corrupt or malformed.
  """
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise dumps.error(where, 'no such dump file')
  try:
    with np.load(path, allow_pickle=False) as npz:
      if 'header' not in npz.files:
        raise dumps.error(where, 'not a ttm_jax dump (no header)')
      header = json.loads(npz['header'].tobytes().decode())
      arrays = {k: npz[k] for k in npz.files if k != 'header'}
  except dumps.DumpError:
    raise
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise dumps.error(where, f'corrupt or truncated dump file ({type(e).__name__}: {e})') from e
  if not isinstance(header, dict) or header.get('format') != FORMAT:
    raise dumps.error(where, f'not a ttm_jax dump (format {header.get("format")!r})'
                      if isinstance(header, dict) else 'not a ttm_jax dump (bad header)')
  if header.get('version') != VERSION:
    raise dumps.error(where, f"dump version {header.get('version')!r} is not {VERSION}")
  specs = header.get('records')
  if not isinstance(specs, list) or len(specs) != len(arrays):
    raise dumps.error(where, 'header does not match the arrays stored (corrupt dump)')
  records = []
  for i, spec in enumerate(specs):
    key = f'r{i:04d}'
    if not isinstance(spec, dict) or key not in arrays:
      raise dumps.error(where, f'record {i} is missing from the file')
    shape = spec.get('shape')
    record = {'name': spec.get('name'), 'type': spec.get('type'),
              'shape': tuple(shape) if isinstance(shape, list) else shape,
              'data': arrays[key], 'metadata': spec.get('metadata')}
    dumps.validate_record(record, f'{where}: record {i}')
    records.append(record)
  dumps.validate_info(header.get('info'), f'{where}: info')
  return dumps.DumpSequence(path=path, info=header['info'], records=records)


def load_index(dump_dir: PathLike) -> List[Dict[str, Any]]:
  """Reads `dump_dir/index.json`: one entry per sequence file, in the order written.

  Each entry has `file` (name inside `dump_dir`), `path` (full path), `info`, `metadata`
  (run, epoch, batch, example), `num_records` and `num_steps`.

  Raises:
    dumps.DumpError: naming the index, if it is missing, corrupt or malformed.
  """
  path = pathlib.Path(dump_dir) / INDEX_NAME
  where = str(path)
  try:
    index = json.loads(path.read_text(encoding='utf-8'))
  except FileNotFoundError as e:
    raise dumps.error(where, 'no dump index here (not a dumps folder, or nothing dumped '
                      'yet)') from e
  except (OSError, ValueError) as e:
    raise dumps.error(where, f'corrupt dump index ({type(e).__name__}: {e})') from e
  if not isinstance(index, dict) or index.get('format') != INDEX_FORMAT:
    raise dumps.error(where, 'not a ttm_jax dump index')
  if index.get('version') != VERSION:
    raise dumps.error(where, f"index version {index.get('version')!r} is not {VERSION}")
  entries = index.get('sequences')
  if not isinstance(entries, list):
    raise dumps.error(where, 'index has no list of sequences')
  for i, entry in enumerate(entries):
    name = entry.get('file') if isinstance(entry, dict) else None
    if not isinstance(name, str) or pathlib.Path(name).name != name or not name:
      raise dumps.error(where, f'entry {i} has no valid file name')
    dumps.validate_info(entry.get('info'), f'{where}: entry {i} ({name})')
    steps = entry.get('num_steps')
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
      raise dumps.error(where, f'entry {i} ({name}) has no valid num_steps')
    entry['path'] = str(pathlib.Path(dump_dir) / name)
  return entries
