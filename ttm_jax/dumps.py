"""Trace dumps: the records of traced model runs, one file per traced sequence.

A traced run produces, per traced sequence (one multiplication problem), a list of
*records*. A record is a dict with exactly the standard keys:

  name      str, e.g. `memory_in`, `read_weights`, `attention/layer0`, `logits`.
  type      `'tensor'` (float data), `'tokens'` (integer token ids) or `'scalar'` (0-d).
  shape     tuple of ints, equal to `data.shape`.
  data      numpy array, e.g. memory `[m, d]`, read weights `[r, m+n]`, write weights
            `[m, m+n+r]`, attention `[heads, r, r]`, inputs `[n]` tokens, outputs `[r, d]`,
            logits `[13]`, prediction `[]`.
  metadata  dict with at least `run` (str), `epoch`, `batch`, `step` (the TTM step within
            the sequence), `example` (ints) and `module` (str: 'memory', 'read', 'write',
            'process', 'head', 'input'); extra JSON-serializable keys are kept.

A sequence also carries sequence-level `info`: `problem` ("123×45"), `target` ("5535"),
`prediction` ("5535"), `correct` (bool), `num_steps`, `config` (model config dict) and
`checkpoint` (path or None).

On disk, `write_sequence` writes one `.npz` per sequence (arrays `r0000`, `r0001`, ... plus
a JSON header array `header` holding names, types, shapes, metadata and the info) and lists
it in `DUMP_DIR/index.json`. Both are written atomically (temp file in the same folder,
fsync, `os.replace`), so a concurrent reader sees the old file or the new one, never half.
Loaders validate everything and raise one `DumpError` whose message names the file.
"""

import collections
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ttm_jax import tokens

FORMAT = 'ttm_jax.dump'
INDEX_FORMAT = 'ttm_jax.dump_index'
VERSION = 1
INDEX_NAME = 'index.json'

RECORD_KEYS = frozenset({'name', 'type', 'shape', 'data', 'metadata'})
RECORD_TYPES = frozenset({'tensor', 'tokens', 'scalar'})
# Metadata key -> required Python type.
METADATA_KEYS = {'run': str, 'epoch': int, 'batch': int, 'step': int, 'example': int,
                 'module': str}
INFO_KEYS = frozenset({'problem', 'target', 'prediction', 'correct', 'num_steps', 'config',
                       'checkpoint'})

PathLike = Union[str, os.PathLike]
Record = Dict[str, Any]
# (memory [m, d], step_inputs [n] int, step index) -> (new_memory [m, d], logits [vocab]).
StepFn = Callable[[np.ndarray, np.ndarray, int], Tuple[np.ndarray, np.ndarray]]


class DumpError(Exception):
  """A dump file or index that is missing, corrupt, truncated or malformed."""


def _fail(where: str, message: str) -> DumpError:
  """A `DumpError` with a one-line message `where: message`."""
  return DumpError(f'{where}: {message}'.replace('\n', ' '))


def _to_json(value: Any) -> Any:
  """JSON `default=` hook: numpy scalars and arrays, tuples and paths become plain JSON."""
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  raise TypeError(f'{type(value).__name__} is not JSON-serializable')


def _plain(value: Any, where: str) -> Any:
  """`value` round-tripped through JSON (so what is written is what is read back)."""
  try:
    return json.loads(json.dumps(value, default=_to_json))
  except (TypeError, ValueError) as e:
    raise _fail(where, f'not JSON-serializable ({e})') from e


def make_record(name: str, data: Any, type: str = 'tensor', **metadata) -> Record:  # pylint: disable=redefined-builtin
  """A validated record; `data` is copied to a numpy array, metadata made plain JSON."""
  array = np.array(data)
  record = {'name': name, 'type': type, 'shape': tuple(array.shape), 'data': array,
            'metadata': _plain(metadata, f'record {name!r} metadata')}
  validate_record(record, f'record {name!r}')
  return record


