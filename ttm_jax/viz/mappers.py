"""Mapping records to voxels.

A `VisMapper` is built for one record shape and level of detail. It fixes the voxel
layout (where each voxel sits, how big it is, which data elements it stands for) once,
then maps each state (a record of that shape, e.g. the same tensor at another step) to one
normalized value per voxel. Local coordinates: x grows with the last axis (columns), y
falls with rows, z falls with slabs; one voxel per unit.

`MapperRegistry` picks the mapper from a record's name, type, shape and dtype.
"""

import abc
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ttm_jax.viz import colormap

Record = Dict[str, Any]

VOXEL_SIZE = (0.85, 0.85, 2.0)  # Box extents (x, y, z) of a voxel of value 1.
SLAB_SPACING = 3.0  # Distance between stacked slabs along z.
SMALL_PITCH = 3.0  # Vectors and scalars are drawn this many times larger than matrices.
MIN_POOLED_COLUMNS = 16  # Pooling never leaves fewer columns than this.
MIN_POOLABLE_COLUMNS = 32  # Only matrices at least this wide are pooled.
ROBUST_PERCENTILES = (1.0, 99.0)  # Matrices are coloured between these percentiles.

# Axis names shown in tooltips, by record name (prefix match for `attention/...`).
AXIS_NAMES = {
    'memory_in': ('slot', 'dim'), 'memory_out': ('slot', 'dim'),
    'outputs': ('token', 'dim'), 'read_weights': ('read', 'token'),
    'write_weights': ('slot', 'token'), 'erase_weights': ('head', 'dim'),
    'add_weights': ('head', 'dim'), 'attention': ('head', 'query', 'key'),
    'inputs': ('position',), 'logits': ('token',),
}


@dataclasses.dataclass(frozen=True)
class VoxelLayout:
  """Where a mapper's voxels are, in the mapper's local coordinates.

  Attributes:
    positions: `[N, 3]` float32 voxel centres.
    sizes: `[N, 3]` float32 box extents at value 1 (the z extent shrinks with the value).
    cells: `[N, ndim]` int index into the record data of each voxel's first element.
    block: data elements along the last axis averaged into one voxel (1: full detail).
    extent: `(width, height, depth)` of the layout's bounding box; it spans
      x in [0, width], y in [-height, 0], z in [-depth, 0].
  """
  positions: np.ndarray
  sizes: np.ndarray
  cells: np.ndarray
  block: int
  extent: Tuple[float, float, float]

  @property
  def count(self) -> int:
    return len(self.positions)


@dataclasses.dataclass(frozen=True)
class VoxelValues:
  """One state mapped to voxels: `values` `[N]` normalized to [0, 1] (what is drawn) and
  `raw` `[N]` (the data value, or the mean of the block a voxel stands for)."""
  values: np.ndarray
  raw: np.ndarray


def _state_data(state: Any) -> np.ndarray:
  """The array of a record, or the array itself."""
  return np.asarray(state['data'] if isinstance(state, dict) else state)


