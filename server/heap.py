"""What the server asks of the C library's allocator (glibc) so that large frames leave no memory behind.

Both are no-ops on other C libraries. glibc keeps freed blocks for reuse rather than returning them to the
system: a burst of large frames or large refused requests would leave the server hundreds of MB larger for
good, though nothing holds them.
"""

from __future__ import annotations

import ctypes
import functools
import os

# glibc's mallopt parameter number for the size from which allocations get their own mapping (malloc.h).
M_MMAP_THRESHOLD = -3
# Blocks from 1 MiB up (a frame larger than 640x480, its copies, the detectors' buffers for it) get their own
# mapping, returned to the system when freed. glibc's default threshold rises to the largest block freed
# (up to 32 MiB), after which such blocks land in the heap and stay there: a burst of six 4K and 12 MP
# frames per detector left the server at 877 MB resident instead of 371; with this (and the detectors
# releasing their buffers) at 382.
MMAP_THRESHOLD_BYTES = 1 << 20

# A request at least this large is followed by release_freed(). gRPC receives it in blocks smaller than the
# mmap threshold, interleaved over its threads' heaps with everything else; freed, they stay there
# (docs/performance.md, "Design measurements", has what they left and what a trim costs).
LARGE_REQUEST_BYTES = 4 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to load by that name (Windows)
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_heap() -> None:
    """Fixes glibc's mmap threshold at MMAP_THRESHOLD_BYTES, once at start; nothing when the operator set
    MALLOC_MMAP_THRESHOLD_ (their setting wins). --replicas processes call it themselves."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or (libc := _libc()) is None:
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed() -> None:
    """Hands the free pages of every heap back to the system (glibc's malloc_trim). Blocks the calling thread
    for milliseconds: call it off the event loop, after a request of LARGE_REQUEST_BYTES or more."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)
