"""The performance panel: frame rate and time, voxel count, the level of detail (adaptive or
fixed), the last GPU upload and the camera."""

from imgui_bundle import imgui


class PerformancePanel:
  """The performance panel of `app.DashboardApp` (a mixin: it reads the app's frame time,
  scene, renderer and camera, and sets its level of detail)."""

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
