"""The dashboard: one window, four fixed panels, no scrolling (imgui-bundle on moderngl).

  +--------------------------------------+--------------+
  | 3D view (75% x 75%)                  | properties   |
  |   voxels of the current step         | (25% x 75%)  |
  +--------------------------------------+--------------+
  | timeline (75% x 25%)                 | performance  |
  +--------------------------------------+--------------+

Frame order (`frame`): poll the dumps folder, advance playback, update the level of detail,
build the ImGui panels (which read the mouse through ImGui: hover picks, click selects,
drag orbits/pans, wheel zooms), bring the GPU buffers up to date with the current step
(`_sync_scene`), then clear to black, draw the voxels into the 3D view's rectangle and
draw ImGui on top. All input goes through ImGui's io (`add_mouse_*_event`), so a headless
window can be driven by calling the `on_mouse_*` handlers and `frame` by hand.

The window holds the state (the followed dumps, the current sequence and step, visibility,
selection, edits) and composes the panels, each drawn by a mixin in its own module:
`panel_view`, `panel_timeline`, `panel_properties` and `panel_performance` (their layout:
`panels.py`).
"""

import argparse
import collections
import logging
from typing import Any, Dict, Optional, Tuple

import moderngl_window as mglw
import numpy as np
from imgui_bundle import imgui
from moderngl_window.integrations.imgui_bundle import ModernglWindowRenderer

from ttm_jax import dumps
from ttm_jax.viz import camera as camera_lib
from ttm_jax.viz import colormap
from ttm_jax.viz import detail as detail_lib
from ttm_jax.viz import panel_performance
from ttm_jax.viz import panel_properties
from ttm_jax.viz import panel_timeline
from ttm_jax.viz import panel_view
from ttm_jax.viz import panels
from ttm_jax.viz import renderer as renderer_lib
from ttm_jax.viz import replay as replay_lib
from ttm_jax.viz import scene as scene_lib
from ttm_jax.viz import source as source_lib
from ttm_jax.viz import timeline as timeline_lib

logger = logging.getLogger(__name__)

# Off until ticked: memory_in repeats the previous step's memory_out, and the write and
# erase/add weights are as large as the memory.
DEFAULT_HIDDEN = frozenset({'memory_in', 'write_weights', 'erase_weights', 'add_weights'})
REPLAYED = ('memory_out', 'logits', 'prediction')  # Replay results shown as `replay/NAME`.
MOUSE_BUTTONS = {1: 0, 2: 1, 3: 2}  # moderngl-window button -> ImGui button.


