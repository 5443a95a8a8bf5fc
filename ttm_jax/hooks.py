"""What the training loop does besides training: metrics to TensorBoard and JSON lines,
stopping cleanly on Ctrl-C / SIGTERM, profiling chosen train steps, and progress lines."""

import contextlib
import json
import os
import signal
import threading
import time
from typing import Any, Dict, Optional

import jax
import numpy as np
from tensorboardX import SummaryWriter

from ttm_jax import files
from ttm_jax.log import log


METRICS_FILE = 'metrics.jsonl'
# The splits of the rows an epoch writes: a run resumed from step N writes those after N again.
EPOCH_SPLITS = ('train', 'eval')


class MetricsWriter:
  """Metrics to TensorBoard (`workdir/tb`) and to `workdir/metrics.jsonl`; in a multi-host
  run, process 0 writes them and the others write nothing.

  `resume_step`: the step training starts from. Before appending, a last line cut by a kill
  or a full disk is dropped (else the next row would be glued onto it), and so are the epoch
  rows (`EPOCH_SPLITS`) after `resume_step`, which the resumed run writes again (rows of other
  splits, such as a start row, stay); TensorBoard hides its events after it too.
  """

  def __init__(self, workdir: str, resume_step: Optional[int] = None):
    self.enabled = jax.process_index() == 0
    if self.enabled:
      path = os.path.join(workdir, METRICS_FILE)
      if os.path.exists(path):
        repair_metrics(path, resume_step)
      self.tb = SummaryWriter(os.path.join(workdir, 'tb'),
                              purge_step=resume_step + 1 if resume_step else None)
      self.jsonl = open(path, 'a')

  def write(self, step: int, split: str, metrics: Dict[str, Any]):
    if not self.enabled:
      return
    for name, value in metrics.items():
      if isinstance(value, (int, float)):
        self.tb.add_scalar(f'{split}/{name}', value, step)
      elif isinstance(value, list):  # Per-step series: one scalar per entry.
        for i, item in enumerate(value):
          self.tb.add_scalar(f'{split}/{name}/{i}', item, step)
    try:
      self.jsonl.write(json.dumps({'step': step, 'split': split, **metrics}) + '\n')
      self.jsonl.flush()
    except OSError as e:  # A full disk: say which file (the next start drops a cut line).
      raise OSError(e.errno, e.strerror, self.jsonl.name) from None

  def close(self):
    if self.enabled:
      self.tb.close()
      self.jsonl.close()


def repair_metrics(path: str, resume_step: Optional[int] = None):
  """Drops the cut last line of a metrics file and (given `resume_step`) the epoch rows after
  that step, saying so; the file is rewritten atomically, and only if a line goes. Lines that
  are not JSON before the last one are left for a reader to name."""
  with open(path, 'rb') as f:
    lines = f.read().split(b'\n')
  tail = lines.pop()  # b'' when the file ends with a line end.
  cut = b''
  if tail.strip():
    try:
      json.loads(tail)
      lines.append(tail)  # Complete but for its line end.
    except ValueError:
      cut = tail
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if (resume_step is not None and isinstance(row, dict) and row.get('split') in EPOCH_SPLITS
        and isinstance(row.get('step'), int) and row['step'] > resume_step):
      continue
    kept.append(line)
  dropped = len(lines) - len(kept)
  if cut:
    log.warning('%s: dropped its last line, cut off by an interrupted write (%d bytes)', path,
                len(cut))
  if dropped:
    log.info('%s: dropped %d rows after step %d, which the resumed run writes again', path,
             dropped, resume_step)
  if cut or dropped or tail.strip():
    with files.atomic_file(path, 'wb') as f:
      f.write(b''.join(line + b'\n' for line in kept))


class StopFlag:
  """Truthy once SIGINT or SIGTERM arrived."""
  requested = False

  def __bool__(self):
    return self.requested


@contextlib.contextmanager
def stop_requests():
  """While active, the first Ctrl-C (or SIGTERM) only sets the yielded flag, so the loop can
  save a checkpoint at a step boundary and stop; a second Ctrl-C interrupts at once."""
  flag = StopFlag()

  def request(signum, frame):
    if flag.requested and signum == signal.SIGINT:
      signal.default_int_handler(signum, frame)
    flag.requested = True

  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield flag
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


class StepProfiler:
  """Takes a `jax.profiler` trace of the train calls that run steps `first_step ..
  first_step + num_steps - 1` (counted from 0) into `directory`; `num_steps=0` never traces."""

  def __init__(self, first_step: int, num_steps: int, directory: str):
    self.first, self.last, self.directory = first_step, first_step + num_steps, directory
    self.active = False

  def before(self, step: int, count: int = 1):
    """Call before running the `count` train steps from `step`."""
    if step <= self.first < step + count and self.first < self.last:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)
      self.active = True

  def after(self, step: int, outputs):
    """Call after `step` steps have run, with the last step's outputs."""
    if self.active and step >= self.last:
      self.stop(outputs)

  def stop(self, outputs=None):
    """Ends an active trace (once `outputs` are computed)."""
    if self.active:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.active = False
      log.info('profile of steps %d..%d written to %s', self.first, self.last - 1,
               self.directory)


class ProgressLines:
  """Lines that say what training is doing between its evaluations' lines: that the train step
  is compiling, then the loss of the first call and how long compiling and running it took,
  and, where no progress bar shows (output to a file, a pipe, CI, `nohup`), the loss and speed
  after 5, 10, 20, 40 and then every 60 seconds without a line.

  Attributes:
    write: prints one line (flushed at once, so a log file or pipe gets it as it happens).
  """

  FIRST_INTERVAL, MAX_INTERVAL = 5.0, 60.0

  def __init__(self, write, batch_size: int, heartbeat: bool, clock=time.perf_counter):
    self.write, self.batch_size, self.heartbeat, self.clock = write, batch_size, heartbeat, clock
    self.first_call = True
    self.interval = self.FIRST_INTERVAL
    self.last_time, self.last_step = clock(), 0

  def start(self, step: int, stage: int):
    self.write(f'step {step}, stage {stage}: compiling the train step (the first call compiles '
               'it, which takes a while)')
    self.wrote(step)

  def wrote(self, step: int):
    """Call after any other line about training (an evaluation's): the next heartbeat comes
    an interval after it."""
    self.last_time, self.last_step = self.clock(), step

  def after_call(self, step: int, losses):
    """Call after a train call that brought training to `step`, with its `losses [K]`."""
    now = self.clock()
    seconds = now - self.last_time
    if self.first_call:
      self.first_call = False
      self.write(f'step {step}: loss {float(np.mean(losses)):.4f}; compiled and ran '
                 f'{step - self.last_step} steps in {seconds:.1f} s')
    elif self.heartbeat and seconds >= self.interval:
      speed = (step - self.last_step) * self.batch_size / seconds
      self.write(f'step {step}: loss {float(np.mean(losses)):.4f}, {speed:.0f} examples/s')
      self.interval = min(2 * self.interval, self.MAX_INTERVAL)
    else:
      return
    self.wrote(step)


def close_all(*closers, quiet: bool = False):
  """Calls each of `closers`, all of them even if one raises; then raises the first error,
  unless `quiet` (on the way out of a failure, such as a full disk, that is reported)."""
  first = None
  for close in closers:
    try:
      close()
    except Exception as e:  # pylint: disable=broad-except  # Re-raised below.
      first = first or e
  if first is not None and not quiet:
    raise first
