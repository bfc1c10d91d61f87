"""Real backbone servers: one never deletes what another server owns (a socket bound again
on its path, a published folder another server claimed), and one whose parent is killed
(`kill -9`) stops on its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.wire.attach import exchange


@pytest.fixture
def publish_dir() -> Iterator[Path]:
    """A published folder on tmpfs of the test's own."""
    folder = Path("/dev/shm") / f"lorafaas-own-{uuid.uuid4().hex[:8]}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def server(demo_models: Any, socket_path: Path, publish_dir: Path,
           owner: str) -> BackboneServerProcess:
    """A backbone server of the demo backbone, started with `owner`."""
    return BackboneServerProcess(BackboneEndpoint("demo", socket_path, publish_dir),
                                 demo_models.backbone_dir, owner=owner)


async def test_a_server_stopping_leaves_what_a_later_server_owns(
        demo_models: Any, short_dir: Path, publish_dir: Path) -> None:
    socket_path = short_dir / "bb" / "attach.sock"
    old = server(demo_models, socket_path, publish_dir, "old-run")
    await old.start()
    new = server(demo_models, socket_path, publish_dir, "new-run")
    try:
        await new.start()  # binds the path again and reuses the published folder
        await old.stop()
        assert socket_path.exists() and (publish_dir / "model.safetensors").exists()
        answer = await exchange(socket_path, {"op": "describe"})
        assert answer["ok"] and answer["backbone"]["bytes"] > 0  # the new server answers
    finally:
        await old.stop()
        await new.stop()
    assert not socket_path.exists() and not publish_dir.exists()  # the owner's to remove


LAUNCHER = """
import subprocess, sys
server = subprocess.Popen(sys.argv[1:])
print(server.pid, flush=True)
server.wait()
"""


def alive(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie has)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] \
            not in ("Z", "X")
    except OSError:
        return False


def test_a_server_whose_platform_is_killed_stops_on_its_own(
        demo_models: Any, short_dir: Path, publish_dir: Path) -> None:
    socket_path = short_dir / "bb" / "attach.sock"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "lorafaas.backbone.server",
         "--model-dir", str(demo_models.backbone_dir), "--publish-dir", str(publish_dir),
         "--socket", str(socket_path), "--owner", "killed-run"],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert launcher.stdout is not None
    pid = int(launcher.stdout.readline())
    try:
        deadline = time.monotonic() + 300
        while not socket_path.exists():  # ready: it serves its socket
            assert time.monotonic() < deadline and alive(pid), "the server did not start"
            time.sleep(0.2)
        launcher.send_signal(signal.SIGKILL)  # the platform, killed: no cleanup runs
        launcher.wait()
        deadline = time.monotonic() + 120  # generous: the cores are shared
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pid), "the server outlived its platform"
        assert not socket_path.exists() and not publish_dir.exists()  # it cleaned up its own
    finally:
        launcher.stdout.close()
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
