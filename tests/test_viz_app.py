"""Tests for the dashboard: a real headless window (EGL), frames driven by hand, input
through the window's event handlers (ImGui io events)."""

import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import synthetic
from ttm_jax import dump_files
from ttm_jax import evaluate
from ttm_jax.viz import app as app_lib
from ttm_jax.viz import cli
from ttm_jax.viz import panel_view
from ttm_jax.viz import picking
from ttm_jax.viz import replay as replay_lib
from ttm_jax.viz import scene as scene_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(d=16, m=6, r=4, heads=2, layers=1)
LEFT, RIGHT = 1, 2  # moderngl-window mouse buttons.


def toy_step(memory, step_inputs, step):
  """A stand-in model: memory decays and takes in the tokens; logits read slot 0."""
  pattern = np.zeros(memory.shape[1], np.float32)
  pattern[:len(step_inputs)] = np.asarray(step_inputs) / 12
  new_memory = (0.5 * memory + 0.1 * pattern + 0.01 * step).astype(np.float32)
  return new_memory, 10 * new_memory[0, :13]


@pytest.fixture(name='dump_dir')
def fixture_dump_dir(tmp_path):
  for example, problem in enumerate(['123×45', '7×8']):
    dump_files.write_sequence(tmp_path / 'dumps', *synthetic.sequence(
        problem, example=example, step_fn=toy_step, **SMALL))
  return tmp_path / 'dumps'


@pytest.fixture(name='open_app')
def fixture_open_app(opengl):
  del opengl  # Skips without OpenGL.
  opened = []

  def open_app(path, *extra, adaptive=False):
    fixed = [] if adaptive else ['--detail', '0']
    app = cli.create_app([str(path), '--window', 'headless', '--backend', 'egl', '--size',
                          '1280x720', '--poll-interval', '0', *fixed, *extra])
    opened.append(app)
    return app

  yield open_app
  for app in opened:
    app.close()
    app.wnd.destroy()


def frames(app, count=1):
  cli.render_frames(app, count, frame_time=1 / 60)


def view_pixels(app):
  x, y, w, h = (int(v) for v in app.view_rect)
  return cli.read_pixels(app)[y:y + h, x:x + w].astype(int)


def window_point(app, voxel):
  """Window pixel (ImGui floors mouse positions) at the centre of `voxel`'s +z face (the
  face toward the camera)."""
  low, high = app.boxes
  centre = (low[voxel] + high[voxel]) / 2
  centre[2] = high[voxel, 2]
  x, y, w, h = app.view_rect
  (sx, sy), = picking.project(centre[None], app.view_projection(), w, h)[0]
  return int(x + sx), int(y + sy)


def assert_no_scrolling(app):
  assert set(app.panel_scroll) == {'view', 'timeline', 'properties', 'performance'}
  assert all(scroll == 0 for scroll in app.panel_scroll.values()), app.panel_scroll


def test_dashboard_draws_the_first_step_in_four_fixed_panels(dump_dir, open_app):
  app = open_app(dump_dir)
  frames(app, 3)
  assert app.timeline.num_sequences == 2 and app.current_step == 0
  assert app.scene is not None and app.scene.item('memory_out') is not None
  assert app.scene.item('memory_in') is None  # Hidden by default.
  assert app.view_rect[2] > 900 and app.view_rect[3] > 480
  assert_no_scrolling(app)
  pixels = view_pixels(app)
  lit = pixels.sum(2) > 0
  assert 0.02 < lit.mean() < 0.9  # Voxels, on a true black background.
  assert (pixels[~lit] == 0).all()


def test_click_selects_the_voxel_picking_predicts(dump_dir, open_app):
  app = open_app(dump_dir)
  frames(app, 2)
  target = app.scene.index_of('memory_out', 2 * 16 + 5)
  x, y = window_point(app, target)
  predicted = app.pick(x, y)
  assert predicted == target
  app.on_mouse_position_event(x, y, 0, 0)
  frames(app, 2)  # ImGui reports an item hovered from the frame after the move.
  assert app.hovered == predicted
  app.on_mouse_press_event(x, y, LEFT)
  frames(app)
  app.on_mouse_release_event(x, y, LEFT)
  frames(app)
  assert app.selected == panel_view.Selection('memory_out', (2, 5))
  assert app.selected_index == predicted
  assert cli.read_pixels(app)[y, x].min() > 200  # Drawn highlighted.

  # A press and release within one frame still selects (ImGui queues both events).
  other = app.scene.index_of('outputs', 7)
  x, y = window_point(app, other)
  app.on_mouse_position_event(x, y, 0, 0)
  app.on_mouse_press_event(x, y, LEFT)
  app.on_mouse_release_event(x, y, LEFT)
  frames(app, 3)
  assert app.selected_index == app.pick(x, y) == other


