"""Tests for the orbit camera and ray-casting math (no OpenGL needed)."""

import numpy as np

from tests import synthetic
from ttm_jax import dumps
from ttm_jax.viz import camera as camera_lib
from ttm_jax.viz import picking
from ttm_jax.viz import renderer
from ttm_jax.viz import scene as scene_lib


def test_camera_looks_at_target_from_its_angles():
  camera = camera_lib.OrbitCamera()
  camera.target = np.array([1.0, 2.0, 3.0], np.float32)
  camera.distance, camera.azimuth, camera.elevation = 10.0, 0.0, 0.0
  np.testing.assert_allclose(camera.eye, [1, 2, 13], atol=1e-5)
  in_view = camera.view() @ np.array([1.0, 2.0, 3.0, 1.0])
  np.testing.assert_allclose(in_view[:3], [0, 0, -10], atol=1e-5)
  camera.orbit(dx=-300, dy=0)  # Drag left by 300 px: azimuth +90 degrees.
  np.testing.assert_allclose(camera.eye, [11, 2, 3], atol=1e-4)
  camera.zoom(1)
  assert np.isclose(camera.distance, 9.0)
  camera.pan(100, 0, viewport_height=500)
  assert camera.target[2] > 3.0  # Dragging right moves the target left (here: +z).


def test_fit_frames_the_box_and_reset_returns_home():
  camera = camera_lib.OrbitCamera()
  low, high = np.array([0.0, -100.0, -2.0]), np.array([250.0, 0.0, 0.0])
  camera.fit(low, high, aspect=16 / 9)
  corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                      for z in (low[2], high[2])])
  screen, in_front = picking.project(corners, camera.view_projection(16 / 9), 1600, 900)
  assert in_front.all()
  assert (screen >= 0).all() and (screen[:, 0] <= 1600).all() and (screen[:, 1] <= 900).all()
  assert screen[:, 0].max() - screen[:, 0].min() > 1000  # Not tiny either.
  home = (camera.distance, camera.azimuth, camera.elevation)
  camera.orbit(40, 20)
  camera.zoom(-3)
  camera.reset()
  assert (camera.distance, camera.azimuth, camera.elevation) == home


def test_ray_box_distances_nearest_hit_and_misses():
  low = np.array([[0, 0, 0], [0, 0, -5], [3, 0, 0]], np.float64)
  high = low + 1.0
  origin, direction = np.array([0.5, 0.5, 10.0]), np.array([0.0, 0.0, -1.0])
  distances = picking.ray_box_distances(origin, direction, low, high)
  np.testing.assert_allclose(distances[:2], [9.0, 14.0])
  assert np.isinf(distances[2])
  assert picking.pick(origin, direction, low, high) == 0
  assert picking.pick(origin, -direction, low, high) == -1  # Boxes behind the ray.
  assert picking.pick(np.array([9.0, 9.0, 9.0]), direction, low, high) == -1
  assert picking.pick(origin, direction, low[:0], high[:0]) == -1


def test_screen_ray_passes_through_projected_point():
  camera = camera_lib.OrbitCamera()
  camera.fit(np.zeros(3), np.array([50.0, 20.0, 5.0]))
  view_projection = camera.view_projection(4 / 3)
  points = np.random.default_rng(0).uniform(0, 20, (10, 3))
  screen, _ = picking.project(points, view_projection, 800, 600)
  for point, (x, y) in zip(points, screen):
    origin, direction = picking.screen_ray(x, y, 800, 600, view_projection)
    offset = point - origin
    miss = np.linalg.norm(offset - offset.dot(direction) * direction)
    assert miss < 1e-3


def test_picking_a_voxel_face_centre_returns_that_voxel():
  records, info = synthetic.sequence('12×3', d=32, m=12, r=4)
  step = dumps.DumpSequence(None, info, records).at_step(0)
  scene = scene_lib.Scene(step)
  values = scene.values(step).values
  low, high = renderer.voxel_boxes(scene.positions, scene.sizes, values)
  camera = camera_lib.OrbitCamera()
  camera.fit(*scene.bounds())
  view_projection = camera.view_projection(16 / 9)
  exact = 0
  for voxel in np.random.default_rng(1).choice(scene.count, 25, replace=False):
    face_centre = (low[voxel] + high[voxel]) / 2
    face_centre[2] = high[voxel, 2]  # The +z face, which faces the camera.
    (x, y), = picking.project(face_centre[None], view_projection, 1600, 900)[0]
    origin, direction = picking.screen_ray(x, y, 1600, 900, view_projection)
    hit = picking.pick(origin, direction, low, high)
    distances = picking.ray_box_distances(origin, direction, low, high)
    # The voxel itself, or one that really is nearer along the same ray (occluding it).
    assert hit == voxel or distances[hit] < distances[voxel]
    exact += hit == voxel
  assert exact >= 20
