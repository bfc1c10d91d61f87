"""The accelerator-memory budget of offloading, measured from the device where there is one.

On a CUDA host each backbone server reports its device's free memory once it has
published (`torch.cuda.mem_get_info`, in its descriptor's `deviceMemory`): the functions'
own artifacts may hold a share of what is left, the rest stays for activations (KV caches,
workspaces). `LORAFAAS_ACCELERATOR_MEMORY_MB` above 0 caps it; on a CPU host, where nothing
is measured, it is the budget as before (0: unlimited, no offloading).
"""

from __future__ import annotations

from collections.abc import Iterable

MB = 1024 * 1024
ARTIFACT_SHARE = 0.8  # of the device's free memory after the backbones, for artifacts


def measured_free(reports: Iterable[int | None]) -> int | None:
    """The least free memory the backbone servers reported (the last to publish saw the
    others' weights); None where none measured a device."""
    values = [value for value in reports if value is not None]
    return min(values) if values else None


def accelerator_budget_bytes(configured_mb: int, device_free: int | None) -> int:
    """The offloading budget: a share of the measured free memory, capped by the setting
    when it is above 0; the setting alone where nothing was measured (0: unlimited)."""
    configured = configured_mb * MB
    if device_free is None:
        return configured
    measured = max(1, int(device_free * ARTIFACT_SHARE))
    return min(configured, measured) if configured > 0 else measured
