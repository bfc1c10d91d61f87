"""One line that names the machine a prefill profile was measured on (stdlib only).

The controller keys stored profiles by it and the profiler prints it, so both describe the
machine the same way: CPU model, cores, the torch threads a function container runs with,
and the architecture.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine(torch_threads: int) -> str:
    """CPU model, cores, torch threads (0: torch's default) and architecture."""
    threads = f"{torch_threads} torch threads" if torch_threads > 0 else "default torch threads"
    return f"{cpu_model()}, {os.cpu_count()} cores, {threads} ({platform.machine()})"


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
