"""Trace dumps: the records of traced model runs, one list of records per traced sequence.

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

`Recorder` collects the records of a traced run in memory; `dump_files.py` writes them to
disk and reads them back. Everything is validated, and every problem raises one `DumpError`
whose message names where it was found.
"""

import collections
import dataclasses
import json
import os
import pathlib
from typing import Any, Dict, List, Tuple

import numpy as np

RECORD_KEYS = frozenset({'name', 'type', 'shape', 'data', 'metadata'})
RECORD_TYPES = frozenset({'tensor', 'tokens', 'scalar'})
# Metadata key -> required Python type.
METADATA_KEYS = {'run': str, 'epoch': int, 'batch': int, 'step': int, 'example': int,
                 'module': str}
INFO_KEYS = frozenset({'problem', 'target', 'prediction', 'correct', 'num_steps', 'config',
                       'checkpoint'})

Record = Dict[str, Any]


class DumpError(Exception):
  """A dump file or index that is missing, corrupt, truncated or malformed."""


def error(where: str, message: str) -> DumpError:
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


def plain_json(value: Any, where: str) -> Any:
  """`value` round-tripped through JSON (so what is written is what is read back)."""
  try:
    return json.loads(json.dumps(value, default=_to_json))
  except (TypeError, ValueError) as e:
    raise error(where, f'not JSON-serializable ({e})') from e


def make_record(name: str, data: Any, type: str = 'tensor', **metadata) -> Record:  # pylint: disable=redefined-builtin
  """A validated record; `data` is copied to a numpy array, metadata made plain JSON."""
  array = np.array(data)
  record = {'name': name, 'type': type, 'shape': tuple(array.shape), 'data': array,
            'metadata': plain_json(metadata, f'record {name!r} metadata')}
  validate_record(record, f'record {name!r}')
  return record


def validate_record(record: Any, where: str = 'record') -> None:
  """Raises `DumpError` unless `record` has the standard keys, a known type, a numeric
  `data` array whose shape equals `shape`, and metadata with the standard keys."""
  if not isinstance(record, dict) or set(record) != RECORD_KEYS:
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise error(where, f'record keys must be {sorted(RECORD_KEYS)}, got {keys}')
  name, kind, shape, data, metadata = (record[k] for k in
                                       ('name', 'type', 'shape', 'data', 'metadata'))
  if not isinstance(name, str) or not name:
    raise error(where, f'record name must be a non-empty string, got {name!r}')
  if kind not in RECORD_TYPES:
    raise error(where, f'record {name!r} has unknown type {kind!r} '
               f'(known: {sorted(RECORD_TYPES)})')
  if not isinstance(data, np.ndarray) or data.dtype.kind not in 'biuf':
    raise error(where, f'record {name!r} data must be a numeric numpy array')
  if not isinstance(shape, tuple) or tuple(data.shape) != shape:
    raise error(where, f'record {name!r} shape {shape} != data shape {tuple(data.shape)}')
  if kind == 'tokens' and data.dtype.kind not in 'iu':
    raise error(where, f'record {name!r} of type tokens holds {data.dtype}, not integers')
  if kind == 'scalar' and data.ndim != 0:
    raise error(where, f'record {name!r} of type scalar has shape {shape}, not ()')
  if not isinstance(metadata, dict):
    raise error(where, f'record {name!r} metadata must be a dict')
  for key, required in METADATA_KEYS.items():
    value = metadata.get(key)
    if not isinstance(value, required) or isinstance(value, bool):
      raise error(where, f'record {name!r} metadata[{key!r}] must be a '
                 f'{required.__name__}, got {value!r}')


def validate_info(info: Any, where: str = 'info') -> None:
  """Raises `DumpError` unless `info` is a dict holding the standard sequence keys."""
  if not isinstance(info, dict):
    raise error(where, f'sequence info must be a dict, got {type(info).__name__}')
  missing = INFO_KEYS - set(info)
  if missing:
    raise error(where, f'sequence info lacks {sorted(missing)}')


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
      dump_files.write_sequence(dump_dir, recorder.records(key), info_for(key))
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
