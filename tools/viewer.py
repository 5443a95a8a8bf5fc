"""3D viewer for ttm_jax trace dumps (see `ttm_jax/viz/cli.py` for the options).

  python tools/viewer.py DUMPS_DIR_OR_WORKDIR [--checkpoint WORKDIR]
  python tools/viewer.py DUMPS_DIR --screenshot out.png
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ttm_jax.viz import cli  # pylint: disable=wrong-import-position

if __name__ == '__main__':
  sys.exit(cli.main())
