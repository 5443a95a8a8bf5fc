"""host_memory: the restarted process keeps its arguments and stdin, and malloc's large blocks
get transparent huge pages; GLIBC_TUNABLES set by the user wins."""

import os
import subprocess
import sys

import pytest

from ttm_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_MIB = 256

# Restarts itself, then mallocs and fills a 256 MiB block (as XLA allocates a step's
# temporaries) and prints its arguments, stdin, GLIBC_TUNABLES and the MiB of huge pages.
SCRIPT = f"""
import ctypes, os, sys
from ttm_jax import host_memory
host_memory.restart_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc({BLOCK_MIB} << 20)
ctypes.memset(block, 1, {BLOCK_MIB} << 20)
with open('/proc/self/smaps_rollup') as f:
  kib = [int(line.split()[1]) for line in f if line.startswith('AnonHugePages:')][0]
print(sys.argv[1:], sys.stdin.read(), os.environ.get('GLIBC_TUNABLES'), kib // 1024)
"""


def _run(tunables=None):
  env = dict(os.environ)
  env.pop('GLIBC_TUNABLES', None)
  if tunables is not None:
    env['GLIBC_TUNABLES'] = tunables
  done = subprocess.run([sys.executable, '-c', SCRIPT, 'a b', '--x=1'], cwd=ROOT, env=env,
                        input='from stdin', capture_output=True, text=True, check=True)
  return done.stdout.strip()


@pytest.mark.skipif(not host_memory.huge_pages_need_asking(),
                    reason='needs glibc and transparent huge pages in madvise mode')
def test_restart_asks_for_huge_pages():
  args, _, rest = _run().partition("] ")
  assert args == "['a b', '--x=1'" and rest.startswith('from stdin glibc.malloc.hugetlb=1 ')
  assert int(rest.split()[-1]) >= BLOCK_MIB // 2  # Most of the block is in huge pages.
  # A user's own setting is left alone: no restart, no huge pages for malloc.
  assert _run('glibc.malloc.hugetlb=0').endswith(
      "['a b', '--x=1'] from stdin glibc.malloc.hugetlb=0 0")
  # Other tunables are kept, and the setting is added to them.
  assert ' glibc.malloc.tcache_count=8:glibc.malloc.hugetlb=1 ' in _run(
      'glibc.malloc.tcache_count=8')


def test_no_restart_where_it_would_not_help(monkeypatch):
  monkeypatch.setattr(host_memory, 'THP_MODE', '/nonexistent')
  monkeypatch.delenv('GLIBC_TUNABLES', raising=False)
  assert not host_memory.huge_pages_need_asking()
  host_memory.restart_with_huge_pages()  # Returns: this test process goes on.
  assert 'GLIBC_TUNABLES' not in os.environ
