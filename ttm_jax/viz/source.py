"""A dumps folder, or a training workdir whose `dumps/` subfolder is followed live.

`DumpSource.poll` checks `index.json` at most every `poll_interval` seconds (by inode,
size and mtime, so an atomic replace is always noticed) and reloads the entry list when it
changed; sequences are loaded on demand and cached. Problems never raise out of `poll`:
they are kept in `error` (one line) for the dashboard to show.
"""

import collections
import os
import pathlib
import time
from typing import Any, Dict, List, Optional, Tuple

from ttm_jax import dump_files
from ttm_jax import dumps

CACHE_SIZE = 8  # Sequences kept loaded.


class DumpSource:
  """The sequences listed in a dumps folder, followed as it grows.

  Attributes:
    path: the folder given (dumps folder or training workdir).
    entries: index entries (see `dump_files.load_index`), in the order written.
    error: one-line description of the last index problem, or None.
    updated: `time.monotonic()` of the last entry-list change.
  """

  def __init__(self, path: os.PathLike, poll_interval: float = 1.0):
    self.path = pathlib.Path(path)
    self.poll_interval = poll_interval
    self.entries: List[Dict[str, Any]] = []
    self.error: Optional[str] = None
    self.updated: Optional[float] = None
    self._stamp: Optional[Tuple[int, int, int]] = None
    self._last_poll: Optional[float] = None
    self._cache: 'collections.OrderedDict[str, Tuple[Tuple, dumps.DumpSequence]]' = \
        collections.OrderedDict()

  @property
  def dump_dir(self) -> pathlib.Path:
    """Where `index.json` is: `path`, or `path/dumps` once a workdir has that folder."""
    if (self.path / dump_files.INDEX_NAME).exists() or not (self.path / 'dumps').is_dir():
      return self.path
    return self.path / 'dumps'

  def poll(self, now: Optional[float] = None) -> bool:
    """Re-reads the index if `poll_interval` passed and it changed; True if the entry
    list changed."""
    now = time.monotonic() if now is None else now
    if self._last_poll is not None and now - self._last_poll < self.poll_interval:
      return False
    self._last_poll = now
    index = self.dump_dir / dump_files.INDEX_NAME
    if not self.path.is_dir():
      return self._set_error(f'{self.path}: no such folder (waiting for it)')
    try:
      stat = index.stat()
    except FileNotFoundError:
      return self._set_error(None if self.entries else
                             f'{self.dump_dir}: no dumps yet (waiting for {index.name})')
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if stamp == self._stamp:
      return False
    try:
      entries = dump_files.load_index(self.dump_dir)
    except dumps.DumpError as e:
      self._stamp = stamp
      return self._set_error(str(e))
    self._stamp, self.error = stamp, None
    changed = entries != self.entries
    if changed:
      self.entries, self.updated = entries, now
    return changed

  def _set_error(self, message: Optional[str]) -> bool:
    self.error = message
    return False

  def load(self, index: int) -> dumps.DumpSequence:
    """Sequence `index` of `entries`, from the cache while its file is unchanged.

    Raises:
      DumpError: naming the file, if it is missing, corrupt or truncated.
      IndexError: for an index outside `entries`.
    """
    path = self.entries[index]['path']
    try:
      stat = os.stat(path)
    except OSError as e:
      raise dumps.DumpError(f'{path}: no such dump file') from e
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = self._cache.get(path)
    if cached is not None and cached[0] == stamp:
      self._cache.move_to_end(path)
      return cached[1]
    sequence = dump_files.load_sequence(path)
    self._cache[path] = (stamp, sequence)
    while len(self._cache) > CACHE_SIZE:
      self._cache.popitem(last=False)
    return sequence
