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

  HOME_AZIMUTH = -20.0
  HOME_ELEVATION = 25.0
  FIT_FILL = 0.92  # A fitted box spans this fraction of the view along its binding axis.

  def __init__(self, fov_y: float = 35.0):
    self.fov_y = fov_y
    self._home = (np.zeros(3, np.float32), 10.0, self.HOME_AZIMUTH, self.HOME_ELEVATION)
    self.reset()

  def fit(self, low: np.ndarray, high: np.ndarray, aspect: float = 16 / 9) -> None:
    """Sets the home view to show the box `[low, high]` as large as a view of `aspect`
    (width / height) allows from the home angles, and goes there.

    The eye is placed (not only moved back) so that the box's projection is centred and
    spans `FIT_FILL` of the view along the axis that binds (width or height): in camera
    axes (right, up, toward the eye), a corner `q` seen from eye `c` is inside the view
    when `|q_x - c_x| <= tan_x (c_z - q_z)` and likewise for y; for each axis the least
    `c_z` comes with one `c_x`, and the eye takes the larger of the two depths.
    """
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    centre = (low + high) / 2
    self._home = (centre.astype(np.float32), 1.0, self.HOME_AZIMUTH, self.HOME_ELEVATION)
    self.reset()
    axes = self.view()[:3, :3].astype(np.float64)  # Rows: right, up, toward the eye.
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])]) @ axes.T
    tan_y = np.tan(np.radians(self.fov_y) / 2) * self.FIT_FILL
    eye, depths = [], []
    for axis, tan in ((0, tan_y * aspect), (1, tan_y)):
      beyond_high = np.max(corners[:, 2] + corners[:, axis] / tan)
      beyond_low = np.max(corners[:, 2] - corners[:, axis] / tan)
      eye.append(tan * (beyond_high - beyond_low) / 2)
      depths.append((beyond_high + beyond_low) / 2)
    eye = np.array([*eye, max(depths)])
    # Orbit around the point on the line of sight at the depth of the box's centre.
    distance = eye[2] - (axes @ centre)[2]
    target = axes.T @ eye - distance * axes[2]
    self._home = (target.astype(np.float32), max(float(distance), 1.0), self.HOME_AZIMUTH,
                  self.HOME_ELEVATION)
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