def pool_last_axis(data: np.ndarray, block: int) -> np.ndarray:
  """Means of `block` consecutive elements along the last axis (the last block may be
  shorter): `[..., c]` -> `[..., ceil(c / block)]` float32."""
  data = np.asarray(data, np.float32)
  if block == 1:
    return data
  cols = data.shape[-1]
  blocks = -(-cols // block)
  sums = np.zeros(data.shape[:-1] + (blocks * block,), np.float32)
  sums[..., :cols] = data
  counts = np.minimum(block, cols - np.arange(blocks) * block).astype(np.float32)
  return sums.reshape(data.shape[:-1] + (blocks, block)).sum(-1) / counts


def _min_max(data: np.ndarray) -> np.ndarray:
  """`data` scaled to [0, 1] by its own min and max (all 0.5 when constant)."""
  return _scale(data, float(np.min(data)), float(np.max(data)))


def _robust(data: np.ndarray) -> np.ndarray:
  """`data` scaled to [0, 1] between its `ROBUST_PERCENTILES` and clipped, so that a few
  outliers (an edited cell, one sharp attention peak) do not flatten everything else."""
  low, high = np.percentile(data, ROBUST_PERCENTILES)
  if high - low < 1e-12:
    return _min_max(data)
  return _scale(data, float(low), float(high))


def _scale(data: np.ndarray, low: float, high: float) -> np.ndarray:
  if high - low < 1e-12:
    return np.full(data.shape, 0.5, np.float32)
  return np.clip((data - low) / (high - low), 0.0, 1.0).astype(np.float32)


class VisMapper(abc.ABC):
  """Maps states of one record shape to voxels.

  Attributes:
    shape: the record shape this mapper lays out.
    axis_names: one name per record axis, for tooltips.
  """

  def __init__(self, shape: Sequence[int], axis_names: Optional[Sequence[str]] = None):
    self.shape = tuple(shape)
    self.axis_names = tuple(axis_names or [f'axis{i}' for i in range(len(self.shape))])
    self._layout = None

  @abc.abstractmethod
  def _build_layout(self) -> VoxelLayout:
    """Computes the layout (called once, cached by `get_voxel_layout`)."""

  @abc.abstractmethod
  def map_to_voxels(self, state: Any) -> VoxelValues:
    """Maps a state (a record of `self.shape`, or its array) to per-voxel values."""

  def get_voxel_layout(self) -> VoxelLayout:
    """The voxel layout for `self.shape`."""
    if self._layout is None:
      self._layout = self._build_layout()
    return self._layout

  def get_color_map(self) -> np.ndarray:
    """Lookup table `[256, 3]` for the normalized values (viridis-like)."""
    return colormap.viridis()

  def check(self, data: np.ndarray) -> np.ndarray:
    """`data` if it has this mapper's shape; raises ValueError naming both shapes."""
    if data.shape != self.shape:
      raise ValueError(f'{type(self).__name__} for shape {self.shape} got data of shape '
                       f'{data.shape}')
    return data

  def describe(self, voxel: int) -> str:
    """Which data elements voxel `voxel` stands for, e.g. `slot 3, dim 8-15 (mean of 8)`."""
    layout = self.get_voxel_layout()
    cell = layout.cells[voxel]
    parts = [f'{name} {index}' for name, index in zip(self.axis_names, cell)]
    last = min(int(cell[-1]) + layout.block, self.shape[-1]) - 1
    if last > cell[-1]:
      parts[-1] = f'{self.axis_names[-1]} {cell[-1]}-{last} (mean of {last - cell[-1] + 1})'
    return ', '.join(parts)


def _grid_layout(rows: int, cols: int, block: int, slabs: int = 1,
                 pitch: float = 1.0) -> VoxelLayout:
  """Voxels of `slabs` stacked `[rows, ceil(cols / block)]` grids, `pitch` units apart;
  `cells` are `(slab, row, first column)`: callers keep the axes their records have."""
  pooled = -(-cols // block)
  s, r, c = np.meshgrid(np.arange(slabs), np.arange(rows), np.arange(pooled), indexing='ij')
  s, r, c = s.ravel(), r.ravel(), c.ravel()
  size = np.array(VOXEL_SIZE, np.float32) * pitch
  positions = np.stack([(c + 0.5) * pitch, -(r + 0.5) * pitch,
                        -(s * SLAB_SPACING + size[2] / 2)], axis=1).astype(np.float32)
  sizes = np.tile(size, (len(positions), 1))
  cells = np.stack([s, r, c * block], axis=1)
  depth = (slabs - 1) * SLAB_SPACING + float(size[2])
  return VoxelLayout(positions, sizes, cells.astype(np.int32), block,
                     (pooled * pitch, rows * pitch, depth))


class MatrixMapper(VisMapper):
  """A matrix `[rows, cols]` as a flat grid of voxels (rows down, columns across), coloured
  between its 1st and 99th percentiles.

  At detail level L the columns of wide matrices are average-pooled by `2**L` (but never
  below `MIN_POOLED_COLUMNS`), which divides the voxel count by up to `2**L`.
  """

  def __init__(self, shape: Sequence[int], detail: int = 0,
               axis_names: Optional[Sequence[str]] = None):
    super().__init__(shape, axis_names)
    if len(self.shape) != 2:
      raise ValueError(f'MatrixMapper needs a 2-d shape, got {self.shape}')
    self.block = pooling_block(self.shape[-1], detail)

  def _build_layout(self) -> VoxelLayout:
    layout = _grid_layout(self.shape[0], self.shape[1], self.block)
    return dataclasses.replace(layout, cells=layout.cells[:, 1:])

  def map_to_voxels(self, state: Any) -> VoxelValues:
    raw = pool_last_axis(self.check(_state_data(state)), self.block).ravel()
    return VoxelValues(_robust(raw), raw)


class SlabStackMapper(VisMapper):
  """A `[slabs, rows, cols]` tensor (e.g. attention `[heads, r, r]`) as grids stacked
  along z, one slab per leading index (more leading axes are flattened into slabs),
  coloured like `MatrixMapper`."""

  def __init__(self, shape: Sequence[int], detail: int = 0,
               axis_names: Optional[Sequence[str]] = None):
    super().__init__(shape, axis_names)
    if len(self.shape) < 3:
      raise ValueError(f'SlabStackMapper needs at least 3 axes, got {self.shape}')
    self.slabs = int(np.prod(self.shape[:-2]))
    self.block = pooling_block(self.shape[-1], detail)

  def _build_layout(self) -> VoxelLayout:
    layout = _grid_layout(self.shape[-2], self.shape[-1], self.block, self.slabs)
    leading = np.stack(np.unravel_index(layout.cells[:, 0], self.shape[:-2]), axis=1)
    cells = np.concatenate([leading, layout.cells[:, 1:]], axis=1).astype(np.int32)
    return dataclasses.replace(layout, cells=cells)

  def map_to_voxels(self, state: Any) -> VoxelValues:
    raw = pool_last_axis(self.check(_state_data(state)), self.block).ravel()
    return VoxelValues(_robust(raw), raw)


class VectorMapper(VisMapper):
  """A vector `[k]` (e.g. logits) as a row of k large voxels (`SMALL_PITCH`) whose height
  follows the value."""

  def _build_layout(self) -> VoxelLayout:
    layout = _grid_layout(1, self.shape[0], 1, pitch=SMALL_PITCH)
    return dataclasses.replace(layout, cells=layout.cells[:, 2:])

  def map_to_voxels(self, state: Any) -> VoxelValues:
    raw = np.asarray(self.check(_state_data(state)), np.float32).ravel()
    return VoxelValues(_min_max(raw), raw)


class TokenMapper(VisMapper):
  """Token ids (a vector `[n]` or a scalar `[]`) as large voxels (`SMALL_PITCH`) coloured on
  the fixed vocabulary range."""

  def __init__(self, shape: Sequence[int], vocab_size: int = 13,
               axis_names: Optional[Sequence[str]] = None):
    super().__init__(shape, axis_names)
    if len(self.shape) > 1:
      raise ValueError(f'TokenMapper needs a scalar or vector shape, got {self.shape}')
    self.vocab_size = vocab_size

  def _build_layout(self) -> VoxelLayout:
    length = self.shape[0] if self.shape else 1
    layout = _grid_layout(1, length, 1, pitch=SMALL_PITCH)
    cells = layout.cells[:, 2:] if self.shape else layout.cells[:, :0]
    return dataclasses.replace(layout, cells=cells)

  def map_to_voxels(self, state: Any) -> VoxelValues:
    raw = np.asarray(self.check(_state_data(state)), np.float32).ravel()
    values = np.clip(raw / max(self.vocab_size - 1, 1), 0.0, 1.0).astype(np.float32)
    return VoxelValues(values, raw)

  def describe(self, voxel: int) -> str:
    return f'position {voxel}' if self.shape else 'value'


class ScalarMapper(VisMapper):
  """A float scalar `[]` as one large voxel; its colour is `0.5 + 0.5 tanh(value)`."""

  def _build_layout(self) -> VoxelLayout:
    layout = _grid_layout(1, 1, 1, pitch=SMALL_PITCH)
    return dataclasses.replace(layout, cells=layout.cells[:, :0])

  def map_to_voxels(self, state: Any) -> VoxelValues:
    raw = np.asarray(self.check(_state_data(state)), np.float32).reshape(1)
    return VoxelValues((0.5 + 0.5 * np.tanh(raw)).astype(np.float32), raw)

  def describe(self, voxel: int) -> str:
    return 'value'


def pooling_block(cols: int, detail: int) -> int:
  """Columns averaged per voxel at `detail`: `2**detail` for matrices at least
  `MIN_POOLABLE_COLUMNS` wide, capped to keep `MIN_POOLED_COLUMNS` columns; else 1."""
  if cols < MIN_POOLABLE_COLUMNS or detail <= 0:
    return 1
  return max(1, min(2 ** detail, cols // MIN_POOLED_COLUMNS))


def axis_names_for(name: str, ndim: int) -> Optional[Tuple[str, ...]]:
  """Tooltip axis names for a record name, when known and of the right length."""
  key = name.removeprefix('replay/')
  names = AXIS_NAMES.get('attention' if key.startswith('attention') else key)
  return names if names is not None and len(names) == ndim else None


# A rule: (predicate on a record, factory (record, detail) -> mapper).
Rule = Tuple[Callable[[Record], bool], Callable[[Record, int], VisMapper]]


class MapperRegistry:
  """Chooses a `VisMapper` for a record: the first rule whose predicate accepts it."""

  def __init__(self, rules: Optional[List[Rule]] = None):
    self._rules = list(rules or [])

  def register(self, predicate: Callable[[Record], bool],
               factory: Callable[[Record, int], VisMapper]) -> None:
    """Adds a rule after the existing ones."""
    self._rules.append((predicate, factory))

  def mapper_for(self, record: Record, detail: int = 0) -> VisMapper:
    """The mapper for `record` at `detail`; ValueError naming the record if none fits."""
    for predicate, factory in self._rules:
      if predicate(record):
        return factory(record, detail)
    raise ValueError(f"no mapper for record {record['name']!r} of type {record['type']!r} "
                     f"and shape {record['shape']}")


def _is_integer(record: Record) -> bool:
  return record['type'] == 'tokens' or (record['type'] == 'scalar'
                                         and np.asarray(record['data']).dtype.kind in 'iu')


def _names(record: Record) -> Optional[Tuple[str, ...]]:
  return axis_names_for(record['name'], len(record['shape']))


def default_registry() -> MapperRegistry:
  """Rules: integer tokens/scalars -> TokenMapper; 0-d -> ScalarMapper; 1-d ->
  VectorMapper; 2-d -> MatrixMapper; 3-d and more (attention) -> SlabStackMapper."""
  return MapperRegistry([
      (lambda r: _is_integer(r) and len(r['shape']) <= 1,
       lambda r, detail: TokenMapper(r['shape'], axis_names=_names(r))),
      (lambda r: len(r['shape']) == 0,
       lambda r, detail: ScalarMapper(r['shape'])),
      (lambda r: len(r['shape']) == 1,
       lambda r, detail: VectorMapper(r['shape'], _names(r))),
      (lambda r: len(r['shape']) == 2,
       lambda r, detail: MatrixMapper(r['shape'], detail, _names(r))),
      (lambda r: len(r['shape']) >= 3,
       lambda r, detail: SlabStackMapper(r['shape'], detail, _names(r))),
  ])
