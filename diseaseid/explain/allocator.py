"""Keep freed memory in the process (glibc ``mallopt``), so repeated explanations reuse warm pages.

An explanation keeps every layer's activations until its backward sweep ends: some 30 MB for Lite0 at batch 1.
glibc serves blocks that large with fresh ``mmap`` pages and returns them on ``free``, so every call pays for
page faults again (thousands per call; measured: Lite0's traced forward pass 26 ms instead of 11 ms on one
core). Raising the mmap and trim thresholds keeps those blocks on the heap for the next call. The cost is that
the process keeps its peak heap instead of shrinking back, which is what a long-running worker wants.

Process-wide, so it is applied once, by the first ``explain_maps`` call (and the CLI), and only where glibc is
the allocator; ``DISEASEID_KEEP_FREED_MEMORY=0`` turns it off. Setting the environment variables
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` before the process starts does the same.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap; up to 1 GiB of free heap is kept

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply once per process; True when the allocator was tuned."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("DISEASEID_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    return _applied
