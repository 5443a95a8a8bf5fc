"""3D viewer for trace dumps: voxel mapping, rendering, picking, dashboard and replay.

Modules, one concept each:
  colormap  viridis-like lookup table.
  mappers   record -> voxels (VisMapper subclasses and the MapperRegistry).
  scene     the records of one step arranged in world space.
  renderer  instanced voxel drawing with moderngl (partial buffer updates).
  camera    orbit camera (view and projection matrices).
  picking   ray casting from the mouse to the voxel under it.
  detail    adaptive level of detail from measured FPS.
  timeline  playback position over sequences and steps.
  source    a dumps folder (or a training workdir) followed live.
  replay    re-running the model from an edited memory.
  app       the imgui dashboard (a moderngl-window WindowConfig): state, input, the frame.
  panels    where the four fixed panels sit, their ImGui flags and shared colours.
  panel_*   one panel each, mixed into the dashboard: `panel_view` (the 3D view, picking,
            selection), `panel_timeline`, `panel_properties` (with edit and replay),
            `panel_performance`.
  cli       `tools/viewer.py`: interactive, `--screenshot` and `--benchmark`.
"""
