"""The 3D view panel: the voxels of the current step under an orbit camera.

The mouse reaches the view through ImGui: hovering picks the voxel under the mouse (its record,
element and value in a tooltip), a click selects it, a left drag orbits, a right or middle drag
pans and the wheel zooms; record names are drawn above their voxels. Before each frame's drawing
`_sync_scene` lays the visible records out (`scene.Scene`) and uploads what changed to the GPU.
"""

import dataclasses
import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np
from imgui_bundle import imgui

from ttm_jax.viz import panels
from ttm_jax.viz import picking
from ttm_jax.viz import renderer as renderer_lib
from ttm_jax.viz import scene as scene_lib

logger = logging.getLogger(__name__)

CLICK_SLOP_PX = 4.0  # A press and release closer than this is a click, not a drag.


@dataclasses.dataclass(frozen=True)
class Selection:
  """A selected data element: record `name` and its index `cell` in the record data."""
  name: str
  cell: Tuple[int, ...]


class ViewPanel:
  """The 3D view of `app.DashboardApp`, a mixin: it reads the app's state (the records of the
  current step, the level of detail) and keeps its `camera`, `scene`, GPU buffers (`voxels`),
  `view_rect`, `boxes`, `raw_values`, `hovered`, `selected` and `selected_index`."""

  # ---- The panel: mouse, tooltip, labels and status. ----

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
      imgui.text_colored(panels.RED if self.sequence_error else panels.GREEN, status)
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

  # ---- The scene: layout and values of the visible records. ----

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
