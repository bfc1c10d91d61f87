"""Host memory of the runtime's process, from /proc: how much each artifact takes as it loads.

An artifact's size is how much the process's resident memory grows while it loads, counting
private pages (`RssAnon`) and pages of ordinary files (`RssFile`: the libraries' shared
objects, the adapter's and tokenizer's files while they are mapped): what the container's
memory limit is charged for. Pages of the tmpfs where the backbone server publishes the
weights (`RssShmem`) are left out: the server holds them once for every container, and they
become resident here whenever a forward first reads them (the kernels' warm-up, mostly), so
counting them would charge the backbone's weights to whichever stage touched them first.

This module runs before the libraries are imported (to take the baseline): stdlib only.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

STATUS = Path("/proc/self/status")
COUNTED = ("RssAnon:", "RssFile:")  # kB each


def held_bytes() -> int | None:
    """Resident private and file-backed bytes of this process; None where /proc lacks them."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    values = [int(line.split()[1]) * 1024 for line in lines if line.startswith(COUNTED)]
    return sum(values) if len(values) == len(COUNTED) else None


def grown(before: int | None, after: int | None) -> int | None:
    """Bytes gained between two readings, never below zero; None if either is missing.

    Never negative: the allocator may hand memory back to the system in the middle of a
    stage (freed import-time buffers), which says nothing about what the artifact holds.
    """
    if before is None or after is None:
        return None
    return max(0, after - before)


def release_free_heap() -> bool:
    """Hand the C allocator's free memory back to the system; False where it cannot.

    glibc keeps memory freed by a generation (activations, the KV cache, the warm-up's
    buffers) in its arenas for reuse, so an idle container would hold its busiest moment's
    footprint for as long as it lives. `malloc_trim(0)` returns every free page to the
    system. Other C libraries (musl) return memory on free and have no such call.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
