"""Keep large buffers out of the C allocator's heap, so that memory is returned once freed.

glibc serves allocations above a threshold (128 KB at first) with their own memory map, given
back to the system when freed. But each time such a block is freed, glibc raises the threshold to
its size (up to 32 MB): after the first large message, buffers of a few MB come from the heap,
where freed memory mostly stays with the process and interleaves with small objects. Which
buffer is freed first then decides how much a large message costs: the pipeline needed 132 MB for
a 25 MB attachment in some runs and 156 MB in others. With the threshold pinned, it needs 130 MB
every time (``bench/pdf_memory.py``).

``siegel serve`` pins it at start; a program that embeds siegel and handles large mail can call
:func:`pin_mmap_threshold` itself. An operator's own ``MALLOC_MMAP_THRESHOLD_`` is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: ``M_MMAP_THRESHOLD`` from glibc's ``malloc.h``.
_M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD_BYTES = 128 * 1024


def pin_mmap_threshold(threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
    """Fix glibc's memory-map threshold at ``threshold_bytes`` for this process.

    Returns whether it was set: not on other C libraries, nor when ``MALLOC_MMAP_THRESHOLD_``
    is in the environment (the operator chose)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
