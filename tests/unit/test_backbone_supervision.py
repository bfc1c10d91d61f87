"""A backbone server that exits is restarted with capped exponential backoff; its backbone
is down meanwhile, and its restarts are counted (and exposed on `/metrics`). The server
process is a fake here; the real one, killed under load, is in
`tests/integration/test_faults.py`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest

from lorafaas.backbone.health import BackboneHealth
from lorafaas.backbone.ownership import read_pid_file
from lorafaas.backbone.supervision import RestartBackoff, SupervisedServer
from lorafaas.invoker.metrics import Gauges, InvokerMetrics, render
from tests.unit.test_invoker_metrics import parse, value


class FakeServer:
    """A server process that runs until its `exited` is set; one made to fail, fails."""

    started: ClassVar[list[FakeServer]] = []

    def __init__(self, pid: int, fail: bool) -> None:
        self.pid = pid
        self.owner = "owner-1"
        self.fail = fail
        self.exited = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("backbone server failed to start: it exited")
        FakeServer.started.append(self)

    async def wait(self) -> int:
        await self.exited.wait()
        return -9

    async def stop(self) -> None:
        self.stopped = True


def test_the_backoff_doubles_to_its_cap_and_starts_again_after_a_stable_run() -> None:
    backoff = RestartBackoff(base_s=1.0, cap_s=8.0, stable_s=60.0)
    assert backoff.after_exit(uptime_s=3600) == 1.0
    assert [backoff.after_failed_start() for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]
    assert backoff.after_exit(uptime_s=5) == 8.0  # crashed soon after its restart: no reset
    assert backoff.after_exit(uptime_s=61) == 1.0  # it had run well: the base again


async def test_an_exited_server_is_restarted_and_its_backbone_is_down_meanwhile(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    FakeServer.started = []
    pids = iter(range(100, 200))
    fails = iter([False, True, True, False])  # the first start, two failed restarts, one good
    health = BackboneHealth()
    ready: list[int] = []

    async def on_ready(process: FakeServer) -> None:  # type: ignore[misc]
        ready.append(process.pid)

    server = SupervisedServer("demo", lambda: FakeServer(next(pids), next(fails)),  # type: ignore[arg-type,return-value]
                              health, tmp_path / "server.pid", on_ready,  # type: ignore[arg-type]
                              RestartBackoff(base_s=0.05, cap_s=0.2))
    await server.start()
    assert health.is_up("demo") and ready == [100]
    assert read_pid_file(tmp_path / "server.pid") == (100, "owner-1")
    FakeServer.started[0].exited.set()  # killed
    await asyncio.sleep(0.01)
    assert not health.is_up("demo")
    for _ in range(200):
        if health.is_up("demo"):
            break
        await asyncio.sleep(0.02)
    assert health.is_up("demo") and health.states["demo"].restarts == 1
    assert ready == [100, 103] and read_pid_file(tmp_path / "server.pid") == (103, "owner-1")
    assert "backbone server demo (pid 100) exited with status -9" in caplog.text
    assert "failed to restart" in caplog.text and "restarted (pid 103" in caplog.text
    await server.stop()
    assert FakeServer.started[-1].stopped and not (tmp_path / "server.pid").exists()


def test_metrics_show_each_backbone_up_or_down_and_its_restarts() -> None:
    health = BackboneHealth()
    health.mark_up("demo")
    health.mark_up("other")
    health.mark_down("other")
    health.mark_up("other", restarted=True)
    health.mark_down("other")
    text = render(InvokerMetrics(), Gauges({}, 0, 1, {},
                                           backbones_up={b: s.up for b, s in health.states.items()},
                                           backbone_restarts={b: s.restarts for b, s in
                                                              health.states.items()}))
    types, samples = parse(text)
    assert types["lorafaas_backbone_up"] == "gauge"
    assert types["lorafaas_backbone_restarts_total"] == "counter"
    assert value(samples, "lorafaas_backbone_up", backbone="demo") == 1
    assert value(samples, "lorafaas_backbone_up", backbone="other") == 0
    assert value(samples, "lorafaas_backbone_restarts_total", backbone="demo") == 0
    assert value(samples, "lorafaas_backbone_restarts_total", backbone="other") == 1
