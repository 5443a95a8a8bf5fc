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
"""

import argparse
import collections
import dataclasses
import logging
import time
from typing import Any, Dict, Optional, Tuple

import moderngl_window as mglw
import numpy as np
from imgui_bundle import imgui
from moderngl_window.integrations.imgui_bundle import ModernglWindowRenderer

from ttm_jax import dumps
from ttm_jax import tokens
from ttm_jax.viz import camera as camera_lib
from ttm_jax.viz import colormap
from ttm_jax.viz import detail as detail_lib
from ttm_jax.viz import picking
from ttm_jax.viz import renderer as renderer_lib
from ttm_jax.viz import replay as replay_lib
from ttm_jax.viz import scene as scene_lib
from ttm_jax.viz import source as source_lib
from ttm_jax.viz import timeline as timeline_lib

logger = logging.getLogger(__name__)

# Off until ticked: memory_in repeats the previous step's memory_out, and the write and
# erase/add weights are as large as the memory.
DEFAULT_HIDDEN = frozenset({'memory_in', 'write_weights', 'erase_weights', 'add_weights'})
EDITABLE = ('memory_in', 'memory_out')
REPLAYED = ('memory_out', 'logits', 'prediction')  # Replay results shown as `replay/NAME`.
PANEL_FLAGS = (imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_resize
               | imgui.WindowFlags_.no_collapse | imgui.WindowFlags_.no_saved_settings
               | imgui.WindowFlags_.no_scrollbar | imgui.WindowFlags_.no_scroll_with_mouse)
PANEL_TITLES = {'view': '3D view', 'timeline': 'Timeline', 'properties': 'Properties',
                'performance': 'Performance'}
CLICK_SLOP_PX = 4.0  # A press and release closer than this is a click, not a drag.
RED = imgui.ImVec4(1.0, 0.4, 0.35, 1.0)
GREEN = imgui.ImVec4(0.45, 0.9, 0.45, 1.0)
MOUSE_BUTTONS = {1: 0, 2: 1, 3: 2}  # moderngl-window button -> ImGui button.

Rect = Tuple[float, float, float, float]  # x, y, width, height; origin top-left.


def panel_rects(width: float, height: float) -> Dict[str, Rect]:
  """The four panels tiling a `width` x `height` window."""
  left, top = round(width * 0.75), round(height * 0.75)
  return {'view': (0, 0, left, top), 'timeline': (0, top, left, height - top),
          'properties': (left, 0, width - left, top),
          'performance': (left, top, width - left, height - top)}


@dataclasses.dataclass(frozen=True)
class Selection:
  """A selected data element: record `name` and its index `cell` in the record data."""
  name: str
  cell: Tuple[int, ...]


class DashboardApp(mglw.WindowConfig):
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
    self.selected: Optional[Selection] = None
    self.selected_index = -1
    self.hovered = -1
    self.edits: Dict[Tuple[str, int, str], np.ndarray] = {}
    self.step_fn: Optional[dumps.StepFn] = None
    self.replay_result: Optional[replay_lib.ReplayResult] = None
    self.messages = collections.deque(maxlen=4)
    self.panel_scroll: Dict[str, float] = {}
    self.view_rect: Rect = panel_rects(*self.wnd.size)['view']
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
    rects = panel_rects(*self.wnd.size)
    for name, draw in (('view', self._view_panel), ('timeline', self._timeline_panel),
                       ('properties', self._properties_panel),
                       ('performance', self._performance_panel)):
      x, y, w, h = rects[name]
      imgui.set_next_window_pos(imgui.ImVec2(x, y))
      imgui.set_next_window_size(imgui.ImVec2(w, h))
      flags = PANEL_FLAGS | (imgui.WindowFlags_.no_background if name == 'view' else 0)
      imgui.begin(PANEL_TITLES[name], None, flags)
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

  def _sync_scene(self) -> None:
    """Rebuilds the layout when the record set or detail changed; uploads new values."""
    records = self.step_records()
    if not records:
      self.scene, self.hovered, self.selected_index = None, -1, -1
      return
    signature = scene_lib.Scene.signature_of(records, self.detail.level)
    if self.scene is None or self.scene.signature != signature:
      self.scene = scene_lib.Scene(records, self.detail.level, aspect=self._view_aspect())
      self.voxels.set_layout(self.scene.positions, self.scene.sizes)
      names = tuple(item.name for item in self.scene.items)
      if names != self._item_names:
        self._item_names = names
        self.camera.fit(*self.scene.bounds(), self._view_aspect())
      self._values_key, self.hovered = None, -1
    key = (self._loaded, self.current_step, signature, self._edit_count,
           id(self.replay_result))
    if key != self._values_key:
      self._values_key = key
      mapped = self.scene.values(records)
      self.voxels.set_values(mapped.values)
      self.raw_values = mapped.raw
      self.boxes = renderer_lib.voxel_boxes(self.scene.positions, self.scene.sizes,
                                             mapped.values)
    self.selected_index = self._voxel_of(self.selected)

  def _voxel_of(self, selection: Optional[Selection]) -> int:
    """Scene voxel standing for the selected element (pooled blocks included), or -1."""
    item = self.scene.item(selection.name) if selection and self.scene else None
    if item is None:
      return -1
    layout = item.mapper.get_voxel_layout()
    cell = np.array(selection.cell)
    if layout.cells.shape[1] != len(cell):
      return -1
    match = np.all(layout.cells[:, :-1] == cell[:-1], axis=1) if len(cell) else \
        np.ones(layout.count, bool)
    if len(cell):
      match &= (layout.cells[:, -1] <= cell[-1]) & (cell[-1] < layout.cells[:, -1] +
                                                     layout.block)
    found = np.flatnonzero(match)
    return item.start + int(found[0]) if len(found) else -1

  def describe_voxel(self, voxel: int) -> Dict[str, Any]:
    """Name, element, raw and normalized value and metadata of scene voxel `voxel`."""
    item, local = self.scene.locate(voxel)
    layout = item.mapper.get_voxel_layout()
    records = self.step_records()
    return {'name': item.name, 'where': item.mapper.describe(local),
            'cell': tuple(int(c) for c in layout.cells[local]),
            'value': float(self.raw_values[voxel]),
            'metadata': records[item.name]['metadata'] if item.name in records else {}}

  # ---- Camera and picking. ----

  def _view_aspect(self) -> float:
    return max(self.view_rect[2], 1.0) / max(self.view_rect[3], 1.0)

  def view_projection(self) -> np.ndarray:
    """`projection @ view` of the 3D view, `[4, 4]`."""
    return self.camera.view_projection(self._view_aspect())

  def _gl_view_rect(self) -> Tuple[int, int, int, int]:
    """The 3D view rectangle in framebuffer pixels, origin bottom-left."""
    x, y, w, h = self.view_rect
    ratio = self.wnd.pixel_ratio
    return (int(round(x * ratio)), int(round(self.wnd.buffer_size[1] - (y + h) * ratio)),
            int(round(w * ratio)), int(round(h * ratio)))

  def pick(self, x: float, y: float) -> int:
    """Voxel under window point `(x, y)` (ImGui coordinates), or -1."""
    if self.scene is None:
      return -1
    vx, vy, vw, vh = self.view_rect
    origin, direction = picking.screen_ray(x - vx, y - vy, vw, vh, self.view_projection())
    return picking.pick(origin, direction, *self.boxes)

  def select(self, voxel: int) -> None:
    """Selects scene voxel `voxel` (-1 clears the selection)."""
    if voxel < 0:
      self.selected = None
      return
    info = self.describe_voxel(voxel)
    self.selected = Selection(info['name'], info['cell'])
    logger.info('selected %s [%s] = %.4g', info['name'], info['where'], info['value'])

  # ---- Editing and replay. ----

  def edit(self, name: str, cell: Tuple[int, ...], value: float) -> None:
    """Sets element `cell` of memory record `name` at the current step to `value` (in a
    copy: the dump on disk is never modified)."""
    if name not in EDITABLE:
      raise ValueError(f'only {EDITABLE} can be edited, not {name!r}')
    step = self.current_step
    key = (str(self.sequence.path), step, name)
    data = np.array(self.record_data(name, step), copy=True)
    data[cell] = value
    self.edits[key] = data
    self._edit_count += 1
    logger.info('edited %s%s at step %d to %.4g', name, list(cell), step, value)

  def revert_edits(self) -> None:
    """Drops every edit and the replay result."""
    self.edits.clear()
    self._edit_count += 1
    self.replay_result = None

  def replay(self) -> Optional[replay_lib.ReplayResult]:
    """Replays from the current step: with the selected memory (`memory_in` of this step,
    or `memory_out`, which feeds the next step), edits applied; `memory_in` if nothing
    editable is selected. The result is shown beside the recording."""
    if self.step_fn is None:
      self.message('replay needs a model: start the viewer with --checkpoint WORKDIR',
                   error=True)
      return None
    step = self.current_step
    if step is None:
      return None
    name = self.selected.name if self.selected and self.selected.name in EDITABLE \
        else 'memory_in'
    if name not in self.sequence.at_step(step):
      self.message(f'step {step} has no {name} record to replay from', error=True)
      return None
    start = step if name == 'memory_in' else step + 1
    try:
      result = replay_lib.replay(self.sequence, start, self.record_data(name, step),
                                 self.step_fn)
    except (ValueError, dumps.DumpError) as e:
      self.message(str(e), error=True)
      return None
    self.replay_result = result
    logger.info('replay %s', result.summary())
    return result

  # ---- Panels. ----

  def _view_panel(self) -> None:
    origin = imgui.get_cursor_screen_pos()
    size = imgui.get_content_region_avail()
    self.view_rect = (origin.x, origin.y, max(size.x, 1.0), max(size.y, 1.0))
    imgui.set_next_item_allow_overlap()
    imgui.invisible_button('##scene', imgui.ImVec2(self.view_rect[2], self.view_rect[3]),
                           imgui.ButtonFlags_.mouse_button_left
                           | imgui.ButtonFlags_.mouse_button_right
                           | imgui.ButtonFlags_.mouse_button_middle)
    hovered, active = imgui.is_item_hovered(), imgui.is_item_active()
    io = self.io
    if active and imgui.is_mouse_dragging(0):
      self.camera.orbit(io.mouse_delta.x, io.mouse_delta.y)
    if active and (imgui.is_mouse_dragging(1) or imgui.is_mouse_dragging(2)):
      self.camera.pan(io.mouse_delta.x, io.mouse_delta.y, self.view_rect[3])
    if hovered and io.mouse_wheel:
      self.camera.zoom(io.mouse_wheel)
    mouse = imgui.get_mouse_pos()
    self.hovered = self.pick(mouse.x, mouse.y) if hovered else -1
    # A click: a left press on the scene released without dragging (a drag orbits).
    if imgui.is_item_deactivated() and imgui.is_mouse_released(0) and \
        io.mouse_drag_max_distance_sqr[0] <= CLICK_SLOP_PX ** 2:
      self.select(self.pick(mouse.x, mouse.y))
    if self.hovered >= 0 and not imgui.is_mouse_dragging(0):
      info = self.describe_voxel(self.hovered)
      imgui.set_tooltip(f"{info['name']}  [{info['where']}]\nvalue {info['value']:.5g}")
    self._draw_labels()

    imgui.set_cursor_screen_pos(imgui.ImVec2(origin.x + 6, origin.y + 6))
    if imgui.button('Reset view'):
      self.camera.reset()
    imgui.same_line()
    imgui.text_disabled('drag: orbit   right/middle drag: pan   wheel: zoom   '
                        'click: select')
    if self.scene is None:
      status = self.sequence_error or self.source.error or 'no sequence loaded'
      imgui.set_cursor_screen_pos(imgui.ImVec2(origin.x + 12, origin.y + 40))
      imgui.push_text_wrap_pos(0.0)
      imgui.text_colored(RED if self.sequence_error else GREEN, status)
      imgui.pop_text_wrap_pos()

  def _draw_labels(self) -> None:
    """Record names above their voxels; a label that would overlap an earlier one is
    shortened to its last path component (`layer0`), or left out."""
    if self.scene is None:
      return
    x0, y0, w, h = self.view_rect
    anchors = np.array([item.label_anchor for item in self.scene.items])
    screen, in_front = picking.project(anchors, self.view_projection(), w, h)
    draw = imgui.get_window_draw_list()
    color = imgui.IM_COL32(220, 220, 220, 255)
    height = imgui.get_text_line_height()
    taken = []
    for item, (sx, sy), ok in zip(self.scene.items, screen, in_front):
      if not (ok and 0 <= sx < w and height <= sy < h):
        continue
      block = item.mapper.get_voxel_layout().block
      pooled = f' (pooled x{block})' if block > 1 else ''
      for label in (item.name + pooled, item.name.rsplit('/', 1)[-1]):
        box = (sx, sy - height, sx + imgui.calc_text_size(label).x, sy)
        if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                   for b in taken):
          taken.append(box)
          draw.add_text(imgui.ImVec2(x0 + box[0], y0 + box[1]), color, label)
          break

  def _timeline_panel(self) -> None:
    timeline = self.timeline
    if not timeline.num_sequences:
      imgui.text(f'Following {self.source.dump_dir}: no sequences yet.')
      if self.source.error:
        imgui.text_colored(RED, self.source.error)
      return
    info = self.source.entries[timeline.sequence]['info']
    value = self._counter('example')
    if value is not None:
      timeline.seek(value, 0)
    imgui.same_line()
    imgui.text(f"   {info.get('problem', '?')} = {info.get('target', '?')}")
    value = self._counter('step')
    if value is not None:
      timeline.seek(timeline.sequence, value)

    if imgui.button('|<'):
      timeline.seek(timeline.sequence, 0)
    imgui.same_line()
    if imgui.button('< step'):
      timeline.step_back()
    imgui.same_line()
    if imgui.button('Pause' if timeline.playing else 'Play', imgui.ImVec2(60, 0)):
      timeline.playing = not timeline.playing
    imgui.same_line()
    if imgui.button('step >'):
      timeline.step_forward()
    imgui.same_line()
    if imgui.button('>|'):
      timeline.seek(timeline.sequence, timeline.num_steps() - 1)
    imgui.same_line()
    imgui.set_next_item_width(180)
    _, timeline.speed = imgui.slider_float('speed (steps/s)', timeline.speed, 0.25, 20.0,
                                           '%.2f', imgui.SliderFlags_.logarithmic)

    imgui.text('show:')
    names = list(self.sequence.at_step(self.current_step)) if self.current_step is not None \
        else []
    right = imgui.get_window_pos().x + imgui.get_content_region_avail().x
    for name in names:
      label_width = imgui.calc_text_size(name).x + 40
      imgui.same_line()
      if imgui.get_cursor_screen_pos().x + label_width > right:
        imgui.new_line()
      changed, visible = imgui.checkbox(name, self.is_visible(name))
      if changed:
        self.set_visible(name, visible)
    age = time.monotonic() - self.source.updated
    count = len(self.source.entries)
    imgui.text_disabled(f'{self.source.dump_dir}: {count} sequence{"s" * (count != 1)}, '
                        f'last new one {age:.0f} s ago (polled every '
                        f'{self.source.poll_interval:g} s)')

  def _counter(self, what: str) -> Optional[int]:
    """The timeline's position among examples or steps (`Timeline.position`): a half-width
    slider labelled from 1, or just the text when there is one. Returns the new 0-based
    index when the slider moved."""
    index, count = self.timeline.position(what)
    if count <= 1:
      imgui.text(f'{what} {self.timeline.counter(what)}')
      return None
    imgui.set_next_item_width(imgui.get_content_region_avail().x * 0.5)
    changed, value = imgui.slider_int(what, index + 1, 1, count, f'%d / {count}')
    return value - 1 if changed else None

  def _properties_panel(self) -> None:
    imgui.push_text_wrap_pos(0.0)  # Wrap text at the panel's right edge.
    step = self.current_step
    if self.sequence is not None and step is not None:
      info = self.sequence.info
      imgui.separator_text('Step')
      imgui.text(f"{info['problem']} = {info['target']}")
      imgui.text('prediction ')
      imgui.same_line(0, 0)
      imgui.text_colored(GREEN if info['correct'] else RED,
                         f"{info['prediction']} ({'correct' if info['correct'] else 'wrong'})")
      records = self.sequence.at_step(step)
      imgui.text(f"step {step} of {info['num_steps']}")
      if 'inputs' in records:
        shown = ' '.join(tokens.tokens_to_string([t]) for t in records['inputs']['data'])
        imgui.text(f'inputs  {shown}')
      if 'prediction' in records:
        imgui.text(f"predicts {tokens.tokens_to_string([records['prediction']['data']])}")
    elif self.sequence_error:
      imgui.text_colored(RED, self.sequence_error)

    voxel = self.hovered if self.hovered >= 0 else self.selected_index
    imgui.separator_text('Voxel' + (' (hovered)' if self.hovered >= 0 else
                                    ' (selected)' if voxel >= 0 else ''))
    if voxel >= 0:
      info = self.describe_voxel(voxel)
      imgui.text(f"{info['name']}  [{info['where']}]")
      imgui.text(f"value {info['value']:.5g}")
      meta = info['metadata']
      imgui.text_disabled(', '.join(f'{k} {meta[k]}' for k in
                                    ('module', 'step', 'example', 'epoch', 'batch', 'run')
                                    if k in meta))
    else:
      imgui.text_disabled('hover or click a voxel')

    imgui.separator_text('Edit and replay')
    selected = self.selected
    if selected is not None and selected.name in EDITABLE and step is not None:
      current = float(self.record_data(selected.name, step)[selected.cell])
      imgui.text(f'{selected.name}{list(selected.cell)} at step {step}')
      imgui.set_next_item_width(140)
      changed, value = imgui.input_float('value', current, 0.1, 1.0, '%.4f')
      if changed:
        self.edit(selected.name, selected.cell, value)
    else:
      imgui.text_disabled('select a memory voxel to edit it')
    imgui.begin_disabled(self.step_fn is None or step is None)
    if imgui.button('Replay from here'):
      self.replay()
    imgui.end_disabled()
    imgui.same_line()
    if imgui.button('Revert edits'):
      self.revert_edits()
    if self.step_fn is None:
      imgui.text_disabled('replay needs --checkpoint')
    if self.replay_result is not None:
      imgui.text(f'replay {self.replay_result.summary()}')

    imgui.separator_text('Messages')
    for error, text in list(self.messages)[-2:]:
      if error:
        imgui.text_colored(RED, text)
      else:
        imgui.text(text)
    imgui.pop_text_wrap_pos()

  def _performance_panel(self) -> None:
    detail = self.detail
    fps = detail.fps or (1000.0 / self.frame_ms if self.frame_ms else 0.0)
    imgui.text(f'FPS {fps:.1f}   (target {detail.target_fps:.0f})')
    imgui.text(f'frame time {self.frame_ms:.1f} ms')
    imgui.text(f'voxels {self.scene.count if self.scene else 0}')
    imgui.text(f'detail level {detail.level}: embedding pooled x{2 ** detail.level}')
    _, detail.auto = imgui.checkbox('adaptive', detail.auto)
    imgui.same_line()
    imgui.begin_disabled(detail.auto)
    imgui.set_next_item_width(90)
    changed, level = imgui.slider_int('level', detail.level, 0, detail.max_level)
    if changed:
      detail.set_level(level)
    imgui.end_disabled()
    write = self.voxels.last_write
    imgui.text(f'last upload {write.bytes} of {write.total_bytes} B')
    imgui.text_disabled(f'camera az {self.camera.azimuth:.0f} el {self.camera.elevation:.0f}'
                        f' dist {self.camera.distance:.0f}')