def validate_record(record: Any, where: str = 'record') -> None:
  """Raises `DumpError` unless `record` has the standard keys, a known type, a numeric
  `data` array whose shape equals `shape`, and metadata with the standard keys."""
  if not isinstance(record, dict) or set(record) != RECORD_KEYS:
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise _fail(where, f'record keys must be {sorted(RECORD_KEYS)}, got {keys}')
  name, kind, shape, data, metadata = (record[k] for k in
                                       ('name', 'type', 'shape', 'data', 'metadata'))
  if not isinstance(name, str) or not name:
    raise _fail(where, f'record name must be a non-empty string, got {name!r}')
  if kind not in RECORD_TYPES:
    raise _fail(where, f'record {name!r} has unknown type {kind!r} '
                f'(known: {sorted(RECORD_TYPES)})')
  if not isinstance(data, np.ndarray) or data.dtype.kind not in 'biuf':
    raise _fail(where, f'record {name!r} data must be a numeric numpy array')
  if not isinstance(shape, tuple) or tuple(data.shape) != shape:
    raise _fail(where, f'record {name!r} shape {shape} != data shape {tuple(data.shape)}')
  if kind == 'tokens' and data.dtype.kind not in 'iu':
    raise _fail(where, f'record {name!r} of type tokens holds {data.dtype}, not integers')
  if kind == 'scalar' and data.ndim != 0:
    raise _fail(where, f'record {name!r} of type scalar has shape {shape}, not ()')
  if not isinstance(metadata, dict):
    raise _fail(where, f'record {name!r} metadata must be a dict')
  for key, required in METADATA_KEYS.items():
    value = metadata.get(key)
    if not isinstance(value, required) or isinstance(value, bool):
      raise _fail(where, f'record {name!r} metadata[{key!r}] must be a '
                  f'{required.__name__}, got {value!r}')


def validate_info(info: Any, where: str = 'info') -> None:
  """Raises `DumpError` unless `info` is a dict holding the standard sequence keys."""
  if not isinstance(info, dict):
    raise _fail(where, f'sequence info must be a dict, got {type(info).__name__}')
  missing = INFO_KEYS - set(info)
  if missing:
    raise _fail(where, f'sequence info lacks {sorted(missing)}')


@dataclasses.dataclass
class DumpSequence:
  """One traced sequence as loaded from disk.

  Attributes:
    path: the `.npz` file.
    info: sequence-level info (problem, target, prediction, correct, num_steps, config,
      checkpoint).
    records: the records in the order they were written.
  """
  path: pathlib.Path
  info: Dict[str, Any]
  records: List[Record]

  @property
  def steps(self) -> List[int]:
    """The distinct `metadata['step']` values, ascending."""
    return sorted({r['metadata']['step'] for r in self.records})

  def at_step(self, step: int) -> Dict[str, Record]:
    """`name -> record` for one step (the last record wins if a name repeats)."""
    return {r['name']: r for r in self.records if r['metadata']['step'] == step}


class Recorder:
  """Collects records in memory, grouped by traced sequence.

  A sequence is keyed by `(run, epoch, batch, example)`; `run`, `epoch` and `batch` come
  from the recorder (set them with `set_context`) unless `add` overrides them.

  Example:
    recorder = Recorder(run='mult')
    recorder.set_context(epoch=3, batch=120)
    recorder.add('memory_in', memory, step=0, example=0, module='memory')
    for key in recorder.sequences():
      write_sequence(dump_dir, recorder.records(key), info_for(key))
  """

  def __init__(self, run: str = '', epoch: int = 0, batch: int = 0):
    self._context = {'run': run, 'epoch': epoch, 'batch': batch}
    self._records = collections.OrderedDict()

  def set_context(self, **context) -> None:
    """Updates the default `run`, `epoch` and/or `batch` of later records."""
    unknown = set(context) - set(self._context)
    if unknown:
      raise ValueError(f'Recorder.set_context takes run, epoch, batch; got {sorted(unknown)}')
    self._context.update(context)

  def add(self, name: str, data: Any, type: str = 'tensor', *, step: int,  # pylint: disable=redefined-builtin
          example: int = 0, module: str = '', **metadata) -> Record:
    """Records `data` (copied to numpy) and returns the validated record."""
    full = {**self._context, 'step': step, 'example': example, 'module': module, **metadata}
    record = make_record(name, data, type, **full)
    key = tuple(record['metadata'][k] for k in ('run', 'epoch', 'batch', 'example'))
    self._records.setdefault(key, []).append(record)
    return record

  def sequences(self) -> List[Tuple[str, int, int, int]]:
    """Keys `(run, epoch, batch, example)` of the sequences recorded, in order."""
    return list(self._records)

  def records(self, key: Tuple[str, int, int, int]) -> List[Record]:
    """The records of one sequence, in the order they were added."""
    return list(self._records[key])

  def clear(self) -> None:
    """Forgets every record."""
    self._records.clear()


@contextlib.contextmanager
def _atomic_file(path: pathlib.Path):
  """Yields a binary file; on success it is fsynced and `os.replace`d onto `path`."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise
  dir_fd = os.open(path.parent, os.O_RDONLY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)


def sequence_filename(metadata: Dict[str, Any]) -> str:
  """`[run-]eEPOCH-bBATCH-xEXAMPLE.npz` for a record's metadata; run made filename-safe."""
  run = re.sub(r'[^A-Za-z0-9_.]+', '_', metadata['run']).strip('._')
  stem = f"e{metadata['epoch']:04d}-b{metadata['batch']:06d}-x{metadata['example']:03d}"
  return f'{run}-{stem}.npz' if run else f'{stem}.npz'


