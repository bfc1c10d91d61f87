"""A NATS server with JetStream for the broker's tests: Debian's `nats-server` on a free
loopback port, its store in a temporary folder, stopped (and the folder removed) after.

The tests that ask for it skip where `nats-server` is not installed (`./deploy/test`
installs it) and fail in CI, where a skipped test would pass unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NATS_SERVER = "nats-server"


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        return s.recv(4).startswith(b"INFO")  # the NATS greeting
    return False


@contextlib.contextmanager
def nats_server(store: Path | None = None) -> Iterator[str]:
    """Run `nats-server -js` on a free loopback port; yield its URL; stop it."""
    binary = shutil.which(NATS_SERVER)
    if binary is None:
        reason = "nats-server is not installed: run ./deploy/test (apt-get install nats-server)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="lorafaas-nats-")) if store is None else store
    port = free_port()
    log = folder / "nats.log"
    process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js",
                                "-sd", str(folder / "js"), "-l", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"nats-server did not start on port {port}: {text[-2000:]}")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if store is None:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    """A NATS server with JetStream for the module's tests: its URL."""
    with nats_server() as url:
        yield url
