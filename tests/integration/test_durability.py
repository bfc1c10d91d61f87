"""An accepted (202) activation survives a `kill -9` of the platform: it runs after the restart.

The platform runs as its own process (`lorafaas serve`), as in production, so that the kill
is a real one: no cleanup, no shutdown hook, the registry as the crash left it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from lorafaas.props import read_props
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Activation, PendingInvocation
from lorafaas.settings import Settings
from tests.integration.test_api_resources import body

pytestmark = pytest.mark.docker
API = "/api/v1/namespaces/_"
PARAMETERS = {"prompt": "Tell me a long story", "max_tokens": 8}
LIMIT_MS = 600_000


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class PlatformProcess:
    """`lorafaas serve` in a process of its own, and a client of its API."""

    settings: Settings
    port: int
    process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The settings as the environment the command reads them from."""
        s = self.settings
        return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                "LORAFAAS_HOME": str(s.home), "LORAFAAS_PORT": str(self.port),
                "LORAFAAS_DATABASE_URL": s.database_url, "LORAFAAS_RUN_DIR": str(s.run_dir),
                "LORAFAAS_SHM_DIR": str(s.shm_dir), "LORAFAAS_MODELS_DIR": str(s.models_dir),
                "LORAFAAS_BACKBONE": str(s.backbone_dir),
                "LORAFAAS_RUNTIME_IMAGE": s.runtime_image,
                "LORAFAAS_INVOKER_ID": s.invoker_id, "LORAFAAS_PREWARM_MIN": "0",
                "LORAFAAS_PREWARM_MAX": "0", "LORAFAAS_PRELOAD_SPARE_SHARE": "0",
                "LORAFAAS_PREFILL_PROFILING": "off",
                "LORAFAAS_SHARED_CONTAINERS": s.shared_containers,
                # A loaded machine can take a minute to start a container: no activation
                # here may time out for it.
                "LORAFAAS_ACTION_TIMEOUT_MS": str(LIMIT_MS),
                "LORAFAAS_CONTAINER_START_TIMEOUT_S": str(LIMIT_MS // 1000)}

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start `lorafaas serve` (Popen does not wait for it)."""
        return subprocess.Popen([sys.executable, "-m", "lorafaas.cli", "serve"],
                                env=self.environment(), stdout=subprocess.DEVNULL)

    async def start(self) -> None:
        """Start it and wait until its API answers."""
        self.process = self.spawn()
        deadline = time.monotonic() + 300
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "the platform exited at start"
                try:
                    async with client.get(f"{self.url}/api/v1"):
                        return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.5)
        raise AssertionError("the platform did not answer within 300 s")

    @property
    def url(self) -> str:
        """Where its API listens."""
        return f"http://127.0.0.1:{self.port}"

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One API request with the guest's key; its status and JSON body."""
        user, _, key = read_props(self.settings.props_file)["AUTH"].partition(":")
        headers = {"Authorization": aiohttp.encode_basic_auth(user, key)}
        if "json" in kwargs:  # a stream: aiohttp warns about large in-memory bodies
            kwargs["data"] = io.BytesIO(json.dumps(kwargs.pop("json")).encode())
            headers["Content-Type"] = "application/json"
        async with aiohttp.ClientSession(headers=headers) as client, \
                client.request(method, f"{self.url}{API}{path}", **kwargs) as response:
            return response.status, await response.json()

    def kill(self) -> None:
        """`kill -9` the platform; its backbone server, orphaned, goes the same way."""
        assert self.process is not None
        orphans = children_of(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop it as an operator does (SIGTERM), which removes its containers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
async def platform_process(settings: Settings) -> AsyncIterator[PlatformProcess]:
    """The platform of `settings`, run by `lorafaas serve` (stopped at the end)."""
    running = PlatformProcess(settings, free_port())
    try:
        yield running
    finally:
        running.stop()


async def registry_rows(settings: Settings, activation_ids: list[str]
                        ) -> tuple[set[str], set[str]]:
    """Which of the activations have a record, and which a pending row."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessions(engine)() as session:
            records = set(await session.scalars(select(Activation.activation_id).where(
                Activation.activation_id.in_(activation_ids))))
            pending = set(await session.scalars(select(PendingInvocation.activation_id).where(
                PendingInvocation.activation_id.in_(activation_ids))))
        return records, pending
    finally:
        await engine.dispose()


async def record_of(platform: PlatformProcess, activation_id: str) -> Any:
    """The activation's record, once written."""
    for _ in range(600):
        status, record = await platform.call("GET", f"/activations/{activation_id}")
        if status == 200:
            return record
        await asyncio.sleep(0.5)
    raise AssertionError(f"no record of activation {activation_id}")


async def test_accepted_activations_run_after_a_kill_9_and_restart(  # type: ignore[no-untyped-def]
        platform_process: PlatformProcess, demo_models, make_zip) -> None:
    await platform_process.start()
    status, _ = await platform_process.call(
        "PUT", "/actions/pirate", json=body(make_zip(demo_models.adapters["pirate"]),
                                            limits={"timeout": LIMIT_MS}))
    assert status == 200
    # A non-blocking invocation, and a blocking one whose wait (1 ms) runs out before its
    # cold start: both are answered 202, and neither has ended when the platform is killed.
    status, queued = await platform_process.call("POST", "/actions/pirate", json=PARAMETERS)
    assert status == 202
    status, waited = await platform_process.call(
        "POST", "/actions/pirate", params={"blocking": "true", "timeout": "1"}, json=PARAMETERS)
    assert status == 202
    accepted = [queued["activationId"], waited["activationId"]]
    platform_process.kill()
    records, pending = await registry_rows(platform_process.settings, accepted)
    assert records == set() and pending == set(accepted)  # the kill came before their end

    await platform_process.start()
    for activation_id in accepted:
        record = await record_of(platform_process, activation_id)
        assert record["response"]["statusCode"] == 0, record
        assert record["response"]["result"]["text"]
    assert await registry_rows(platform_process.settings, accepted) == (set(accepted), set())
