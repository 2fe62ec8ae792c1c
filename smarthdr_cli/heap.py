"""Keeping freed memory for reuse during a phase that allocates and frees the same buffers again.

SIFT (`align`) builds a ~185 MB scale-space pyramid at every call and frees it at the end. glibc
hands that memory back to the kernel each time (it trims the top of its heap above a threshold),
so every call faults it in again: 46,000 fresh 4 KB pages, ~0.1 s a call on a 2-core VM where a
page fault costs ~4 us. Inside `reused_heap` freed memory stays in the heap for the next call;
at the end it is handed back (malloc_trim), so what follows finds the process as small as
without it. Elsewhere than glibc (macOS, Windows, musl) this is a no-op.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from typing import Iterator

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
# glibc's own ceiling for its adaptive mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX):
# blocks below it come from the heap, larger ones (whole frames) are mapped and unmapped alone.
MMAP_THRESHOLD = 32 << 20
TRIM_OUTSIDE = 2 * MMAP_THRESHOLD  # what the adaptive trim threshold becomes at that ceiling
TRIM_INSIDE = 2**31 - 1  # mallopt's largest value (a C int): no trimming inside the block

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only, not in musl
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


@contextlib.contextmanager
def reused_heap() -> Iterator[None]:
    """Freed memory is kept in the heap inside the block (blocks below MMAP_THRESHOLD), and
    handed back at its end; nested or concurrent blocks hand it back when the last one ends."""
    global _depth
    if _LIBC is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _LIBC.malloc_trim(0)  # what earlier phases left free: not kept through this one
            _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_INSIDE)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_OUTSIDE)
                _LIBC.malloc_trim(0)