class DashboardApp(panel_view.ViewPanel, panel_timeline.TimelinePanel,
                   panel_properties.PropertiesPanel, panel_performance.PerformancePanel,
                   mglw.WindowConfig):
  """The viewer window. Options come from the command line (`add_arguments`).

  Attributes (the state tests and tools drive):
    source: the followed `DumpSource`.
    timeline: playback position.
    detail: adaptive level of detail.
    camera: the 3D view's orbit camera.
    scene: voxels of the current step (None before anything loaded).
    selected: the selected element, or None; `selected_index` its voxel (-1 if hidden).
    hovered: voxel under the mouse, or -1.
    boxes: `(low [N, 3], high [N, 3])` of the voxels as drawn (what picking tests).
    step_fn: the model step used by replay (from `--checkpoint`), or None.
    replay_result: the last replay, or None.
    messages: recent errors and notices, newest last.
    panel_scroll: per panel, ImGui's maximum scroll after the last frame (0: fits).
  """
  gl_version = (3, 3)
  title = 'ttm_jax viewer'
  window_size = (1280, 720)
  aspect_ratio = None
  resizable = True
  clear_color = None  # `frame` clears the screen itself.
  log_level = logging.WARNING  # moderngl-window's own logging (context details).

  @classmethod
  def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
    parser.add_argument('path', help='a dumps folder (with index.json), or a training '
                        'workdir whose dumps/ subfolder is followed live')
    parser.add_argument('--checkpoint', default=None,
                        help='training workdir whose best checkpoint replay runs')
    parser.add_argument('--show', default=None,
                        help='comma-separated record names to show (default: all but '
                        + ', '.join(sorted(DEFAULT_HIDDEN)) + ')')
    parser.add_argument('--target-fps', type=float, default=60.0,
                        help='adaptive detail keeps at least this frame rate')
    parser.add_argument('--detail', type=int, default=None,
                        help='fixed detail level (embedding axis pooled by 2**level); '
                        'default: adaptive')
    parser.add_argument('--poll-interval', type=float, default=1.0,
                        help='seconds between checks of index.json for new dumps')
    parser.add_argument('--screenshot', default=None,
                        help='render one frame headless (after loading), save it as '
                        'this PNG and exit')
    parser.add_argument('--benchmark', type=int, default=None,
                        help='render this many frames, print the FPS and exit')

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    args = self.argv
    imgui.create_context()
    self.io = imgui.get_io()
    self.io.set_ini_filename('')
    self.gui = ModernglWindowRenderer(self.wnd)
    self.voxels = renderer_lib.VoxelRenderer(self.ctx, colormap.viridis())
    self.camera = camera_lib.OrbitCamera()
    self.source = source_lib.DumpSource(args.path, args.poll_interval)
    self.timeline = timeline_lib.Timeline()
    self.detail = detail_lib.DetailController(
        target_fps=args.target_fps, level=args.detail or 0, auto=args.detail is None)
    self.show = set(args.show.split(',')) if args.show else None
    self.hidden = set(DEFAULT_HIDDEN)
    self.scene: Optional[scene_lib.Scene] = None
    self.raw_values = np.zeros(0, np.float32)
    self.sequence: Optional[dumps.DumpSequence] = None
    self.sequence_error: Optional[str] = None
    self.selected: Optional[panel_view.Selection] = None
    self.selected_index = -1
    self.hovered = -1
    self.edits: Dict[Tuple[str, int, str], np.ndarray] = {}
    self.step_fn: Optional[replay_lib.StepFn] = None
    self.replay_result: Optional[replay_lib.ReplayResult] = None
    self.messages = collections.deque(maxlen=4)
    self.panel_scroll: Dict[str, float] = {}
    self.view_rect: panels.Rect = panels.panel_rects(*self.wnd.size)['view']
    self.frame_ms = 0.0
    self._loaded: Optional[Tuple[int, str]] = None
    self._values_key = None
    self._edit_count = 0
    self.boxes = (np.zeros((0, 3)), np.zeros((0, 3)))
    self._item_names: Tuple[str, ...] = ()
    if args.checkpoint:
      try:
        self.step_fn = replay_lib.checkpoint_step_fn(args.checkpoint)
      except Exception as e:  # pylint: disable=broad-except  # Any load failure: say so.
        self.message(f'--checkpoint {args.checkpoint}: cannot load for replay '
                     f'({type(e).__name__}: {e})', error=True)

  # ---- Events: everything goes through ImGui's io. ----

  def on_mouse_position_event(self, x: int, y: int, dx: int, dy: int) -> None:
    self.io.add_mouse_pos_event(x, y)

  def on_mouse_drag_event(self, x: int, y: int, dx: int, dy: int) -> None:
    self.io.add_mouse_pos_event(x, y)

  def on_mouse_press_event(self, x: int, y: int, button: int) -> None:
    self.io.add_mouse_pos_event(x, y)
    self.io.add_mouse_button_event(MOUSE_BUTTONS.get(button, 0), True)

  def on_mouse_release_event(self, x: int, y: int, button: int) -> None:
    self.io.add_mouse_pos_event(x, y)
    self.io.add_mouse_button_event(MOUSE_BUTTONS.get(button, 0), False)

  def on_mouse_scroll_event(self, x_offset: float, y_offset: float) -> None:
    self.io.add_mouse_wheel_event(x_offset, y_offset)

  def on_key_event(self, key: Any, action: Any, modifiers: Any) -> None:
    self.gui.key_event(key, action, modifiers)

  def on_unicode_char_entered(self, char: str) -> None:
    self.io.add_input_character(ord(char))

  def on_resize(self, width: int, height: int) -> None:
    self.gui.resize(width, height)

  def on_render(self, elapsed: float, frame_time: float) -> None:
    self.frame(frame_time)

  def on_close(self) -> None:
    self.close()

  def close(self) -> None:
    """Frees the GPU resources and the ImGui context (the window stays)."""
    self.voxels.release()
    self.gui.shutdown()
    imgui.destroy_context()

  # ---- The frame. ----

  def frame(self, frame_time: float) -> None:
    """Advances the state by `frame_time` seconds and draws one frame."""
    frame_time = max(float(frame_time), 1e-6)
    # Exponential moving average of the frame time, in ms.
    self.frame_ms = 0.9 * self.frame_ms + 0.1 * 1000 * frame_time if self.frame_ms \
        else 1000 * frame_time
    if self.source.poll():
      self._on_entries_changed()
    self.timeline.advance(frame_time)
    self.detail.update(frame_time)
    self._load_current()

    self.io.delta_time = frame_time
    imgui.new_frame()
    rects = panels.panel_rects(*self.wnd.size)
    for name, draw in (('view', self._view_panel), ('timeline', self._timeline_panel),
                       ('properties', self._properties_panel),
                       ('performance', self._performance_panel)):
      x, y, w, h = rects[name]
      imgui.set_next_window_pos(imgui.ImVec2(x, y))
      imgui.set_next_window_size(imgui.ImVec2(w, h))
      flags = panels.PANEL_FLAGS | (imgui.WindowFlags_.no_background if name == 'view' else 0)
      imgui.begin(panels.PANEL_TITLES[name], None, flags)
      draw()
      self.panel_scroll[name] = imgui.get_scroll_max_y()
      imgui.end()
    self._sync_scene()

    self.wnd.use()
    self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
    if self.scene is not None and self.scene.count:
      self.voxels.render(self.view_projection(), self.camera.eye, self._gl_view_rect(),
                         self.selected_index, self.hovered)
    self.ctx.viewport = (0, 0, *self.wnd.buffer_size)
    imgui.render()
    self.gui.render(imgui.get_draw_data())

  def message(self, text: str, error: bool = False) -> None:
    """Shows `text` in the properties panel (and logs it)."""
    (logger.warning if error else logger.info)('%s', text)
    self.messages.append((error, text))

  # ---- The records shown: the current sequence and step, visibility, edits, replay. ----

  def _on_entries_changed(self) -> None:
    self.timeline.set_bounds([e['num_steps'] for e in self.source.entries])
    self._loaded = None  # A rewritten sequence file is re-read.

  def _load_current(self) -> None:
    """Loads the timeline's sequence when it changed; a bad file becomes an error."""
    if not self.source.entries:
      self.sequence, self._loaded = None, None
      return
    key = (self.timeline.sequence, self.source.entries[self.timeline.sequence]['path'])
    if key == self._loaded:
      return
    self._loaded = key
    try:
      self.sequence, self.sequence_error = self.source.load(self.timeline.sequence), None
    except dumps.DumpError as e:
      self.sequence, self.sequence_error = None, str(e)
      self.message(str(e), error=True)

  @property
  def current_step(self) -> Optional[int]:
    """The recorded step index the timeline points at, or None."""
    if self.sequence is None or not self.sequence.steps:
      return None
    steps = self.sequence.steps
    return steps[min(self.timeline.step, len(steps) - 1)]

  def is_visible(self, name: str) -> bool:
    """Whether record `name` is drawn (replay results follow their original)."""
    base = name.removeprefix(scene_lib.REPLAY_PREFIX)
    return base in self.show if self.show is not None else base not in self.hidden

  def set_visible(self, name: str, visible: bool) -> None:
    """Shows or hides record `name`."""
    if self.show is not None:
      (self.show.add if visible else self.show.discard)(name)
    else:
      (self.hidden.discard if visible else self.hidden.add)(name)

  def record_data(self, name: str, step: int) -> np.ndarray:
    """Data of record `name` at `step` of the current sequence, with any edit applied."""
    edited = self.edits.get((str(self.sequence.path), step, name))
    return edited if edited is not None else self.sequence.at_step(step)[name]['data']

  def step_records(self) -> Dict[str, Dict[str, Any]]:
    """The visible records of the current step (edits applied, replay results added)."""
    step = self.current_step
    if step is None:
      return {}
    records = {}
    for name, record in self.sequence.at_step(step).items():
      if self.is_visible(name):
        records[name] = dict(record, data=self.record_data(name, step))
    result = self.replay_result
    if result is not None and result.sequence_path == str(self.sequence.path) and \
        step >= result.start_step:
      replayed = result.at(step)
      data = {'memory_out': replayed.memory, 'logits': replayed.logits,
              'prediction': np.int32(replayed.prediction)}
      for name in REPLAYED:
        if name in records:
          original = records[name]
          records[scene_lib.REPLAY_PREFIX + name] = dumps.make_record(
              scene_lib.REPLAY_PREFIX + name, data[name], original['type'],
              **original['metadata'])
    return records
