"""The records of one step arranged in world space, as one array of voxels.

Items (one per record) are packed left to right in rows (shelves) in a fixed order, the
memory first, the rows as wide as makes the whole most nearly the shape of the view (so
that it fills the view when the camera frames it); a `replay/NAME` item is placed beside its
original `NAME`, to the right of everything else, so that replayed and recorded states line
up. The layout depends only on the records' names, types and shapes, the level of detail
(`Scene.signature`) and the view's aspect it was built for, so stepping through a sequence
keeps it and only the values change.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ttm_jax.viz import mappers

Record = Dict[str, Any]

REPLAY_PREFIX = 'replay/'
# Drawing order; names not listed come after these, alphabetically. The step's inputs and
# outputs form the first row; the memory starts the next.
ORDER = ('inputs', 'logits', 'prediction', 'memory_in', 'memory_out', 'read_weights',
         'write_weights', 'outputs', 'attention', 'erase_weights', 'add_weights')
FIRST_ROW = frozenset({'inputs', 'logits', 'prediction'})
GAP = 6.0  # World units between items (room for a label above each).


@dataclasses.dataclass
class SceneItem:
  """One record's voxels in the scene.

  Attributes:
    name: the record name.
    mapper: its mapper (layout and value mapping).
    offset: `[3]` world position of the mapper's local origin (its top-left-front corner).
    start: index of the item's first voxel in the scene arrays.
    count: number of voxels.
  """
  name: str
  mapper: mappers.VisMapper
  offset: np.ndarray
  start: int
  count: int

  @property
  def label_anchor(self) -> np.ndarray:
    """`[3]` world point just above the item's top-left corner, for its label."""
    return self.offset + np.array([0.0, 1.2, 0.0], np.float32)


def _order_key(name: str) -> Tuple[int, str]:
  base = name.removeprefix(REPLAY_PREFIX)
  base = 'attention' if base.startswith('attention') else base
  return (ORDER.index(base) if base in ORDER else len(ORDER), name)


