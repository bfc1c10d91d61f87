"""The runtime gives its free heap back once it goes idle, not between busy requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lorafaas.runtime.idle_trim import IdleTrimmer, idle_trim_middleware
from lorafaas.runtime.memory import release_free_heap


class CountingRelease:
    def __init__(self) -> None:
        self.calls = 0
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.calls += 1
        self.threads.append(threading.current_thread().name)


async def test_releases_once_after_the_last_request_ends() -> None:
    release = CountingRelease()
    trimmer = IdleTrimmer(release, delay_s=0.05)
    async with trimmer.active():
        async with trimmer.active():
            pass
        await asyncio.sleep(0.1)
        assert release.calls == 0  # one request is still in flight
    await asyncio.sleep(0.1)
    await trimmer.settled()
    assert release.calls == 1
    assert trimmer.releases == 1
    assert release.threads[0] != threading.current_thread().name  # off the event loop


async def test_a_request_within_the_delay_cancels_the_release() -> None:
    release = CountingRelease()
    trimmer = IdleTrimmer(release, delay_s=0.2)
    for _ in range(5):  # back-to-back requests: no trim between them
        async with trimmer.active():
            await asyncio.sleep(0.01)
    assert release.calls == 0
    await asyncio.sleep(0.3)
    await trimmer.settled()
    assert release.calls == 1


async def test_a_failing_release_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("no allocator")

    trimmer = IdleTrimmer(broken, delay_s=0.01)
    with caplog.at_level(logging.WARNING, logger="lorafaas.runtime.idle_trim"):
        async with trimmer.active():
            pass
        await asyncio.sleep(0.05)
        with contextlib.suppress(OSError):
            await trimmer.settled()  # the release ran (and failed), whatever the timing
        await asyncio.sleep(0)  # its done callback runs on the next loop iteration
    assert trimmer.releases == 0
    assert "releasing the free heap failed: OSError('no allocator')" in caplog.text
    async with trimmer.active():  # still usable afterwards
        pass


async def test_middleware_counts_only_init_and_run() -> None:
    release = CountingRelease()
    trimmer = IdleTrimmer(release, delay_s=0.01)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[idle_trim_middleware(trimmer)])
    app.add_routes([web.post("/run", ok), web.get("/health", ok)])
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/health")).status == 200
        await asyncio.sleep(0.05)
        assert release.calls == 0
        assert (await client.post("/run")).status == 200
        await asyncio.sleep(0.05)
        await trimmer.settled()
        assert release.calls == 1


def test_release_free_heap_runs_on_this_libc() -> None:
    # glibc (this machine, the runtime image) has malloc_trim; the call must not fail.
    assert release_free_heap() is True
