"""Process settings for fast CPU runs: glibc's allocator.

XLA's CPU runtime frees its large temporary buffer at the end of every call and
allocates it again at the next.  Under glibc's defaults a block that large is served
by ``mmap`` and returned by ``munmap``, so every call touches fresh pages: about 73k
minor page faults per LSTM training step at T=1000 (``experiments/bench.py`` counts
them).  Keeping freed memory in the heap removes the faults.  Two equivalent ways:

- before the process starts, the environment :data:`TUNED_MALLOC_ENV`;
- inside a running process, :func:`tune_allocator` (glibc's ``mallopt``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["TUNED_MALLOC_ENV", "tune_allocator"]

#: glibc tunables read at process start: one arena, no mmap for large blocks, and
#: never give memory back to the system (trim) or pad the heap top by 512 MiB.
TUNED_MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "536870912",
}

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_INT_MAX = 2**31 - 1  # mallopt takes a C int, so the trim threshold is capped at 2 GiB


def tune_allocator() -> bool:
    """Applies :data:`TUNED_MALLOC_ENV` to the running process with ``mallopt``.

    Affects allocations made after the call, for every library in the process
    (XLA, and torch when both run in one process).  The arena limit only binds
    threads that have not allocated yet.

    Returns:
      True if glibc accepted every setting; False where there is no glibc
      (macOS, musl), in which case nothing changes.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (_M_MMAP_MAX, 0),
        (_M_TRIM_THRESHOLD, _INT_MAX),
        (_M_TOP_PAD, int(TUNED_MALLOC_ENV["MALLOC_TOP_PAD_"])),
        (_M_ARENA_MAX, int(TUNED_MALLOC_ENV["MALLOC_ARENA_MAX"])),
    )
    return all(mallopt(param, value) == 1 for param, value in settings)
