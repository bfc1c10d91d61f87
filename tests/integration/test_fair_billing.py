"""Billing under contention: a busy neighbour does not make a request cost more.

The same request (greedy, a fixed number of tokens) is invoked alone and beside processes
that keep every core of the machine busy, a few times each in turn. Its wall time grows with
the contention; what it is billed (the CPU time the host read from its container's cgroup)
does not: the medians are within 25% of each other.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.integration.test_end_to_end import annotation, create_action, invoke

pytestmark = pytest.mark.docker
ROUNDS = 3  # medians of this many runs each way: the machine is shared and noisy
REQUEST = {"prompt": "Tell me about the weather today.", "max_tokens": 48, "temperature": 0,
           "ignore_eos": True}


@contextmanager
def cpu_burners() -> Iterator[None]:
    """One process per core spinning on the CPU until the block ends."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


async def billed(platform: Any) -> tuple[float, float, float]:
    """Invoke the request warm; its billed accelerator-seconds, total cost and duration (s)."""
    status, record, _ = await invoke(platform, "pirate", **REQUEST)
    assert status == 200 and annotation(record, "startKind") == "warm", record
    cost = annotation(record, "cost")
    assert cost["measure"] == "cgroup-cpu"
    assert record["response"]["result"]["usage"]["completion_tokens"] == REQUEST["max_tokens"]
    return cost["acceleratorSeconds"], cost["total"], record["duration"] / 1000


async def test_a_busy_neighbour_does_not_change_the_bill(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    await create_action(platform, "pirate", demo_models.adapters["pirate"], make_zip)
    status, record, _ = await invoke(platform, "pirate", **REQUEST)  # the cold start
    assert status == 200, record
    alone, crowded = [], []
    for _ in range(ROUNDS):
        alone.append(await billed(platform))
        with cpu_burners():
            crowded.append(await billed(platform))
    medians = [[statistics.median(run[i] for run in runs) for i in range(3)]
               for runs in (alone, crowded)]
    (seconds_alone, cost_alone, wall_alone), (seconds_crowded, cost_crowded, wall_crowded) = \
        medians
    print(f"alone: {seconds_alone:.4f} accelerator-s, ${cost_alone:.3e}, {wall_alone:.2f} s wall; "
          f"beside a CPU-heavy neighbour: {seconds_crowded:.4f} accelerator-s, "
          f"${cost_crowded:.3e}, {wall_crowded:.2f} s wall "
          f"(wall ×{wall_crowded / wall_alone:.2f}, bill ×{cost_crowded / cost_alone:.2f})")
    assert seconds_crowded == pytest.approx(seconds_alone, rel=0.25)
    assert cost_crowded == pytest.approx(cost_alone, rel=0.25)
