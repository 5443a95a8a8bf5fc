"""Playback position over traced sequences (examples) and their steps."""

from typing import List, Optional, Tuple


class Timeline:
  """A cursor `(sequence, step)` with play/pause and a speed in steps per second.

  Stepping past a sequence's last step moves to the next sequence's first step; playing
  past the very end wraps to the start.

  Attributes:
    sequence: index of the current sequence.
    step: current step within it.
    playing: whether `advance` moves the cursor.
    speed: steps per second while playing.
  """

  def __init__(self, speed: float = 2.0):
    self.sequence = 0
    self.step = 0
    self.playing = False
    self.speed = speed
    self._steps: List[int] = []
    self._carry = 0.0

  def set_bounds(self, steps_per_sequence: List[int]) -> None:
    """Number of steps of each sequence; the cursor is clamped into the new bounds."""
    self._steps = [max(1, int(s)) for s in steps_per_sequence]
    self.seek(self.sequence, self.step)

  @property
  def num_sequences(self) -> int:
    return len(self._steps)

  def num_steps(self, sequence: Optional[int] = None) -> int:
    """Steps of `sequence` (default: the current one); 0 with no sequences."""
    sequence = self.sequence if sequence is None else sequence
    return self._steps[sequence] if 0 <= sequence < len(self._steps) else 0

  def position(self, what: str) -> Tuple[int, int]:
    """`(index, count)` of the cursor among the examples (`what='example'`) or among the
    current example's steps (`'step'`)."""
    if what == 'example':
      return self.sequence, self.num_sequences
    return self.step, self.num_steps()

  def counter(self, what: str) -> str:
    """`position(what)` counted from 1 as people count, '2 / 5'; '- / 0' with nothing
    loaded (so one example reads '1 / 1', not '0 / 0')."""
    index, count = self.position(what)
    return f'{index + 1} / {count}' if count else '- / 0'

  def seek(self, sequence: int, step: int) -> None:
    """Moves to `(sequence, step)`, clamped."""
    if not self._steps:
      self.sequence = self.step = 0
      return
    self.sequence = max(0, min(int(sequence), len(self._steps) - 1))
    self.step = max(0, min(int(step), self._steps[self.sequence] - 1))

  def step_forward(self, wrap: bool = False) -> None:
    """One step on, into the next sequence at a sequence's end (to the start if `wrap`)."""
    if self.step + 1 < self.num_steps():
      self.step += 1
    elif self.sequence + 1 < self.num_sequences:
      self.seek(self.sequence + 1, 0)
    elif wrap:
      self.seek(0, 0)

  def step_back(self) -> None:
    """One step back, into the previous sequence's last step at a sequence's start."""
    if self.step > 0:
      self.step -= 1
    elif self.sequence > 0:
      self.seek(self.sequence - 1, self.num_steps(self.sequence - 1) - 1)

  def advance(self, dt: float) -> bool:
    """Moves `speed * dt` steps on while playing; True if the cursor moved."""
    if not self.playing or not self._steps:
      self._carry = 0.0
      return False
    self._carry += dt * self.speed
    moved = False
    while self._carry >= 1.0:
      self._carry -= 1.0
      self.step_forward(wrap=True)
      moved = True
    return moved
