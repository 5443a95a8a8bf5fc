"""A viridis-like colour map: value in [0, 1] -> RGB, as a lookup table."""

import numpy as np

# Viridis sampled at 9 evenly spaced points; linear interpolation between them is
# visually indistinguishable from the full map at voxel sizes. Its darkest colour is
# still clearly brighter than the black background.
_VIRIDIS_KEYS = np.array([
    [0.267, 0.005, 0.329],
    [0.279, 0.175, 0.483],
    [0.230, 0.322, 0.546],
    [0.173, 0.449, 0.558],
    [0.128, 0.567, 0.551],
    [0.158, 0.684, 0.502],
    [0.369, 0.789, 0.383],
    [0.678, 0.864, 0.190],
    [0.993, 0.906, 0.144],
], np.float32)


def viridis(size: int = 256) -> np.ndarray:
  """Lookup table `[size, 3]` float32 in [0, 1]; row i is the colour of value i/(size-1)."""
  keys = np.linspace(0.0, 1.0, len(_VIRIDIS_KEYS))
  x = np.linspace(0.0, 1.0, size)
  return np.stack([np.interp(x, keys, _VIRIDIS_KEYS[:, c]) for c in range(3)],
                  axis=1).astype(np.float32)


def lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
  """Colours `[..., 3]` of normalized `values` `[...]` (clipped to [0, 1])."""
  index = np.rint(np.clip(values, 0.0, 1.0) * (len(table) - 1)).astype(int)
  return table[index]
