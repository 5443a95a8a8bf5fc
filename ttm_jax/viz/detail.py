"""Adaptive level of detail: coarser voxels when the frame rate drops below a target.

Level L average-pools the embedding (last) axis of wide matrices by `2**L`
(`mappers.pooling_block`), dividing their voxel count by up to `2**L`. Every `window_s`
seconds the controller compares the measured FPS with the target: below `target * 0.9` it
goes one level coarser; above `target * RESTORE_HEADROOM` (enough that doubling the voxels
should keep the target) one level finer. Changes are at least `cooldown_s` apart and logged.
"""

import logging
from typing import Optional

logger = logging.getLogger(__name__)

RESTORE_HEADROOM = 2.2


class DetailController:
  """Chooses the detail level from frame times.

  Attributes:
    target_fps: the frame rate to keep.
    level: current level, 0 (full detail) to `max_level`.
    auto: when False the level only changes by `set_level`.
    fps: the FPS measured over the last window (0 until one has passed).
  """

  def __init__(self, target_fps: float = 60.0, max_level: int = 3, level: int = 0,
               auto: bool = True, window_s: float = 1.0, cooldown_s: float = 2.0):
    self.target_fps = target_fps
    self.max_level = max_level
    self.level = level
    self.auto = auto
    self.fps = 0.0
    self._window_s = window_s
    self._cooldown_s = cooldown_s
    self._frames = 0
    self._elapsed = 0.0
    self._since_change = cooldown_s

  def set_level(self, level: int) -> None:
    """Sets the level by hand (clamped to [0, max_level])."""
    level = max(0, min(self.max_level, int(level)))
    if level != self.level:
      logger.info('detail level %d -> %d (set by hand)', self.level, level)
      self.level = level

  def update(self, frame_time: float) -> bool:
    """Accounts one frame of `frame_time` seconds; True if the level changed."""
    self._frames += 1
    self._elapsed += frame_time
    self._since_change += frame_time
    if self._elapsed < self._window_s:
      return False
    self.fps = self._frames / self._elapsed
    self._frames, self._elapsed = 0, 0.0
    if not self.auto or self._since_change < self._cooldown_s:
      return False
    new: Optional[int] = None
    if self.fps < 0.9 * self.target_fps and self.level < self.max_level:
      new = self.level + 1
    elif self.fps > RESTORE_HEADROOM * self.target_fps and self.level > 0:
      new = self.level - 1
    if new is None:
      return False
    logger.info('detail level %d -> %d: %.1f fps against a target of %.0f fps (%s)',
                self.level, new, self.fps, self.target_fps,
                'coarser' if new > self.level else 'finer')
    self.level, self._since_change = new, 0.0
    return True