class Scene:
  """Voxels of a set of records (one step), in world coordinates.

  Attributes:
    items: the `SceneItem`s in drawing order.
    positions: `[N, 3]` float32 voxel centres.
    sizes: `[N, 3]` float32 box extents at value 1.
    detail: the level of detail the mappers were built for.
    signature: what the layout depends on (see `Scene.signature_of`).
  """

  def __init__(self, records: Dict[str, Record], detail: int = 0,
               registry: Optional[mappers.MapperRegistry] = None, aspect: float = 16 / 9):
    """`aspect`: width / height of the view the scene is shown in (it sets the rows'
    width)."""
    registry = registry or mappers.default_registry()
    self.detail = detail
    self.signature = self.signature_of(records, detail)
    names = sorted(records, key=_order_key)
    beside = [n for n in names
              if n.startswith(REPLAY_PREFIX) and n.removeprefix(REPLAY_PREFIX) in records]
    built = {n: registry.mapper_for(records[n], detail) for n in names}
    offsets = _fitted_shelf_pack([(n, built[n].get_voxel_layout().extent, n in FIRST_ROW)
                                  for n in names if n not in beside], aspect)
    width = max((offsets[n][0] + built[n].get_voxel_layout().extent[0] for n in offsets),
                default=0.0)
    for name in beside:
      offsets[name] = offsets[name.removeprefix(REPLAY_PREFIX)] + np.array(
          [width + 2 * GAP, 0.0, 0.0], np.float32)
    self.items: List[SceneItem] = []
    start = 0
    for name in names:
      count = built[name].get_voxel_layout().count
      self.items.append(SceneItem(name, built[name], offsets[name], start, count))
      start += count
    layouts = [item.mapper.get_voxel_layout() for item in self.items]
    self.positions = np.concatenate(
        [lay.positions + item.offset for lay, item in zip(layouts, self.items)]
        or [np.zeros((0, 3), np.float32)]).astype(np.float32)
    self.sizes = np.concatenate([lay.sizes for lay in layouts]
                                or [np.zeros((0, 3), np.float32)]).astype(np.float32)
    self._starts = np.array([item.start for item in self.items], np.int64)

  @staticmethod
  def signature_of(records: Dict[str, Record], detail: int) -> Tuple:
    """`(detail, ((name, type, shape, dtype kind), ...))`: equal signatures, equal layouts."""
    return (detail, tuple(sorted(
        (name, r['type'], tuple(r['shape']), np.asarray(r['data']).dtype.kind)
        for name, r in records.items())))

  @property
  def count(self) -> int:
    """Number of voxels."""
    return len(self.positions)

  def item(self, name: str) -> Optional[SceneItem]:
    """The item of record `name`, or None."""
    return next((item for item in self.items if item.name == name), None)

  def values(self, records: Dict[str, Record]) -> mappers.VoxelValues:
    """Per-voxel values `[N]` of `records` (same signature as the scene's)."""
    if self.signature_of(records, self.detail) != self.signature:
      raise ValueError('records do not match the scene layout; build a new Scene')
    mapped = [item.mapper.map_to_voxels(records[item.name]) for item in self.items]
    empty = np.zeros(0, np.float32)
    return mappers.VoxelValues(
        np.concatenate([m.values for m in mapped] or [empty]).astype(np.float32),
        np.concatenate([m.raw for m in mapped] or [empty]).astype(np.float32))

  def locate(self, voxel: int) -> Tuple[SceneItem, int]:
    """`(item, index within the item)` of scene voxel `voxel`."""
    if not 0 <= voxel < self.count:
      raise IndexError(f'voxel {voxel} is not in a scene of {self.count} voxels')
    item = self.items[int(np.searchsorted(self._starts, voxel, side='right')) - 1]
    return item, voxel - item.start

  def index_of(self, name: str, local: int) -> int:
    """Scene index of voxel `local` of item `name`, or -1 if there is no such voxel."""
    item = self.item(name)
    return item.start + local if item is not None and 0 <= local < item.count else -1

  def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
    """`(low [3], high [3])` corners of the box holding every voxel."""
    if not self.count:
      return np.zeros(3, np.float32), np.ones(3, np.float32)
    half = self.sizes / 2
    return (self.positions - half).min(0), (self.positions + half).max(0)


def _shelf_pack(extents: List[Tuple[str, Tuple[float, float, float], bool]],
                row_width: float) -> Dict[str, np.ndarray]:
  """Offsets placing boxes `(name, (width, height, depth), first_row)` left to right in
  rows, rows going down (-y): a new row starts when one would pass `row_width` and after
  the first-row items."""
  offsets, x, y, row_height, previous_first = {}, 0.0, 0.0, 0.0, None
  for name, (width, height, _), first_row in extents:
    if x > 0 and (x + width > row_width or previous_first and not first_row):
      x, y, row_height = 0.0, y - row_height - GAP, 0.0
    offsets[name] = np.array([x, y, 0.0], np.float32)
    x += width + GAP
    row_height = max(row_height, height)
    previous_first = first_row
  return offsets


def _fitted_shelf_pack(extents: List[Tuple[str, Tuple[float, float, float], bool]],
                       aspect: float) -> Dict[str, np.ndarray]:
  """`_shelf_pack` with the row width that needs the smallest view of `aspect` (width /
  height) to hold the packed boxes, i.e. shows them largest. The packing changes only where
  a row width equals a run of consecutive boxes, so those are the widths tried."""
  widths = [width for _, (width, _, _), _ in extents]
  # Each with a little slack, so that float sums equal to a candidate do not wrap.
  candidates = {(sum(widths[i:j]) + GAP * (j - i - 1)) * (1 + 1e-6) + 1e-6
                for i in range(len(widths)) for j in range(i + 1, len(widths) + 1)}

  def view_height(row_width):
    offsets = _shelf_pack(extents, row_width)
    right = max(offsets[n][0] + w for n, (w, _, _), _ in extents)
    bottom = min(offsets[n][1] - h for n, (_, h, _), _ in extents)
    return max(right / aspect, -bottom), row_width

  return _shelf_pack(extents, min(candidates, key=view_height, default=0.0))