def test_mouse_orbits_pans_zooms_and_resets_the_camera(dump_dir, open_app):
  app = open_app(dump_dir)
  frames(app, 2)
  home = (app.camera.azimuth, app.camera.distance, tuple(app.camera.target))
  x, y = app.view_rect[0] + 300, app.view_rect[1] + 300
  app.on_mouse_position_event(x, y, 0, 0)
  frames(app)
  app.on_mouse_press_event(x, y, LEFT)
  frames(app)
  for step in range(1, 4):
    app.on_mouse_drag_event(x + 20 * step, y, 20, 0)
    frames(app)
  app.on_mouse_release_event(x + 60, y, LEFT)
  frames(app)
  assert app.camera.azimuth < home[0] - 5  # Orbited...
  assert app.selected is None  # ...and a drag is not a click.
  app.on_mouse_scroll_event(0, 2)
  frames(app)
  assert app.camera.distance == pytest.approx(home[1] * 0.81)
  app.on_mouse_press_event(x, y, RIGHT)
  frames(app)
  app.on_mouse_drag_event(x, y + 40, 0, 40)
  frames(app)
  app.on_mouse_release_event(x, y + 40, RIGHT)
  frames(app)
  assert tuple(app.camera.target) != home[2]
  app.select(app.scene.index_of('memory_out', 0))
  selected = app.selected
  reset = app.view_rect[0] + 20, app.view_rect[1] + 14  # The "Reset view" button.
  app.on_mouse_position_event(*reset, 0, 0)
  frames(app, 2)
  app.on_mouse_press_event(*reset, LEFT)
  frames(app)
  app.on_mouse_release_event(*reset, LEFT)
  frames(app)
  assert (app.camera.azimuth, app.camera.distance, tuple(app.camera.target)) == home
  assert app.selected == selected  # A click on the button is not a click on the scene.


def test_timeline_step_redraws_with_a_partial_value_write(dump_dir, open_app):
  app = open_app(dump_dir)
  frames(app, 2)
  before = view_pixels(app)
  layouts = app.voxels.geometry_writes
  app.timeline.step_forward()
  frames(app)
  assert app.current_step == 1
  write = app.voxels.last_write
  assert 0 < write.bytes < write.total_bytes
  assert app.voxels.geometry_writes == layouts
  assert (view_pixels(app) != before).any(axis=2).mean() > 0.005
  app.timeline.playing = True
  cli.render_frames(app, 4, frame_time=0.5)  # 2 steps/s: one step per frame.
  assert (app.timeline.sequence, app.current_step) == (1, 0)  # 123×45 has 5 steps.


def test_one_example_dump_first_frame_frames_the_scene_and_counts_from_one(tmp_path,
                                                                          open_app,
                                                                          monkeypatch):
  """What `--mode=trace --problem=...` writes (one example): every voxel inside the 3D
  view and filling most of it; the timeline reads 'example 1 / 1', never '0 / 0'."""
  dump_files.write_sequence(tmp_path / 'dumps', *synthetic.sequence(
      '92×98', d=64, m=16, r=8, n=13, heads=4, layers=4))
  shown = []
  for name in ('text', 'slider_int'):
    original = getattr(app_lib.imgui, name)

    def record(*args, _original=original, **kwargs):
      shown.extend(str(a) for a in args if isinstance(a, str))
      return _original(*args, **kwargs)
    monkeypatch.setattr(app_lib.imgui, name, record)
  app = open_app(tmp_path / 'dumps')
  frames(app, 3)
  assert 'example 1 / 1' in shown and '%d / 5' in shown  # One example; its 5 steps.
  assert not any(text.endswith(' / 0') for text in shown)  # Nor the slider's '%d / 0'.
  x, y, w, h = app.view_rect
  screen, in_front = picking.project(np.concatenate(app.boxes), app.view_projection(), w, h)
  assert in_front.all()
  low, high = screen.min(0), screen.max(0)
  assert (low >= 0).all() and high[0] <= w and high[1] <= h
  assert (high - low)[0] / w > 0.6 and (high - low)[1] / h > 0.6


