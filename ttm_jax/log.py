"""The project's logger: plain `message` lines on stderr, independent of absl's verbosity
(which main.py keeps at WARNING, since orbax logs every file it writes at INFO)."""

import logging
import sys

log = logging.getLogger('ttm_jax')
if not log.handlers:
  _handler = logging.StreamHandler(sys.stderr)
  _handler.setFormatter(logging.Formatter('%(message)s'))
  log.addHandler(_handler)
  log.setLevel(logging.INFO)
  log.propagate = False
