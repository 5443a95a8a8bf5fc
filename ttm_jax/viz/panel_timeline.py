"""The timeline panel: which example and step are shown, playback, and which records.

Sliders for the example and the step (counted from 1), buttons to step and play, the playback
speed, a checkbox per record of the step ("show:"), and how fresh the followed dumps are.
"""

import time
from typing import Optional

from imgui_bundle import imgui

from ttm_jax.viz import panels


class TimelinePanel:
  """The timeline panel of `app.DashboardApp` (a mixin: it moves the app's `timeline` and
  changes which records are visible)."""

  def _timeline_panel(self) -> None:
    timeline = self.timeline
    if not timeline.num_sequences:
      imgui.text(f'Following {self.source.dump_dir}: no sequences yet.')
      if self.source.error:
        imgui.text_colored(panels.RED, self.source.error)
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
