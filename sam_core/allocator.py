"""Keep the C heap's large blocks for reuse (glibc): fewer page faults per encode and decode.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves a
block above its *mmap threshold* (128 KiB at start, raised automatically up to
32 MiB) with a fresh ``mmap`` and unmaps it on ``free``; and it returns the
free top of its heap to the OS once that exceeds the *trim threshold*. Every
new tensor of such a size then starts as untouched pages, and the kernel
zero-fills each page on first write (a page fault per 4 KiB). Measured on the
MobileSAM encoder (one thread, 1024 x 1024 input): about 300 ms of its
1500 ms were system time in page faults; and the batched mask decoder of the
automatic generator spent a quarter of its time there.

:func:`tune_allocator` raises both thresholds (``mallopt``), so that large
blocks come from the heap and freed ones are reused by the next encode or
batch (ONNX Runtime gets the same effect from its own arena). The cost: memory
freed by the engine stays resident until :func:`release_free_memory`
(``malloc_trim``) hands it back, so the resident size stays near the peak of
the largest job so far instead of falling after each one. Blocks larger than
glibc's per-thread heap (64 MiB) requested from a thread other than the main
one are still mapped and unmapped each time.

A heap that keeps its blocks can also hold on to more than the job needs:
in a minimal loop that allocates one 64 MiB tensor at a time with small
allocations in between, each freed block was a few bytes short of the next
aligned request and the heap grew by 64 MiB per round. The engine's own
patterns do not do that (measured: resident size flat over 30 encodes with
clicks, 40 clicks with full-resolution masks on a 12 MP photo, and the
window's 300-image session in ``tests/test_gui_longrun.py``), and
``tests/test_allocator.py`` checks a convolution loop stays flat.

Process-wide and idempotent; :func:`sam_core.load_model` calls it. A no-op
where the C library is not glibc, or when ``SAM_CORE_KEEP_MALLOC=1`` is set in
the environment (to compare, or to keep the C library's defaults).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

__all__ = ["tune_allocator", "release_free_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: Blocks below this many bytes come from the heap (glibc's M_MMAP_THRESHOLD).
MMAP_THRESHOLD = 1 << 30

#: Free memory at the top of the heap kept before returning it (glibc's M_TRIM_THRESHOLD).
TRIM_THRESHOLD = 1 << 30

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_libc: Any = None
_tuned = False


def _glibc() -> Any:
    """The glibc handle with ``mallopt`` and ``malloc_trim``, or False elsewhere."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                import ctypes.util
                import platform

                if platform.libc_ver()[0] == "glibc":
                    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                    if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                        libc.mallopt.restype = ctypes.c_int
                        libc.malloc_trim.argtypes = [ctypes.c_size_t]
                        libc.malloc_trim.restype = ctypes.c_int
                        _libc = libc
            except OSError:  # pragma: no cover - no loadable C library
                _libc = False
    return _libc


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if they are raised now or already were."""
    global _tuned
    with _lock:
        if _tuned:
            return True
        if os.environ.get("SAM_CORE_KEEP_MALLOC") == "1":
            return False
        libc = _glibc()
        if not libc:
            return False
        # mallopt returns 1 on success; an older glibc may refuse a threshold above 32 MiB
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
        return _tuned


def release_free_memory() -> None:
    """Hand memory that the C heap holds but no longer uses back to the OS (``malloc_trim``; glibc only)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
