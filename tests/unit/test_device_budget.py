"""The offloading budget, measured from the device where a backbone server reported it."""

from __future__ import annotations

from lorafaas.backbone.publisher import device_memory
from lorafaas.invoker.device_budget import (
    ARTIFACT_SHARE,
    MB,
    accelerator_budget_bytes,
    measured_free,
)

GB = 1024 * MB


def test_without_a_measure_the_setting_is_the_budget() -> None:
    assert accelerator_budget_bytes(0, None) == 0  # unlimited: no offloading, as on CPU
    assert accelerator_budget_bytes(512, None) == 512 * MB


def test_a_measured_device_sets_the_budget_and_the_setting_caps_it() -> None:
    assert accelerator_budget_bytes(0, 10 * GB) == int(10 * GB * ARTIFACT_SHARE)
    assert accelerator_budget_bytes(1024, 10 * GB) == 1024 * MB
    assert accelerator_budget_bytes(100_000, 10 * GB) == int(10 * GB * ARTIFACT_SHARE)
    assert accelerator_budget_bytes(0, 0) > 0  # a full device still gets a budget, not unlimited


def test_the_least_free_memory_reported_counts() -> None:
    assert measured_free([None, None]) is None
    assert measured_free([8 * GB, None, 6 * GB]) == 6 * GB


def test_the_server_reads_free_and_total_from_the_device_it_publishes_on() -> None:
    asked: list[int] = []

    def mem_get_info(device: int) -> tuple[int, int]:
        asked.append(device)
        return 30 * GB, 80 * GB

    assert device_memory(3, mem_get_info) == {"free": 30 * GB, "total": 80 * GB}
    assert asked == [3]


def test_the_pool_budget_follows_the_descriptor_the_server_sent() -> None:
    from lorafaas.controller.backbones import Published

    published = Published.from_descriptor({"dtype": "bfloat16", "bytes": 10, "transport":
                                           "cuda-ipc", "device": 1,
                                           "deviceMemory": {"free": 20 * GB, "total": 80 * GB}})
    assert (published.transport, published.device, published.device_free_bytes) == (
        "cuda-ipc", 1, 20 * GB)
    tmpfs = Published.from_descriptor({"dtype": "float32", "bytes": 10, "transport": "tmpfs"})
    assert (tmpfs.transport, tmpfs.device, tmpfs.device_free_bytes) == ("tmpfs", None, None)
