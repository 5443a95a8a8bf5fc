"""Files that are never half-written, JSON-lines files whose cut tail is found and dropped, and
the one-line message of a failed file operation.

Every JSON and text file the package and the tools write (config.json, eval.json, result.json,
reports) goes through `atomic_file`: the text goes to a temporary file beside the target, is
flushed to disk, and replaces the target in one `os.replace`, so a kill, a full disk or a
read-only folder leaves the old file or the new one, never part of one. `metrics.jsonl` is
appended to instead (`hooks.MetricsWriter`); `read_jsonl` tells a last line cut by a kill or a
full disk from a damaged file. Light: the standard library only (tools/plot.py imports it).
"""

import contextlib
import errno
import json
import os
import re
import sys
import tempfile
from typing import Any, Dict, List, Tuple

# What to do about an OSError, by errno.
_HINTS = {
    errno.ENOSPC: 'free some space and run it again (what was saved before is intact)',
    errno.EDQUOT: 'free some space and run it again (what was saved before is intact)',
    errno.EROFS: 'the folder is read-only: use a writable one',
    errno.EACCES: 'no permission: use a folder you can write to',
    errno.EPERM: 'no permission: use a folder you can write to',
    errno.ENOENT: 'check the path (a folder on it does not exist)',
}


def errno_hint(code: int) -> str:
  """What to do about an OSError with errno `code` ('' if nothing to say)."""
  return _HINTS.get(code, '')


def os_error_message(e: OSError) -> str:
  """One line saying which file failed, why, and what to do, e.g. `/w/eval.json: No space
  left on device; free some space ...`."""
  if isinstance(e, BrokenPipeError):
    return 'the output was closed before everything was written (broken pipe)'
  where = ' -> '.join(str(name) for name in (e.filename, e.filename2) if name is not None)
  why = e.strerror or str(e) or type(e).__name__
  hint = errno_hint(e.errno)
  return (f'{where}: ' if where else '') + why + (f'; {hint}' if hint else '')


# Set by a program that ends soon after a failed `stderr_held` block (main.py): its stderr
# (fd 2) then stays silent, and `error_stream()` is where its error line goes.
SILENCE_AFTER_FAILURE = False
_error_stream = None


def error_stream():
  """Where an error line goes: `sys.stderr`, or the stderr as it was before fd 2 was silenced
  (`SILENCE_AFTER_FAILURE`)."""
  return _error_stream or sys.stderr


def errno_of(e: Exception):
  """The errno of an OSError, or the one a tensorstore error (orbax's) carries in its text
  (`[os_error_code='28']`); None if neither."""
  if isinstance(e, OSError) and e.errno:
    return e.errno
  found = re.search(r"os_error_code='?(\d+)", str(e))
  return int(found.group(1)) if found else None


@contextlib.contextmanager
def stderr_held():
  """What the process writes to its stderr (fd 2) meanwhile is held in memory and written out
  when the block ends without an error, and dropped when it raises."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):  # No fd 2 (or no stderr).
    yield
    return
  try:
    held = os.memfd_create('stderr')
  except (OSError, AttributeError):
    os.close(saved)
    yield
    return
  global _error_stream
  os.dup2(held, 2)
  succeeded = False
  try:
    yield
    succeeded = True
  finally:
    with contextlib.suppress(Exception):
      sys.stderr.flush()
    if not succeeded and SILENCE_AFTER_FAILURE:  # Threads left mid-write print for a while.
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, 2)
      os.close(devnull)
      _error_stream = os.fdopen(saved, 'w', buffering=1, errors='backslashreplace')
    else:
      os.dup2(saved, 2)
      os.close(saved)
    if succeeded:
      os.lseek(held, 0, os.SEEK_SET)
      while chunk := os.read(held, 1 << 16):
        os.write(2, chunk)
    os.close(held)


def _fsync_folder(folder: str):
  fd = os.open(folder, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = 'w'):
  """Yields a file open for writing (`mode` 'w' or 'wb'); when the block ends without an
  error, its content replaces `path` in one step (temporary file in the same folder, fsync,
  `os.replace`). On an error (a full disk, say) the temporary file is removed and `path` is
  as it was."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.filename is None and e.errno:  # Say which file.
      raise OSError(e.errno, e.strerror, path) from None
    raise
  _fsync_folder(folder)


def write_text(path: str, text: str):
  """Writes `text` to `path` atomically (`atomic_file`)."""
  with atomic_file(path) as f:
    f.write(text)


def write_json(path: str, value: Any, indent: int = 2):
  """Writes `value` as JSON to `path` atomically; the text is made before the file is
  touched, so a value that is not JSON leaves nothing behind."""
  write_text(path, json.dumps(value, indent=indent) + '\n')


def check_writable(folder: str):
  """Raises the OSError that writing a file in `folder` (created if missing) would raise:
  called before long work whose result goes there, so that a read-only or missing folder is
  found before the work and not after it."""
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.writable.', suffix='.tmp')
  os.close(fd)
  os.unlink(tmp)


def check_outputs(*paths: str):
  """`check_writable` for the folder of each of `paths` given (None or '' are skipped): a
  tool calls it before its work, for the files it writes after."""
  for path in paths:
    if path:
      check_writable(os.path.dirname(os.path.abspath(path)))


def save_figure(fig, path: str, **kwargs):
  """`fig.savefig(path, **kwargs)`, atomically (`atomic_file`), in the format of the path's
  extension."""
  with atomic_file(path, 'wb') as f:
    fig.savefig(f, format=os.path.splitext(path)[1].lstrip('.') or 'png', **kwargs)


class JsonLinesError(ValueError):
  """A JSON-lines file with a damaged line before its last one; the message names it."""


def read_jsonl(path: str) -> Tuple[List[Dict[str, Any]], str]:
  """The rows of a JSON-lines file, and the cut last line ('' if none).

  A last line with no line end that is not valid JSON is what a kill or a full disk leaves in
  the middle of an append: it is returned apart, not as a row, for the caller to report.

  Raises:
    JsonLinesError: an earlier line is not a JSON object (naming the file and line number).
    OSError: the file cannot be read.
  """
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().split('\n')
  tail = lines.pop()  # '' when the file ends with a line end.
  rows = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as e:
      raise JsonLinesError(f'{path}, line {number}: not JSON ({e}); the lines before it are '
                           'intact') from None
    if not isinstance(row, dict):
      raise JsonLinesError(f'{path}, line {number}: not a JSON object')
    rows.append(row)
  if tail.strip():
    try:
      row = json.loads(tail)
    except ValueError:
      return rows, tail
    if isinstance(row, dict):  # Complete but for the line end.
      rows.append(row)
    else:
      return rows, tail
  return rows, ''
