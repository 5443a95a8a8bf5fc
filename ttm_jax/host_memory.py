"""Host memory: transparent huge pages for XLA's buffers, so a CPU step faults in few pages.

XLA's CPU runtime allocates a step's temporaries (374 MiB for the paper config) with `malloc`
and frees them when the step ends. glibc serves a request that large with a fresh `mmap` and
unmaps it on `free`, so every step faults all its temporaries in again, one 4 KiB page at a
time: for the paper config 96k faults, ~160 ms of a 530 ms step spent in the kernel. Where the
kernel gives transparent huge pages only to memory that asks for them (`madvise` mode, the
common default), glibc asks for them when `GLIBC_TUNABLES` holds `glibc.malloc.hugetlb=1`;
the temporaries then fault in 2 MiB at a time (~300 faults a step).

glibc reads `GLIBC_TUNABLES` only when a process starts, so `restart_with_huge_pages` starts
the running program again with it. The entry points (`main.py`, `tools/profile.py`,
`tools/bench.py`, `tools/ablate.py`) call it before they load JAX. To run without huge pages,
set the tunable yourself: `GLIBC_TUNABLES=glibc.malloc.hugetlb=0 python main.py ...`.
"""

import os
import sys

TUNABLE = 'glibc.malloc.hugetlb'  # 1: malloc asks for transparent huge pages (glibc >= 2.35).
THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'  # Reads e.g. 'always [madvise] never'.


def huge_pages_need_asking() -> bool:
  """Whether this is Linux with glibc and the kernel gives huge pages only when asked."""
  names = getattr(os, 'confstr_names', {})
  if 'CS_GNU_LIBC_VERSION' not in names or not os.confstr('CS_GNU_LIBC_VERSION'):
    return False
  try:
    with open(THP_MODE) as f:
      return '[madvise]' in f.read()
  except OSError:
    return False


def restart_with_huge_pages():
  """Replaces this process by the same command with `glibc.malloc.hugetlb=1` added to
  `GLIBC_TUNABLES` (same arguments, environment otherwise, and open files, stdin included).

  Returns without restarting when `GLIBC_TUNABLES` already sets the tunable (as the restarted
  process's does), or where it would not help (`huge_pages_need_asking`). Call it first, before
  importing JAX: whatever ran before it runs again.
  """
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if TUNABLE in tunables or not sys.executable or not huge_pages_need_asking():
    return
  os.environ['GLIBC_TUNABLES'] = ':'.join(filter(None, [tunables, f'{TUNABLE}=1']))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, sys.orig_argv)
