"""Tests for instanced voxel rendering: real headless OpenGL (EGL, llvmpipe on CPU)."""

import moderngl
import numpy as np
import pytest

from tests import synthetic
from ttm_jax import dump_files
from ttm_jax.viz import camera as camera_lib
from ttm_jax.viz import colormap
from ttm_jax.viz import picking
from ttm_jax.viz import renderer as renderer_lib
from ttm_jax.viz import scene as scene_lib

WIDTH, HEIGHT = 480, 270
FRONT_LIGHT = 0.6 + 0.4 * 0.77  # voxel.vert's shading of a +z face (LIGHT.z = 0.77).


@pytest.fixture(name='gl', scope='module')
def fixture_gl(opengl):
  del opengl  # Skips without OpenGL.
  ctx = moderngl.create_standalone_context(backend='egl', require=330)
  fbo = ctx.framebuffer(color_attachments=ctx.texture((WIDTH, HEIGHT), 4),
                        depth_attachment=ctx.depth_texture((WIDTH, HEIGHT)))
  yield ctx, fbo
  ctx.release()


@pytest.fixture(name='sequence', scope='module')
def fixture_sequence(tmp_path_factory):
  records, info = synthetic.sequence('12×34', d=24, m=8, r=4, heads=2, layers=1)
  path = dump_files.write_sequence(tmp_path_factory.mktemp('dumps'), records, info)
  return dump_files.load_sequence(path)


def draw(gl, voxels, camera, selected=-1):
  ctx, fbo = gl
  fbo.use()
  ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
  voxels.render(camera.view_projection(WIDTH / HEIGHT), camera.eye, (0, 0, WIDTH, HEIGHT),
                selected)
  ctx.finish()
  pixels = np.frombuffer(fbo.read(components=3), np.uint8).reshape(HEIGHT, WIDTH, 3)
  return pixels[::-1].astype(int)  # Top row first, like screen coordinates.


def front_camera(scene):
  """A narrow-angle camera straight down -z: every voxel's +z face is seen head on."""
  camera = camera_lib.OrbitCamera(fov_y=8.0)
  camera.fit(*scene.bounds(), aspect=WIDTH / HEIGHT)
  camera.azimuth = camera.elevation = 0.0
  return camera


def test_known_dump_draws_voxels_where_the_layout_says_and_black_elsewhere(gl, sequence):
  step = sequence.at_step(0)
  scene = scene_lib.Scene(step)
  values = scene.values(step).values
  voxels = renderer_lib.VoxelRenderer(gl[0], colormap.viridis())
  voxels.set_layout(scene.positions, scene.sizes)
  voxels.set_values(values)
  camera = front_camera(scene)
  pixels = draw(gl, voxels, camera)
  view_projection = camera.view_projection(WIDTH / HEIGHT)

  low, high = renderer_lib.voxel_boxes(scene.positions, scene.sizes, values)
  covered = np.zeros((HEIGHT, WIDTH), bool)
  for lo, hi in zip(low, high):
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    screen, _ = picking.project(corners, view_projection, WIDTH, HEIGHT)
    x0, y0 = np.floor(screen.min(0)).astype(int) - 1
    x1, y1 = np.ceil(screen.max(0)).astype(int) + 1
    covered[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
  assert covered.mean() > 0.05
  assert pixels[~covered].max() == 0  # True black wherever no voxel is.

  # At each voxel's +z face centre, the pixel has the colour of the voxel that ray
  # casting finds there: that voxel, or one in front of it (stacked attention heads).
  face_centres = (low + high) / 2
  face_centres[:, 2] = high[:, 2]
  screen, _ = picking.project(face_centres, view_projection, WIDTH, HEIGHT)
  xy = np.floor(screen).astype(int)
  assert ((xy >= 0) & (xy < [WIDTH, HEIGHT])).all()
  hits = np.array([picking.pick(*picking.screen_ray(x + 0.5, y + 0.5, WIDTH, HEIGHT,
                                                    view_projection), low, high)
                   for x, y in xy])
  assert (hits >= 0).all()
  assert (hits == np.arange(scene.count)).mean() > 0.95
  # Mostly the +z face (shaded FRONT_LIGHT); at an edge a side face (shaded 0.6 to 1).
  colour = colormap.lookup(colormap.viridis(), values[hits]) * 255
  drawn = pixels[xy[:, 1], xy[:, 0]]
  light = (drawn * colour).sum(1) / (colour * colour).sum(1)
  assert np.abs(drawn - light[:, None] * colour).max() <= 4
  assert light.min() > 0.58 and light.max() < 1.01
  assert np.mean(np.abs(light - FRONT_LIGHT) < 0.02) > 0.95
  voxels.release()


def test_value_updates_write_only_changed_ranges(gl, sequence):
  step0, step1 = sequence.at_step(0), sequence.at_step(1)
  scene = scene_lib.Scene(step0)
  voxels = renderer_lib.VoxelRenderer(gl[0], colormap.viridis())
  voxels.set_layout(scene.positions, scene.sizes)
  total = scene.count * renderer_lib.VALUE_STRIDE
  assert voxels.set_values(scene.values(step0).values).bytes == total
  camera = front_camera(scene)
  before = draw(gl, voxels, camera)

  write = voxels.set_values(scene.values(step1).values)
  assert 0 < write.bytes < total and write.total_bytes == total
  assert voxels.geometry_writes == 1  # The layout buffer was not touched.
  inputs = scene.item('inputs')  # Only the last (fed-back answer) tokens change.
  unchanged = (inputs.start * 4, (inputs.start + 6) * 4)  # 1 2 × 3 4 <EOS>.
  assert all(stop <= unchanged[0] or start >= unchanged[1] for start, stop in write.ranges)
  after = draw(gl, voxels, camera)
  assert (after != before).any(axis=2).mean() > 0.01

  assert voxels.set_values(scene.values(step1).values).bytes == 0
  values = scene.values(step1).values.copy()
  values[5] = 1.0 - values[5]
  write = voxels.set_values(values)
  assert write.ranges == [(20, 24)]
  voxels.release()


def test_selected_voxel_is_highlighted(gl, sequence):
  step = sequence.at_step(0)
  scene = scene_lib.Scene(step)
  values = scene.values(step).values
  voxels = renderer_lib.VoxelRenderer(gl[0], colormap.viridis())
  voxels.set_layout(scene.positions, scene.sizes)
  voxels.set_values(values)
  camera = front_camera(scene)
  voxel = scene.index_of('memory_out', 30)
  low, high = renderer_lib.voxel_boxes(scene.positions, scene.sizes, values)
  centre = (low[voxel] + high[voxel]) / 2
  centre[2] = high[voxel, 2]
  (x, y), = picking.project(centre[None], camera.view_projection(WIDTH / HEIGHT), WIDTH,
                            HEIGHT)[0]
  plain = draw(gl, voxels, camera)[int(y), int(x)]
  lit = draw(gl, voxels, camera, selected=voxel)[int(y), int(x)]
  assert lit.min() > 200 and lit.sum() > plain.sum()
  voxels.release()
