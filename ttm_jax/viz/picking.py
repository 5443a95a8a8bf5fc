"""Ray casting from the mouse to the voxel under it.

Screen coordinates are pixels in the 3D view with the origin at its top-left corner (as
ImGui reports the mouse); `view_projection` is `projection @ view` (`camera.py`).
"""

from typing import Tuple

import numpy as np


def screen_ray(x: float, y: float, width: float, height: float,
               view_projection: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """`(origin [3], unit direction [3])` of the world ray through screen point `(x, y)`."""
  ndc_x, ndc_y = 2.0 * x / width - 1.0, 1.0 - 2.0 * y / height
  inverse = np.linalg.inv(view_projection.astype(np.float64))
  near = inverse @ np.array([ndc_x, ndc_y, -1.0, 1.0])
  far = inverse @ np.array([ndc_x, ndc_y, 1.0, 1.0])
  near, far = near[:3] / near[3], far[:3] / far[3]
  direction = far - near
  return near, direction / np.linalg.norm(direction)


def ray_box_distances(origin: np.ndarray, direction: np.ndarray, low: np.ndarray,
                      high: np.ndarray) -> np.ndarray:
  """Distance along the ray to each axis-aligned box `[low_i, high_i]` (`[N, 3]` each),
  `[N]`; `inf` where the ray misses (slab method; boxes behind the origin miss)."""
  with np.errstate(divide='ignore', invalid='ignore'):
    inverse = 1.0 / direction
    t1 = (low - origin) * inverse
    t2 = (high - origin) * inverse
  # A zero direction component: inside the slab -> (-inf, inf), outside -> miss (nan).
  t_near = np.nanmax(np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2)), axis=1)
  t_far = np.nanmin(np.where(np.isnan(t1), np.inf, np.maximum(t1, t2)), axis=1)
  hit = (t_near <= t_far) & (t_far >= 0.0)
  return np.where(hit, np.maximum(t_near, 0.0), np.inf)


def pick(origin: np.ndarray, direction: np.ndarray, low: np.ndarray,
         high: np.ndarray) -> int:
  """Index of the nearest box hit by the ray, or -1."""
  if not len(low):
    return -1
  distances = ray_box_distances(origin, direction, low, high)
  nearest = int(np.argmin(distances))
  return nearest if np.isfinite(distances[nearest]) else -1


def project(points: np.ndarray, view_projection: np.ndarray, width: float,
            height: float) -> Tuple[np.ndarray, np.ndarray]:
  """Screen positions `[N, 2]` of world `points` `[N, 3]` and a `[N]` mask of those in
  front of the camera."""
  homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
  clip = homogeneous @ view_projection.T.astype(np.float64)
  w = clip[:, 3]
  safe = np.where(np.abs(w) < 1e-9, 1e-9, w)
  ndc = clip[:, :2] / safe[:, None]
  screen = np.stack([(ndc[:, 0] + 1) * width / 2, (1 - ndc[:, 1]) * height / 2], axis=1)
  return screen, w > 1e-6
