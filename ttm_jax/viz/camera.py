"""An orbit camera: view and projection matrices from a target, distance and angles.

Matrices are numpy `[4, 4]` float32, column-vector convention (`clip = P @ V @ p`); pass
`.T` bytes to GLSL `mat4` uniforms.
"""

import numpy as np


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
  """View matrix `[4, 4]` of a camera at `eye` looking at `target`."""
  forward = target - eye
  forward = forward / np.linalg.norm(forward)
  side = np.cross(forward, up)
  side = side / np.linalg.norm(side)
  true_up = np.cross(side, forward)
  view = np.eye(4, dtype=np.float64)
  view[0, :3], view[1, :3], view[2, :3] = side, true_up, -forward
  view[:3, 3] = -view[:3, :3] @ eye
  return view.astype(np.float32)


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
  """OpenGL perspective projection `[4, 4]` (depth mapped to [-1, 1])."""
  f = 1.0 / np.tan(np.radians(fov_y_deg) / 2.0)
  proj = np.zeros((4, 4), np.float64)
  proj[0, 0], proj[1, 1] = f / aspect, f
  proj[2, 2] = (far + near) / (near - far)
  proj[2, 3] = 2.0 * far * near / (near - far)
  proj[3, 2] = -1.0
  return proj.astype(np.float32)


class OrbitCamera:
  """Orbits a target point: drag to orbit, pan moves the target, wheel zooms.

  Attributes:
    target: `[3]` point looked at.
    distance: eye-target distance.
    azimuth, elevation: degrees; azimuth 0 and elevation 0 look down -z.
    fov_y: vertical field of view in degrees.
  """

  ORBIT_DEG_PER_PIXEL = 0.3
  ZOOM_PER_NOTCH = 0.9

  def __init__(self, fov_y: float = 35.0):
    self.fov_y = fov_y
    self._home = (np.zeros(3, np.float32), 10.0, -20.0, 25.0)
    self.reset()

  def fit(self, low: np.ndarray, high: np.ndarray, aspect: float = 16 / 9) -> None:
    """Sets the home view to frame the box `[low, high]` (with a margin) and goes there."""
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    self._home = ((low + high) / 2, 1.0, -20.0, 25.0)
    self.reset()
    # Box corners in camera axes (right, up, toward the eye), relative to the target.
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])]) - self.target
    axes = self.view()[:3, :3].astype(np.float64)
    right, up, toward = (corners @ axes.T).T
    tan_y = np.tan(np.radians(self.fov_y) / 2)
    # A corner fits when |right| <= (distance - toward) tan_x, and likewise for up.
    distance = np.max(np.maximum(np.abs(right) / (tan_y * aspect), np.abs(up) / tan_y)
                      + toward)
    self._home = (self._home[0], float(distance * 1.08), -20.0, 25.0)
    self.reset()

  def reset(self) -> None:
    """Back to the home view."""
    target, self.distance, self.azimuth, self.elevation = self._home
    self.target = np.array(target, np.float32)

  @property
  def eye(self) -> np.ndarray:
    """`[3]` camera position."""
    az, el = np.radians(self.azimuth), np.radians(self.elevation)
    direction = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    return (self.target + self.distance * direction).astype(np.float32)

  def view(self) -> np.ndarray:
    """View matrix `[4, 4]`."""
    return look_at(self.eye.astype(np.float64), self.target.astype(np.float64),
                   np.array([0.0, 1.0, 0.0]))

  def projection(self, aspect: float) -> np.ndarray:
    """Projection `[4, 4]`; near and far planes follow the distance."""
    return perspective(self.fov_y, aspect, max(self.distance * 0.01, 0.05),
                       self.distance * 4.0 + 100.0)

  def view_projection(self, aspect: float) -> np.ndarray:
    """`projection @ view`, `[4, 4]`."""
    return self.projection(aspect) @ self.view()

  def orbit(self, dx: float, dy: float) -> None:
    """Rotates around the target by a mouse drag of `(dx, dy)` pixels."""
    self.azimuth = self.azimuth - dx * self.ORBIT_DEG_PER_PIXEL
    self.elevation = float(np.clip(self.elevation + dy * self.ORBIT_DEG_PER_PIXEL, -89, 89))

  def pan(self, dx: float, dy: float, viewport_height: float) -> None:
    """Moves the target so the scene follows a drag of `(dx, dy)` pixels."""
    view = self.view()
    units_per_pixel = 2 * self.distance * np.tan(np.radians(self.fov_y) / 2) / viewport_height
    self.target = (self.target - view[0, :3] * dx * units_per_pixel
                   + view[1, :3] * dy * units_per_pixel).astype(np.float32)

  def zoom(self, notches: float) -> None:
    """Moves closer (notches > 0, wheel up) or farther."""
    self.distance = float(np.clip(self.distance * self.ZOOM_PER_NOTCH ** notches, 0.5, 1e5))
