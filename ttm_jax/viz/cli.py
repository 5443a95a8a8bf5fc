"""Command line of the viewer (`tools/viewer.py`).

  viewer.py DUMPS_DIR_OR_WORKDIR [--checkpoint WORKDIR] [--show a,b] [--detail L]
  viewer.py DIR --screenshot out.png   # headless (EGL): one frame after loading, exit 0
  viewer.py DIR --benchmark 200        # headless: render 200 frames, print the FPS

Every moderngl-window option works too (`--window`, `--size 1280x720`, `--backend`);
`--screenshot` and `--benchmark` default to `--window headless --backend egl`, and
`--screenshot` to `--detail 0` (every embedding value drawn, whatever the frame rate, so that
the picture does not depend on how busy the machine is). Without
OpenGL 3.3 the viewer prints one error line and exits with status 2; `--screenshot` and
`--benchmark` print one error line and exit with status 1 when the folder or its dumps cannot
be read (the interactive viewer shows the problem and keeps waiting).
"""

import argparse
import logging
import sys
import time
from typing import List, Optional

import moderngl_window as mglw
import numpy as np
from PIL import Image

from ttm_jax.viz import app as app_lib

SCREENSHOT_FRAMES = 3  # Load and lay out, settle ImGui's layout, then capture.
GL_REQUIRED = 330


class GLUnavailable(RuntimeError):
  """No OpenGL 3.3 core context could be created."""


def parse_args(argv: List[str]) -> argparse.Namespace:
  """The viewer's and moderngl-window's options."""
  parser = mglw.create_parser()
  app_lib.DashboardApp.add_arguments(parser)
  return parser.parse_args(argv)


def create_app(argv: List[str]) -> app_lib.DashboardApp:
  """A `DashboardApp` for command-line `argv` (headless EGL for screenshots/benchmarks
  unless `--window` says otherwise).

  Raises:
    GLUnavailable: with a one-line reason, when no OpenGL 3.3 context can be made.
  """
  values = parse_args(argv)
  argv = list(argv)
  if (values.screenshot or values.benchmark) and values.window is None:
    argv += ['--window', 'headless', '--backend', 'egl']
  if values.screenshot and values.detail is None:  # Adaptive detail depends on the load.
    argv += ['--detail', '0']
  headless = parse_args(argv).window == 'headless'
  try:
    app = mglw.create_window_config_instance(app_lib.DashboardApp, args=argv)
  except Exception as e:  # pylint: disable=broad-except  # GL/EGL/window errors vary.
    hint = '' if headless else \
        '; without a display, use --screenshot or --benchmark (headless EGL)'
    raise GLUnavailable(f'cannot create an OpenGL 3.3 window ({type(e).__name__}: '
                        f'{e}){hint}'.replace('\n', ' ')) from e
  if app.ctx.version_code < GL_REQUIRED:
    raise GLUnavailable(f'OpenGL {app.ctx.version_code / 100:.1f} found, 3.3 needed')
  return app


def render_frames(app: app_lib.DashboardApp, count: int,
                  frame_time: Optional[float] = None) -> float:
  """Renders `count` frames as the main loop would; returns the seconds taken.

  Each frame is told the previous frame's measured duration, unless `frame_time` fixes it.
  """
  start = previous = time.perf_counter()
  dt = frame_time or 1 / 60
  for _ in range(count):
    app.wnd.use()
    app.wnd.render(previous - start, dt)
    app.wnd.swap_buffers()  # Headless: glFinish, so the time includes the drawing.
    now = time.perf_counter()
    dt, previous = frame_time or now - previous, now
  return previous - start


def read_pixels(app: app_lib.DashboardApp) -> np.ndarray:
  """The window's framebuffer as `[height, width, 3]` uint8, top row first."""
  width, height = app.wnd.buffer_size
  data = app.wnd.fbo.read(components=3, alignment=1)
  return np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1]


def main(argv: Optional[List[str]] = None) -> int:
  """Runs the viewer; returns the exit status."""
  argv = sys.argv[1:] if argv is None else list(argv)
  values = parse_args(argv)
  log = logging.getLogger('ttm_jax')
  if not log.handlers:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(name)s: %(message)s'))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
  try:
    app = create_app(argv)
  except GLUnavailable as e:
    print(f'viewer: error: {e}', file=sys.stderr)
    return 2
  if values.screenshot or values.benchmark:
    render_frames(app, SCREENSHOT_FRAMES)
    problem = app.sequence_error or app.source.error
    if problem:  # One-shot runs do not wait for a folder or dump to appear or be fixed.
      print(f'viewer: error: {problem}', file=sys.stderr)
      return 1
  if values.screenshot:
    Image.fromarray(read_pixels(app)).save(values.screenshot)
    print(f'viewer: wrote {values.screenshot}')
  elif values.benchmark:
    seconds = render_frames(app, values.benchmark)
    width, height = app.wnd.buffer_size
    print(f'viewer: benchmark {values.benchmark} frames at {width}x{height}, '
          f'{app.scene.count if app.scene else 0} voxels, detail level {app.detail.level}'
          f'{" (adaptive)" if app.detail.auto else ""}: '
          f'{values.benchmark / seconds:.1f} fps ({1000 * seconds / values.benchmark:.1f} '
          f'ms/frame)')
  else:
    mglw.run_window_config_instance(app)
    return 0
  app.close()
  app.wnd.destroy()
  return 0
