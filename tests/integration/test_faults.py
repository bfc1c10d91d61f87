"""Faults injected while clients invoke, against the real Docker engine and `lorafaas serve`
in a process of its own (one platform for the module): each heals, and the tally of the
clients' activations (tests/integration/tally.py) has none lost and nothing left behind.

- the backbone server killed (SIGKILL): it is restarted, and new functions start again;
- the platform killed (`kill -9`) and started again on the same run directory and
  database: no process, folder or container of the old run remains, and the new run works;
- an action deleted while its container starts: no container of it remains;
- clients that drop their streams mid-generation: each generation is cut and recorded as
  cut, and the other clients' activations all complete.

Every wait has a generous deadline and nothing is timed: the cores are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

from lorafaas.backbone.ownership import SERVER_PID, is_server_of, read_pid_file
from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER
from lorafaas.settings import Settings
from tests.integration.served import module_settings
from tests.integration.tally import count
from tests.integration.test_api_resources import body
from tests.integration.test_backbone_ownership import alive
from tests.integration.test_dropped_stream import read_one_chunk
from tests.integration.test_durability import LIMIT_MS, PlatformProcess, free_port, record_of
from tests.unit.test_invoker_metrics import parse, value

pytestmark = pytest.mark.docker
PARAMETERS = {"prompt": "Ahoy", "max_tokens": 4}
DEADLINE_S = 600.0  # for what must heal: generous, never a measure


def zipped(folder: Path) -> bytes:
    """The adapter folder as an action's zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            archive.write(path, path.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fault_settings(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
                   runtime_image: str) -> Iterator[Settings]:
    """The module's platform settings: a short run directory (socket paths), SQLite."""
    run_dir = Path(tempfile.mkdtemp(prefix="lf-", dir="/tmp"))
    shm_dir = Path("/dev/shm") / f"lorafaas-faults-{uuid.uuid4().hex[:8]}"
    settings = module_settings(tmp_path_factory.mktemp("faults"), run_dir, shm_dir,
                               demo_models, runtime_image)
    # Faults of functions' own containers: a new function's first container attaches to the
    # restarted backbone server (a namespace container already running would not).
    yield replace(settings, shared_containers="off")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(shm_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def served(fault_settings: Settings, demo_models: Any) -> Iterator[PlatformProcess]:
    """`lorafaas serve` for the module, with the `pirate` action warm (each call of the
    process's client opens its own session: no event loop is shared across tests)."""
    platform = PlatformProcess(fault_settings, free_port())
    try:
        asyncio.run(platform.start())
        asyncio.run(create(platform, "pirate", demo_models.adapters["pirate"]))
        assert asyncio.run(completes(platform, "pirate"))
        yield platform
    finally:
        platform.stop()


async def create(platform: PlatformProcess, name: str, adapter: Path) -> None:
    """Create (or replace) an action of the adapter, with a timeout no start here reaches."""
    status, answer = await platform.call("PUT", f"/actions/{name}?overwrite=true",
                                         json=body(zipped(adapter),
                                                   limits={"timeout": LIMIT_MS}))
    assert status == 200, answer


class Clients:
    """Clients invoking functions without blocking, one request a second each, until
    stopped; they keep every activation id they were given."""

    def __init__(self, platform: PlatformProcess, names: list[str]) -> None:
        self.platform = platform
        self.names = names
        self.accepted: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for name in self.names:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    status, answer = await self.platform.call("POST", f"/actions/{name}",
                                                              json=PARAMETERS)
                    if status == 202:
                        self.accepted.append(answer["activationId"])
            await asyncio.sleep(1.0)

    def __enter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def server_pid(settings: Settings) -> tuple[int, str]:
    """The running backbone server's pid and owner, from its pid file."""
    name = settings.backbone_specs[0].name
    record = read_pid_file(settings.run_dir / "backbones" / name / SERVER_PID)
    assert record is not None and is_server_of(*record), record
    return record


def labelled(docker_client: Any, settings: Settings, action: str | None = None) -> list[str]:
    """Ids of the containers of this invoker (of one action, when named)."""
    labels = [f"{LABEL_INVOKER}={settings.invoker_id}"]
    if action is not None:
        labels.append(f"{LABEL_ACTION}={action}")
    return [c["Id"] for c in docker_client.api.containers(all=True, filters={"label": labels})]


def container_folders(settings: Settings) -> set[str]:
    """The per-container folders under the run directory."""
    folder = settings.run_dir / "c"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def unmatched(docker_client: Any, settings: Settings) -> set[str]:
    """Containers without their folder and folders without their container, right now."""
    names = {c["Names"][0].rsplit("-", 1)[-1] for c in docker_client.api.containers(
        all=True, filters={"label": f"{LABEL_INVOKER}={settings.invoker_id}"})}
    folders = container_folders(settings)
    return {f"container {n}" for n in names - folders} | {f"folder {f}" for f in folders - names}


async def strays(docker_client: Any, settings: Settings) -> list[str]:
    """What stays unmatched over a few seconds (a start or removal in progress does not)."""
    first = unmatched(docker_client, settings)
    await asyncio.sleep(5)
    return sorted(first & unmatched(docker_client, settings))


async def metric(platform: PlatformProcess, name: str, **labels: str) -> float:
    """One sample of `/metrics` (the guest's namespace is the test's admin)."""
    user, _, key = (await asyncio.to_thread(_auth, platform)).partition(":")
    async with aiohttp.ClientSession() as client, client.get(
            f"{platform.url}/metrics",
            headers={"Authorization": aiohttp.encode_basic_auth(user, key)}) as response:
        assert response.status == 200
        _, samples = parse(await response.text())
    return value(samples, name, **labels)


def _auth(platform: PlatformProcess) -> str:
    from lorafaas.props import read_props

    return read_props(platform.settings.props_file)["AUTH"]


async def until(predicate: Any, what: str) -> None:
    """Wait for an async predicate, within the generous deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:.0f} s: {what}"
        await asyncio.sleep(1.0)


async def completes(platform: PlatformProcess, name: str) -> bool:
    """One blocking invoke of the function; whether it succeeded (its record is waited for
    when the blocking wait ran out first: a cold start on shared cores can take longer)."""
    status, answer = await platform.call("POST", f"/actions/{name}",
                                         params={"blocking": "true"}, json=PARAMETERS)
    if status == 202:
        answer = await record_of(platform, answer["activationId"])
    elif status != 200:
        return False
    return bool(answer["response"]["statusCode"] == 0)


async def test_a_killed_backbone_server_is_restarted_and_new_functions_start_again(
        served: PlatformProcess, demo_models: Any, docker_client: Any) -> None:
    settings = served.settings
    old_pid, owner = server_pid(settings)
    with Clients(served, ["pirate"]) as clients:
        await asyncio.sleep(2)
        os.kill(old_pid, signal.SIGKILL)
        # A function never started before: its first container needs the backbone.
        await create(served, "shout", demo_models.adapters["shout"])
        clients.names.append("shout")
        await until(lambda: completes(served, "shout"), "a new function started")
        await asyncio.sleep(2)
    new_pid, new_owner = server_pid(settings)
    assert new_pid != old_pid and new_owner == owner and not alive(old_pid)
    backbone = settings.backbone_specs[0].name
    assert await metric(served, "lorafaas_backbone_restarts_total", backbone=backbone) >= 1
    assert await metric(served, "lorafaas_backbone_up", backbone=backbone) == 1
    tally = await count(settings.database_url, clients.accepted,
                        await strays(docker_client, settings))
    tally.assert_clean()


async def test_a_platform_killed_and_restarted_leaves_nothing_of_the_old_run(
        served: PlatformProcess, demo_models: Any, docker_client: Any) -> None:
    settings = served.settings
    with Clients(served, ["pirate"]) as clients:
        await until(lambda: completes(served, "pirate"), "pirate answers")
        await asyncio.sleep(2)
        old_server, _ = server_pid(settings)
        old_containers = set(labelled(docker_client, settings))
        old_folders = container_folders(settings)
        assert old_containers and old_folders, "the old run has containers to leave"
        assert served.process is not None
        served.process.send_signal(signal.SIGKILL)  # the platform only: nothing cleans up
        served.process.wait()
        await served.start()
    left = [f"backbone server {old_server}"] if alive(old_server) else []
    left += [f"container {c}" for c in old_containers & set(labelled(docker_client, settings))]
    left += [f"folder {f}" for f in old_folders & container_folders(settings)]
    assert server_pid(settings)[0] != old_server
    await create(served, "shout", demo_models.adapters["shout"])
    assert await completes(served, "shout"), "a function cold-started by the new run"
    assert await completes(served, "pirate")
    tally = await count(settings.database_url, clients.accepted,
                        left + await strays(docker_client, settings))
    tally.assert_clean()


async def test_an_action_deleted_during_a_cold_start_leaves_no_container(
        served: PlatformProcess, demo_models: Any, docker_client: Any) -> None:
    settings = served.settings
    await create(served, "brief", demo_models.adapters["pirate"])
    with Clients(served, ["pirate", "brief"]) as clients:

        async def starting() -> bool:
            return bool(labelled(docker_client, settings, "guest/brief"))

        await until(starting, "a container of brief is starting")
        status, answer = await served.call("DELETE", "/actions/brief")
        assert status == 200, answer
        clients.names.remove("brief")
        await asyncio.sleep(2)

    async def removed() -> bool:
        return not labelled(docker_client, settings, "guest/brief")

    await until(removed, "the deleted action's containers removed")
    tally = await count(settings.database_url, clients.accepted,
                        await strays(docker_client, settings))
    tally.assert_clean()


async def dropped_stream(platform: PlatformProcess) -> str:
    """Open a long completion stream of `pirate`, read its first text, and drop it; its
    activation id."""
    user, _, key = (await asyncio.to_thread(_auth, platform)).partition(":")
    headers = {"Authorization": aiohttp.encode_basic_auth(user, key)}
    request = {"model": "pirate", "prompt": "Tell me a long story about a ship",
               "stream": True, "max_tokens": 256, "temperature": 0, "ignore_eos": True}
    async with aiohttp.ClientSession(headers=headers) as client, client.post(
            f"{platform.url}/v1/completions", json=request) as response:
        assert response.status == 200, await response.text()
        await read_one_chunk(response)
        return str(response.headers["x-openwhisk-activation-id"])
    # leaving the block closes the connection mid-stream: the client has gone


async def test_dropped_streams_are_cut_and_the_other_clients_complete(
        served: PlatformProcess, docker_client: Any) -> None:
    settings = served.settings
    with Clients(served, ["pirate"]) as clients:
        await until(lambda: completes(served, "pirate"), "pirate answers")
        dropped = [await dropped_stream(served) for _ in range(3)]
        await asyncio.sleep(2)
    for activation_id in dropped:
        record = await record_of(served, activation_id)
        result = record["response"]["result"]
        assert result["finish_reason"] == "cancelled", result
        assert 1 <= result["usage"]["completion_tokens"] < 256
    tally = await count(settings.database_url, clients.accepted + dropped,
                        await strays(docker_client, settings))
    tally.assert_clean()
