"""Tests for the orbit camera's fit: the home view frames the scene (no OpenGL needed)."""

import numpy as np
import pytest

from tests import synthetic
from ttm_jax import dumps
from ttm_jax.viz import app as app_lib
from ttm_jax.viz import camera as camera_lib
from ttm_jax.viz import picking
from ttm_jax.viz import scene as scene_lib

VIEW = (960, 520)  # The 3D view of the default 1280x720 window (75% x 75%, less the title).


def corners(low, high):
  return np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                   for z in (low[2], high[2])])


def projected_box(points, camera, width, height):
  """`(x_min, y_min, x_max, y_max)` on screen of `points` seen by `camera`; all must be in
  front of it."""
  screen, in_front = picking.project(points, camera.view_projection(width / height), width,
                                     height)
  assert in_front.all()
  return (*screen.min(0), *screen.max(0))


@pytest.mark.parametrize('low, high', [
    ((0, -25, -11), (225, 0, 0)),     # The default model's scene before the fitted rows.
    ((0, -100, -2), (250, 0, 0)),
    ((-5, -300, 0), (20, 0, 40)),     # Tall.
    ((0, 0, 0), (30, 30, 30)),        # A cube: its near corners bind.
    ((0, 0, 0), (0, 0, 0)),           # A point.
])
@pytest.mark.parametrize('width, height', [(960, 520), (800, 800), (400, 900)])
def test_fit_centres_the_box_and_fills_the_binding_axis(low, high, width, height):
  camera = camera_lib.OrbitCamera()
  low, high = np.array(low, float), np.array(high, float)
  camera.fit(low, high, aspect=width / height)
  x0, y0, x1, y1 = projected_box(corners(low, high), camera, width, height)
  assert x0 >= -1e-3 and y0 >= -1e-3 and x1 <= width + 1e-3 and y1 <= height + 1e-3
  fill_x, fill_y = (x1 - x0) / width, (y1 - y0) / height
  if np.any(high > low):
    binding = int(fill_y > fill_x)
    assert max(fill_x, fill_y) == pytest.approx(camera.FIT_FILL, abs=1e-3)
    # Centred along the binding axis, and within a few per cent along the other.
    centre = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height])
    assert centre[binding] == pytest.approx(0.5, abs=1e-3)
    assert centre[1 - binding] == pytest.approx(0.5, abs=0.05)
  assert camera.distance > 0
  assert (camera.azimuth, camera.elevation) == (camera.HOME_AZIMUTH, camera.HOME_ELEVATION)


def test_first_frame_of_the_shipped_model_shape_fills_the_view():
  """The default model's step (d=64, m=16, r=8, 4 layers) laid out for the 3D view and
  framed by the fit fills most of the view both ways (before: 80% of the width, 38% of
  the height, as one long strip)."""
  records, info = synthetic.sequence('92×98', d=64, m=16, r=8, n=13, heads=4, layers=4)
  step = {name: record for name, record in dumps.DumpSequence(None, info, records)
          .at_step(0).items() if name not in app_lib.DEFAULT_HIDDEN}
  width, height = VIEW
  scene = scene_lib.Scene(step, aspect=width / height)
  camera = camera_lib.OrbitCamera()
  camera.fit(*scene.bounds(), aspect=width / height)
  half = scene.sizes / 2
  voxel_corners = np.concatenate([scene.positions + half * sign
                                  for sign in corners(-np.ones(3), np.ones(3))])
  x0, y0, x1, y1 = projected_box(voxel_corners, camera, width, height)
  assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height
  assert (x1 - x0) / width > 0.6 and (y1 - y0) / height > 0.6


def test_rows_follow_the_view_shape():
  """A wide view gets fewer, longer rows than a tall one; items never overlap."""
  records, info = synthetic.sequence('12×34', d=64, m=16, r=8, n=13)
  step = dumps.DumpSequence(None, info, records).at_step(0)
  wide, tall = scene_lib.Scene(step, aspect=3.0), scene_lib.Scene(step, aspect=0.5)
  (wide_low, wide_high), (tall_low, tall_high) = wide.bounds(), tall.bounds()
  wide_size, tall_size = wide_high - wide_low, tall_high - tall_low
  assert wide_size[0] / wide_size[1] > tall_size[0] / tall_size[1]
  assert wide.count == tall.count
  for scene in (wide, tall):
    rects = [(item.offset[0], item.offset[1] - item.mapper.get_voxel_layout().extent[1],
              item.offset[0] + item.mapper.get_voxel_layout().extent[0], item.offset[1])
             for item in scene.items]
    for i, a in enumerate(rects):
      for b in rects[i + 1:]:
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
