"""What the dashboard's four fixed panels share: where each sits in the window (see the
diagram in `app.py`), the ImGui flags that pin it there, its title, and the colours of good and
bad news.

Each panel is drawn by a mixin of `app.DashboardApp`, one module each: `panel_view` (the 3D
view), `panel_timeline`, `panel_properties` and `panel_performance`.
"""

from typing import Dict, Tuple

from imgui_bundle import imgui

PANEL_FLAGS = (imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_resize
               | imgui.WindowFlags_.no_collapse | imgui.WindowFlags_.no_saved_settings
               | imgui.WindowFlags_.no_scrollbar | imgui.WindowFlags_.no_scroll_with_mouse)
PANEL_TITLES = {'view': '3D view', 'timeline': 'Timeline', 'properties': 'Properties',
                'performance': 'Performance'}
RED = imgui.ImVec4(1.0, 0.4, 0.35, 1.0)
GREEN = imgui.ImVec4(0.45, 0.9, 0.45, 1.0)

Rect = Tuple[float, float, float, float]  # x, y, width, height; origin top-left.


def panel_rects(width: float, height: float) -> Dict[str, Rect]:
  """The four panels tiling a `width` x `height` window."""
  left, top = round(width * 0.75), round(height * 0.75)
  return {'view': (0, 0, left, top), 'timeline': (0, top, left, height - top),
          'properties': (left, 0, width - left, top),
          'performance': (left, top, width - left, height - top)}
