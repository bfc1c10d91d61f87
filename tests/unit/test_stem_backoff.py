"""Stem cells that fail to initialize: the maintenance backs off per backbone (doubling, to a
cap), logs it, and `/metrics` reports it. The pool and the clock are fakes; the pool on the
real engine is tested in `tests/integration/test_pool.py`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lorafaas.invoker.containers import PooledContainer
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.metrics import Gauges, InvokerMetrics, render
from lorafaas.invoker.pool import PoolConfig, RuntimeUnavailable
from lorafaas.invoker.prewarm import ColdStartWindow, PrewarmConfig, StemBackoff
from tests.unit.test_invoker_metrics import parse, value


class FailingStems:
    """A pool whose stem cells of backbone `broken` fail to initialize; `good` ones start."""

    def __init__(self, tmp: Path) -> None:
        self.config = PoolConfig(invoker_id="t", image="i", run_dir=tmp, pids_limit=64,
                                 start_timeout_s=1.0, max_instances=2)
        self.cold_starts = {"broken": ColdStartWindow(), "good": ColdStartWindow()}
        self.stem_backoff = StemBackoff(base_s=2.0, cap_s=30.0)
        self.starts: list[str] = []
        self.healed = False

    def containers(self) -> list[PooledContainer]:
        return []  # a started stem cell is not kept: each tick wants one again

    def used_mb(self) -> int:
        return 0

    async def health_check(self) -> int:
        return 0

    async def ensure_channels(self) -> int:
        return 0

    async def add_stem_cell(self, backbone: str = "", evict: bool = False) -> bool:
        self.starts.append(backbone)
        if backbone == "broken" and not self.healed:
            raise RuntimeUnavailable("the runtime exited during initialization")
        return True

    async def remove_idle(self, predicate: Callable[[PooledContainer], bool],
                          reason: str) -> int:
        return 0


@pytest.fixture
def pool(tmp_path: Path) -> FailingStems:
    return FailingStems(tmp_path)


def maintenance(pool: FailingStems) -> Maintenance:
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig()))
    return Maintenance(pool, tracker, PrewarmConfig(min_count=1, max_count=1),  # type: ignore[arg-type]
                       period_s=1.0, preloading=False)


async def test_failed_stem_cells_back_off_doubling_to_a_cap(
        pool: FailingStems, caplog: pytest.LogCaptureFixture) -> None:
    work = maintenance(pool)
    tries_at = []
    for second in range(200):  # a tick every second for 200 s
        before = pool.starts.count("broken")
        await work.tick(1000.0 + second)
        if pool.starts.count("broken") > before:
            tries_at.append(second)
    # Waits of 2, 4, 8, 16 s, then the cap of 30 s: not one container per second.
    assert tries_at[:7] == [0, 2, 6, 14, 30, 60, 90]
    assert len(tries_at) == 10
    assert pool.starts.count("good") == 200  # the other backbone is not held back
    assert "a stem cell of backbone broken failed to start" in caplog.text
    assert "the next in 30 s (7 failures in a row)" in caplog.text


async def test_a_stem_cell_that_starts_ends_the_backoff(pool: FailingStems) -> None:
    work = maintenance(pool)
    for second in (0, 2, 6):
        await work.tick(float(second))
    assert pool.stem_backoff.waiting_s("broken", 6.0) == 8.0
    pool.healed = True
    await work.tick(14.0)
    assert pool.stem_backoff.allowed("broken", 14.0)
    pool.healed = False
    await work.tick(15.0)  # the first failure after a start waits the base time again
    assert pool.stem_backoff.waiting_s("broken", 15.0) == 2.0
    assert pool.stem_backoff.states["broken"].total == 4


async def test_metrics_report_failures_and_the_wait(pool: FailingStems) -> None:
    work = maintenance(pool)
    for second in (0, 2, 6):
        await work.tick(float(second))
    backoff = pool.stem_backoff
    gauges = Gauges({}, 0, 1, {}, stem_failures={b: s.total for b, s in backoff.states.items()},
                    stem_backoff_s={b: backoff.waiting_s(b, 9.0) for b in backoff.states})
    types, samples = parse(render(InvokerMetrics(), gauges))
    assert types["lorafaas_stem_cell_failures_total"] == "counter"
    assert value(samples, "lorafaas_stem_cell_failures_total", backbone="broken") == 3
    assert value(samples, "lorafaas_stem_cell_backoff_seconds", backbone="broken") == 5.0
