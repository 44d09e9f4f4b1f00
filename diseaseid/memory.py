"""What a process does with heap memory it frees: the one policy, and the only code that talks to glibc's malloc.

Three kinds of process, two needs:

- **A process that explains** (the explain worker, ``diseaseid explain``, ``explain-eval``) keeps freed memory
  (``keep_freed_memory``, applied by the first ``compile_graph``). An explanation keeps every layer's
  activations until its backward sweep ends: some 30 MB for Lite0 at batch 1. glibc serves blocks that large
  with fresh ``mmap`` pages and returns them on ``free``, so every call would pay for page faults again
  (thousands per call; measured: Lite0's traced forward pass 26 ms instead of 11 ms on one core). Raising the
  mmap and trim thresholds keeps those blocks on the heap for the next call; the process keeps its peak heap
  instead of shrinking back, which is what a long-running worker wants.
- **A batch command** (every ``python -m diseaseid`` command: training, embeddings, benchmarks, fits) keeps
  freed memory too, applied by ``diseaseid.cli.main``. A training step of Lite0 at batch 32 allocates
  activations of up to 200 MB each, above the largest size glibc's adaptive threshold reaches (32 MB), so every
  one was mapped and unmapped anew: 6 steps (forward, backward, AdamW; 2 threads) took 10.2 s, 6.4 s of it in the
  kernel, and 6.0 s (0.2 s) with the thresholds raised; the teacher's inference on 512 slices in batches of 32
  took 10.1 s (8.6 s in the kernel) against 4.7 s (0.3 s) (/tmp scripts, 2026-12-06).
- **A process that decodes uploads** (the inference and explain APIs) returns freed memory after each large
  decode (``release_freed_memory``, glibc's ``malloc_trim``). A burst of large decodes leaves the freed buffers
  in malloc's per-thread arenas, where they count as the process's memory until something else reuses them.

No served process is both. Where one is (a test session, a notebook), keeping wins: once ``keep_freed_memory``
has been applied, ``release_freed_memory`` does nothing, since trimming would hand back exactly the pages the
next explanation needs.

Both act only where glibc is the allocator (elsewhere they do nothing); ``DISEASEID_KEEP_FREED_MEMORY=0`` turns
keeping off. Setting ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` before the process starts keeps
memory the same way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap; up to 1 GiB of free heap is kept

_libc: ctypes.CDLL | None | bool = None  # None: not looked up yet; False: no glibc
_kept: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None; looked up once."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                    _libc = libc
            except OSError:  # not glibc (musl): nothing to tune
                pass
    return _libc or None


def keep_freed_memory() -> bool:
    """Keep freed blocks on the heap from now on; applied once per process. True when the allocator was tuned."""
    global _kept
    if _kept is not None:
        return _kept
    _kept = False
    if os.environ.get("DISEASEID_KEEP_FREED_MEMORY", "1") == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    _kept = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    return _kept


def release_freed_memory() -> bool:
    """Hand freed heap memory back to the OS now, unless this process keeps it (``keep_freed_memory``). True when
    it was trimmed."""
    libc = _glibc()
    if libc is None or _kept:
        return False
    libc.malloc_trim(0)
    return True