def test_slow_frames_coarsen_the_embedding_axis_and_fast_ones_restore_it(tmp_path,
                                                                        open_app):
  dump_files.write_sequence(tmp_path, *synthetic.sequence('12×3', d=64, m=8, r=4,
                                                          heads=1, layers=1))
  app = open_app(tmp_path, adaptive=True)
  frames(app, 2)
  full = app.scene.item('memory_out').count
  assert app.detail.auto and app.detail.level == 0 and full == 8 * 64
  cli.render_frames(app, 25, frame_time=1 / 20)  # 1.25 s at 20 fps, target 60.
  assert app.detail.level == 1
  assert app.scene.item('memory_out').count == full // 2
  assert app.scene.item('memory_out').mapper.block == 2
  cli.render_frames(app, 700, frame_time=1 / 300)  # 2.3 s at 300 fps: headroom.
  assert app.detail.level == 0 and app.scene.item('memory_out').count == full


def test_corrupt_dump_shows_an_error_and_the_app_keeps_running(dump_dir, open_app):
  entries = dump_files.load_index(dump_dir)
  broken = pathlib.Path(entries[1]['path'])
  broken.write_bytes(broken.read_bytes()[:broken.stat().st_size // 2])
  app = open_app(dump_dir)
  frames(app, 2)
  app.timeline.seek(1, 0)
  frames(app, 2)
  assert app.scene is None
  assert broken.name in app.sequence_error and 'truncated' in app.sequence_error
  assert app.messages[-1] == (True, app.sequence_error)
  red = view_pixels(app)
  assert ((red[..., 0] > 200) & (red[..., 1] < 150)).sum() > 50  # The error, in red.
  assert_no_scrolling(app)
  app.timeline.seek(0, 0)
  frames(app)
  assert app.scene is not None and app.sequence_error is None
  (dump_dir / 'index.json').write_text('{"format": "ttm_jax.dump_index", "vers')
  frames(app, 2)
  assert 'corrupt dump index' in app.source.error
  assert app.scene is not None and app.timeline.num_sequences == 2


def test_follows_a_training_workdir_live(tmp_path, open_app):
  workdir = tmp_path / 'run'
  app = open_app(workdir)
  frames(app, 2)
  assert app.scene is None and 'no such folder' in app.source.error
  dump_files.write_sequence(workdir / 'dumps', *synthetic.sequence('2×3', **SMALL))
  frames(app, 2)
  assert app.timeline.num_sequences == 1 and app.scene is not None
  dump_files.write_sequence(workdir / 'dumps', *synthetic.sequence('4×5', example=1,
                                                                   **SMALL))
  frames(app)
  assert app.timeline.num_sequences == 2


def test_edit_memory_and_replay_beside_the_original(dump_dir, open_app):
  app = open_app(dump_dir)
  files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in dump_dir.iterdir()}
  frames(app, 2)
  app.timeline.seek(0, 1)
  frames(app)
  assert app.replay() is None and 'needs a model' in app.messages[-1][1]
  app.step_fn = toy_step
  app.select(app.scene.index_of('memory_out', 7))  # Slot 0, dim 7: feeds step 2 on.
  assert app.replay().start_step == 2  # (Reproducing a real recording: the real-model test.)

  app.edit('memory_out', (0, 7), 50.0)
  frames(app)
  assert app.raw_values[app.selected_index] == 50.0  # The edit is drawn.
  edited = app.replay()
  assert [s.prediction for s in edited.steps] == [7, 7, 7]
  assert edited.changed_steps
  app.timeline.seek(0, 3)
  frames(app, 2)
  replayed = app.scene.item(scene_lib.REPLAY_PREFIX + 'memory_out')
  assert replayed is not None
  assert replayed.offset[1] == app.scene.item('memory_out').offset[1]  # Beside it.
  voxel = app.scene.index_of(scene_lib.REPLAY_PREFIX + 'prediction', 0)
  assert app.raw_values[voxel] == 7
  assert_no_scrolling(app)
  app.revert_edits()
  frames(app)
  assert app.scene.item(scene_lib.REPLAY_PREFIX + 'memory_out') is None
  assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in dump_dir.iterdir()} == files


def mult_config():
  """`configs/mult.py:runlocal`."""
  spec = importlib.util.spec_from_file_location('mult_config', ROOT / 'configs' / 'mult.py')
  config_module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(config_module)
  return config_module.get_config('runlocal')


def save_untrained_checkpoint(workdir):
  """A real training workdir (config.json + orbax best/ step) holding initial parameters
  of the `runlocal` model (d=32, m=8, r=4): what `--checkpoint` loads."""
  import jax  # pylint: disable=import-outside-toplevel
  from ttm_jax import checkpoint  # pylint: disable=import-outside-toplevel
  from ttm_jax import factory  # pylint: disable=import-outside-toplevel
  config = mult_config()
  model = factory.make_model(config)
  n = factory.make_framing(config).tokens_per_step
  params = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, 1, n), np.int32))['params']
  checkpoint.write_config(str(workdir), config)
  checkpoints = checkpoint.Checkpoints(str(workdir))
  checkpoints.save(0, params, {'step': 0}, {'config': checkpoint.config_sections(config)},
                   is_best=True)
  checkpoints.close()
  return model, params, n