def write_sequence(dump_dir: PathLike, records: List[Record], info: Dict[str, Any]
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
    raise _fail(str(dump_dir), 'write_sequence needs at least one record')
  records = [_with_plain_metadata(r, f'{dump_dir}: record {i}') for i, r in enumerate(records)]
  validate_info(info, f'{dump_dir}: info')
  info = _plain(info, f'{dump_dir}: info')
  first = records[0]['metadata']
  identity = ('run', 'epoch', 'batch', 'example')
  for record in records:
    if any(record['metadata'][k] != first[k] for k in identity):
      raise _fail(str(dump_dir), f"record {record['name']!r} belongs to another sequence "
                  f'({identity} differ from the first record)')
  dump_dir.mkdir(parents=True, exist_ok=True)
  path = dump_dir / sequence_filename(first)

  header = {'format': FORMAT, 'version': VERSION, 'info': info, 'records': [
      {'name': r['name'], 'type': r['type'], 'shape': list(r['shape']),
       'metadata': r['metadata']} for r in records]}
  arrays = {f'r{i:04d}': r['data'] for i, r in enumerate(records)}
  arrays['header'] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
  with _atomic_file(path) as f:
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
    with _atomic_file(index_path) as f:
      f.write(text.encode())
  return path


def _with_plain_metadata(record: Any, where: str) -> Record:
  """`record` validated, its metadata made plain JSON (numpy ints become ints) and its
  data a numpy array (from e.g. a JAX array)."""
  if isinstance(record, dict) and isinstance(record.get('metadata'), dict):
    record = {**record, 'metadata': _plain(record['metadata'], f'{where} metadata')}
  if isinstance(record, dict) and 'data' in record:
    record = {**record, 'data': np.asarray(record['data'])}
  validate_record(record, where)
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


def load_sequence(path: PathLike) -> DumpSequence:
  """Reads and validates one sequence file written by `write_sequence`.

  Raises:
    DumpError: naming the file, if it is missing, truncated, corrupt or malformed.
  """
  path = pathlib.Path(path)
  where = str(path)
  if not path.is_file():
    raise _fail(where, 'no such dump file')
  try:
    with np.load(path, allow_pickle=False) as npz:
      if 'header' not in npz.files:
        raise _fail(where, 'not a ttm_jax dump (no header)')
      header = json.loads(npz['header'].tobytes().decode())
      arrays = {k: npz[k] for k in npz.files if k != 'header'}
  except DumpError:
    raise
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise _fail(where, f'corrupt or truncated dump file ({type(e).__name__}: {e})') from e
  if not isinstance(header, dict) or header.get('format') != FORMAT:
    raise _fail(where, f'not a ttm_jax dump (format {header.get("format")!r})'
                if isinstance(header, dict) else 'not a ttm_jax dump (bad header)')
  if header.get('version') != VERSION:
    raise _fail(where, f"dump version {header.get('version')!r} is not {VERSION}")
  specs = header.get('records')
  if not isinstance(specs, list) or len(specs) != len(arrays):
    raise _fail(where, 'header does not match the arrays stored (corrupt dump)')
  records = []
  for i, spec in enumerate(specs):
    key = f'r{i:04d}'
    if not isinstance(spec, dict) or key not in arrays:
      raise _fail(where, f'record {i} is missing from the file')
    shape = spec.get('shape')
    record = {'name': spec.get('name'), 'type': spec.get('type'),
              'shape': tuple(shape) if isinstance(shape, list) else shape,
              'data': arrays[key], 'metadata': spec.get('metadata')}
    validate_record(record, f'{where}: record {i}')
    records.append(record)
  validate_info(header.get('info'), f'{where}: info')
  return DumpSequence(path=path, info=header['info'], records=records)


def load_index(dump_dir: PathLike) -> List[Dict[str, Any]]:
  """Reads `dump_dir/index.json`: one entry per sequence file, in the order written.

  Each entry has `file` (name inside `dump_dir`), `path` (full path), `info`, `metadata`
  (run, epoch, batch, example), `num_records` and `num_steps`.

  Raises:
    DumpError: naming the index, if it is missing, corrupt or malformed.
  """
  path = pathlib.Path(dump_dir) / INDEX_NAME
  where = str(path)
  try:
    index = json.loads(path.read_text(encoding='utf-8'))
  except FileNotFoundError as e:
    raise _fail(where, 'no dump index here (not a dumps folder, or nothing dumped yet)') from e
  except (OSError, ValueError) as e:
    raise _fail(where, f'corrupt dump index ({type(e).__name__}: {e})') from e
  if not isinstance(index, dict) or index.get('format') != INDEX_FORMAT:
    raise _fail(where, 'not a ttm_jax dump index')
  if index.get('version') != VERSION:
    raise _fail(where, f"index version {index.get('version')!r} is not {VERSION}")
  entries = index.get('sequences')
  if not isinstance(entries, list):
    raise _fail(where, 'index has no list of sequences')
  for i, entry in enumerate(entries):
    name = entry.get('file') if isinstance(entry, dict) else None
    if not isinstance(name, str) or pathlib.Path(name).name != name or not name:
      raise _fail(where, f'entry {i} has no valid file name')
    validate_info(entry.get('info'), f'{where}: entry {i} ({name})')
    steps = entry.get('num_steps')
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
      raise _fail(where, f'entry {i} ({name}) has no valid num_steps')
    entry['path'] = str(pathlib.Path(dump_dir) / name)
  return entries


def synthetic_sequence(problem: str = '123×45', *, d: int = 128, m: int = 96, r: int = 16,
                       n: int = 11, heads: int = 4, layers: int = 4, seed: int = 0,
                       run: str = 'synthetic', epoch: int = 0, batch: int = 0,
                       example: int = 0, step_fn: Optional[StepFn] = None
                       ) -> Tuple[List[Record], Dict[str, Any]]:
  """Realistic-shape records of one problem-per-step sequence, with made-up values.

  Step t sees `problem tokens + <EOS> + answer token t-1` padded to `n` and emits answer
  token t (digits most significant first, then <EOS>). Memory starts as noisy waves that
  drift along the embedding axis, or evolves by `step_fn` when given (then `memory_out`,
  `logits` and `prediction` are exactly what `step_fn` computes, so replays can be checked
  against it).

  Returns:
    `(records, info)` ready for `write_sequence`: per step `inputs [n]`, `memory_in
    [m, d]`, `read_weights [r, m+n]`, `attention/layer{l} [heads, r, r]`, `outputs [r, d]`,
    `write_weights [m, m+n+r]`, `memory_out [m, d]`, `logits [13]`, `prediction []`.
  """
  rng = np.random.default_rng(seed)
  a, b = tokens.parse_problem(problem)
  problem_tokens = tokens.problem_to_tokens(a, b)
  answer = tokens.number_to_tokens(a * b) + [tokens.EOS_TOKEN]
  recorder = Recorder(run=run, epoch=epoch, batch=batch)

  def add(name, data, module, step, kind='tensor'):
    recorder.add(name, data, kind, step=step, example=example, module=module)

  def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

  # Smooth waves plus noise, drifting along the embedding axis step by step.
  slots, dims = np.meshgrid(np.linspace(0, 1, m), np.linspace(0, 1, d), indexing='ij')
  memory = (np.sin(2 * np.pi * (rng.uniform(1, 3) * slots + rng.uniform(1, 4) * dims))
            + rng.normal(0.0, 0.3, (m, d))).astype(np.float32)
  predicted = []
  for step, target_token in enumerate(answer):
    previous = answer[step - 1] if step else tokens.PAD_TOKEN
    inputs = np.array(tokens.pad_sequence(problem_tokens + [previous], n), np.int32)
    add('inputs', inputs, 'input', step, 'tokens')
    add('memory_in', memory, 'memory', step)
    add('read_weights', softmax(rng.normal(0, 2, (r, m + n))), 'read', step)
    for layer in range(layers):
      add(f'attention/layer{layer}', softmax(rng.normal(0, 2, (heads, r, r))), 'process', step)
    add('outputs', rng.normal(0, 1, (r, d)).astype(np.float32), 'process', step)
    add('write_weights', softmax(rng.normal(0, 2, (m, m + n + r))), 'write', step)
    if step_fn is None:
      memory = np.tanh(1.2 * np.roll(memory, 4, axis=1) + 0.3 * rng.normal(0, 1, (m, d)))
      logits = rng.normal(0, 1, 13)
      logits[target_token if rng.random() < 0.9 else rng.integers(13)] += 4.0
    else:
      memory, logits = step_fn(memory, inputs, step)
    memory = np.asarray(memory, np.float32)
    logits = np.asarray(logits, np.float32)
    add('memory_out', memory, 'memory', step)
    add('logits', logits, 'head', step)
    add('prediction', np.int32(np.argmax(logits)), 'head', step, 'scalar')
    predicted.append(int(np.argmax(logits)))

  key = recorder.sequences()[0]
  if tokens.EOS_TOKEN in predicted:
    predicted = predicted[:predicted.index(tokens.EOS_TOKEN)]
  prediction = tokens.tokens_to_string(predicted)
  info = {'problem': f'{a}×{b}', 'target': str(a * b), 'prediction': prediction,
          'correct': prediction == str(a * b), 'num_steps': len(answer),
          'config': {'d': d, 'm': m, 'r': r, 'n': n, 'num_heads': heads,
                     'num_layers': layers, 'memory_mode': 'TL', 'vocab_size': 13},
          'checkpoint': None}
  return recorder.records(key), info
