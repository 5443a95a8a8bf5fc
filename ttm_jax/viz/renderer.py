"""Instanced voxel rendering with moderngl.

One instanced draw call renders every voxel of a scene. Per-instance data lives in two
buffers: the static *geometry* (centre and size, 24 bytes per voxel, written when the
layout changes) and the dynamic *values* (one float32 per voxel). When the timeline moves
only values change, and `set_values` writes only the byte ranges that differ
(`buffer.write(data, offset=...)`). Shaders: `shaders/voxel.vert` and `voxel.frag`.
"""

import dataclasses
import pathlib
from typing import List, Optional, Tuple

import moderngl
import numpy as np

SHADER_DIR = pathlib.Path(__file__).parent / 'shaders'
MIN_HEIGHT = 0.15  # z extent factor of a voxel at value 0 (1 at value 1); see voxel.vert.
MERGE_GAP = 8  # Changed runs closer than this many voxels are written as one range.
GEOMETRY_STRIDE = 24  # Bytes per voxel: centre 3f + size 3f.
VALUE_STRIDE = 4  # Bytes per voxel: value 1f.
COLORMAP_SIZE = 256  # Entries of the shader's colour lookup table.


def voxel_boxes(positions: np.ndarray, sizes: np.ndarray,
                values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """`(low [N, 3], high [N, 3])`: the boxes the shader draws (z extent follows value)."""
  height = MIN_HEIGHT + (1.0 - MIN_HEIGHT) * np.clip(values, 0.0, 1.0)
  half = sizes * np.stack([np.ones_like(height), np.ones_like(height), height], 1) / 2
  return positions - half, positions + half


def _cube_faces() -> np.ndarray:
  """`[18, 6]` float32: corner (3) and normal (3) of the two triangles of each of the
  faces +x, +y, +z of the unit cube centred at the origin."""
  vertices = []
  for axis in range(3):
    u, v = (axis + 1) % 3, (axis + 2) % 3
    for a, b in [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]:
      corner, normal = np.zeros(3), np.zeros(3)
      corner[axis], corner[u], corner[v] = 0.5, a, b
      normal[axis] = 1.0
      vertices.append(np.concatenate([corner, normal]))
  return np.array(vertices, np.float32)


def changed_ranges(old: np.ndarray, new: np.ndarray, merge_gap: int = MERGE_GAP
                   ) -> List[Tuple[int, int]]:
  """Half-open index ranges `[(start, stop), ...]` where `new` differs from `old`; ranges
  separated by fewer than `merge_gap` equal elements are merged."""
  changed = np.flatnonzero(old != new)
  if not len(changed):
    return []
  breaks = np.flatnonzero(np.diff(changed) > merge_gap)
  starts = np.concatenate([[changed[0]], changed[breaks + 1]])
  stops = np.concatenate([changed[breaks], [changed[-1]]]) + 1
  return list(zip(starts.tolist(), stops.tolist()))


@dataclasses.dataclass
class WriteStats:
  """What the last `set_values` sent to the GPU: `bytes` in `ranges` (byte offsets,
  half-open) out of `total_bytes` in the value buffer."""
  bytes: int = 0
  ranges: List[Tuple[int, int]] = dataclasses.field(default_factory=list)
  total_bytes: int = 0


class VoxelRenderer:
  """Draws voxels as instanced boxes coloured by a lookup table.

  Attributes:
    count: voxels in the current layout.
    last_write: `WriteStats` of the last `set_values`.
    geometry_writes: how many times the geometry buffer was (re)written.
  """

  def __init__(self, ctx: moderngl.Context, color_table: np.ndarray):
    self.ctx = ctx
    self.program = ctx.program(
        vertex_shader=(SHADER_DIR / 'voxel.vert').read_text(encoding='utf-8'),
        fragment_shader=(SHADER_DIR / 'voxel.frag').read_text(encoding='utf-8'))
    self.program['u_min_height'].value = MIN_HEIGHT
    table = np.ascontiguousarray(color_table, np.float32)
    if table.shape != (COLORMAP_SIZE, 3):
      raise ValueError(f'colour table must be [{COLORMAP_SIZE}, 3], got {table.shape}')
    self.program['u_colormap'].write(table.tobytes())
    self.cube = ctx.buffer(_cube_faces().tobytes())
    self.count = 0
    self.geometry_writes = 0
    self.last_write = WriteStats()
    self._values = np.zeros(0, np.float32)
    self._geometry: Optional[moderngl.Buffer] = None
    self._value_buffer: Optional[moderngl.Buffer] = None
    self._vao: Optional[moderngl.VertexArray] = None

  def set_layout(self, positions: np.ndarray, sizes: np.ndarray) -> None:
    """New voxel layout: centres `[N, 3]` and sizes `[N, 3]`; values reset to 0 and are
    all written by the next `set_values`."""
    self._release_instances()
    self.count = len(positions)
    geometry = np.concatenate([positions, sizes], axis=1).astype(np.float32)
    # A zero-size buffer is invalid; keep one voxel's worth.
    self._geometry = self.ctx.buffer(geometry.tobytes() or bytes(GEOMETRY_STRIDE))
    self._value_buffer = self.ctx.buffer(reserve=max(self.count, 1) * VALUE_STRIDE,
                                         dynamic=True)
    self._values = np.full(self.count, np.nan, np.float32)  # NaN != anything: all written.
    self._vao = self.ctx.vertex_array(self.program, [
        (self.cube, '3f 3f', 'in_corner', 'in_normal'),
        (self._geometry, '3f 3f/i', 'in_center', 'in_size'),
        (self._value_buffer, '1f/i', 'in_value'),
    ])
    self.geometry_writes += 1

  def set_values(self, values: np.ndarray) -> WriteStats:
    """Uploads per-voxel values `[N]`, writing only the ranges that changed."""
    values = np.ascontiguousarray(values, np.float32)
    if values.shape != (self.count,):
      raise ValueError(f'set_values got {values.shape} values for {self.count} voxels')
    ranges = changed_ranges(self._values, values)
    for start, stop in ranges:
      self._value_buffer.write(values[start:stop].tobytes(), offset=start * VALUE_STRIDE)
    self._values = values.copy()
    byte_ranges = [(a * VALUE_STRIDE, b * VALUE_STRIDE) for a, b in ranges]
    self.last_write = WriteStats(sum(b - a for a, b in byte_ranges), byte_ranges,
                                 self.count * VALUE_STRIDE)
    return self.last_write

  def render(self, view_projection: np.ndarray, eye: np.ndarray,
             viewport: Tuple[int, int, int, int], selected: int = -1,
             hovered: int = -1) -> None:
    """Draws all voxels into `viewport` `(x, y, w, h)` (GL pixels, origin bottom-left)
    of the bound framebuffer, depth-tested; `selected`/`hovered` are highlighted."""
    if not self.count:
      return
    self.program['u_view_projection'].write(
        np.ascontiguousarray(view_projection.T, np.float32).tobytes())
    self.program['u_eye'].value = tuple(float(c) for c in eye)
    self.program['u_selected'].value = int(selected)
    self.program['u_hovered'].value = int(hovered)
    self.ctx.viewport = viewport
    self.ctx.scissor = viewport
    self.ctx.enable_only(moderngl.DEPTH_TEST)
    self._vao.render(moderngl.TRIANGLES, instances=self.count)
    self.ctx.scissor = None

  def _release_instances(self) -> None:
    for resource in (self._vao, self._geometry, self._value_buffer):
      if resource is not None:
        resource.release()

  def release(self) -> None:
    """Frees the GPU resources."""
    self._release_instances()
    self._vao = self._geometry = self._value_buffer = None
    for resource in (self.cube, self.program):
      resource.release()