def test_checkpoint_replay_runs_the_real_model(tmp_path, open_app):
  import jax  # pylint: disable=import-outside-toplevel
  from ttm_jax import factory  # pylint: disable=import-outside-toplevel
  model, params, n = save_untrained_checkpoint(tmp_path / 'run')
  step_fn = replay_lib.checkpoint_step_fn(tmp_path / 'run')
  memory = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
  inputs = np.arange(n, dtype=np.int32) % 13
  new_memory, logits = step_fn(memory, inputs, 2)
  expected = jax.jit(lambda *args: model.apply({'params': params}, *args,
                                               method=model.step))(memory[None],
                                                                   inputs[None], 2)
  np.testing.assert_allclose(new_memory, expected[0][0], atol=1e-5)
  np.testing.assert_allclose(logits, expected[1][0], atol=1e-5)

  # A dump traced by the jitted, scanned decode replays to the same outputs in the dashboard.
  evaluate.trace_problems(model, params, factory.make_framing(mult_config()), np.array([12]),
                          np.array([34]), str(tmp_path / 'dumps'))
  app = open_app(tmp_path / 'dumps', '--checkpoint', str(tmp_path / 'run'))
  assert app.step_fn is not None
  frames(app, 2)
  result = app.replay()
  assert result.start_step == 0 and [s.step for s in result.steps] == [0, 1, 2, 3, 4]
  # (Its predictions are argmaxes of the raw logits, while the recording's are masked to EOS
  # after the first EOS, so `changed_steps` of this untrained model, EOS at once, is not empty.)
  for replayed in result.steps:
    np.testing.assert_allclose(replayed.logits,
                               app.sequence.at_step(replayed.step)['logits']['data'],
                               atol=1e-5)


def test_unloadable_checkpoint_is_a_message(dump_dir, tmp_path, open_app):
  app = open_app(dump_dir, '--checkpoint', str(tmp_path / 'nothing'))
  frames(app)
  assert app.step_fn is None
  assert app.messages[-1][0] and 'cannot load for replay' in app.messages[-1][1]


def run_viewer(*args, env=None):
  return subprocess.run([sys.executable, str(ROOT / 'tools' / 'viewer.py'), *args],
                        capture_output=True, text=True, timeout=120, check=False,
                        env={**os.environ, **(env or {})})


def test_screenshot_command_writes_the_dashboard(dump_dir, tmp_path, opengl):
  del opengl  # Skips without OpenGL.
  out = tmp_path / 'shot.png'
  done = run_viewer(str(dump_dir), '--screenshot', str(out))
  assert done.returncode == 0, done.stderr
  image = np.asarray(Image.open(out).convert('RGB'))
  assert image.shape == (720, 1280, 3)
  view = image[30:530, :950]
  assert (view.sum(2) > 0).mean() > 0.02 and (view.sum(2) == 0).mean() > 0.3


@pytest.mark.parametrize('path, error', [
    ('nope', 'viewer: error: {tmp}/nope: no such folder (waiting for it)'),
    ('empty', 'viewer: error: {tmp}/empty: no dumps yet (waiting for index.json)'),
    ('corrupt', 'viewer: error: {tmp}/corrupt/index.json: corrupt dump index (JSONDecodeError: '
     'Unterminated string starting at: line 1 column 2 (char 1))'),
])
def test_screenshot_of_an_unreadable_folder_is_one_error_line(tmp_path, opengl, path, error):
  del opengl  # Skips without OpenGL.
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'corrupt').mkdir()
  (tmp_path / 'corrupt' / 'index.json').write_text('{"bad')
  done = run_viewer(str(tmp_path / path), '--screenshot', str(tmp_path / 'x.png'))
  assert (done.returncode, done.stderr) == (1, error.format(tmp=tmp_path) + '\n')
  assert not (tmp_path / 'x.png').exists()


def test_without_opengl_33_one_error_line_and_nonzero_exit(dump_dir, tmp_path, opengl):
  del opengl  # Skips without OpenGL (an OpenGL 3.0 one is what this test asks for).
  done = run_viewer(str(dump_dir), '--screenshot', str(tmp_path / 'x.png'),
                    env={'MESA_GL_VERSION_OVERRIDE': '3.0'})
  assert done.returncode == 2
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('viewer: error: cannot create an OpenGL 3.3')
  assert not (tmp_path / 'x.png').exists()
