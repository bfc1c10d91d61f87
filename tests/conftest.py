"""Shared fixtures: the demo models, the runtime image, settings, and a running platform.

The demo models and the wheelhouse live in `$LORAFAAS_HOME` (default ~/.lorafaas), built
once by `./deploy/test`; everything else a test writes (registry, artifacts, sockets,
published backbone) is in its own temporary folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from lorafaas.settings import Settings, load_settings, replace

# The registry databases (SQLite, and PostgreSQL where set up): `database_url`; a NATS
# server with JetStream for the broker's tests: `nats_url`.
pytest_plugins = ["tests.db_fixtures", "tests.nats_fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_home() -> Path:
    """The state folder holding demo models and the wheelhouse across runs."""
    return Path(os.environ.get("LORAFAAS_HOME", "~/.lorafaas")).expanduser()


@pytest.fixture(scope="session")
def demo_models(shared_home: Path):  # type: ignore[no-untyped-def]
    """The demo backbone and adapters (built on first use)."""
    from lorafaas.demo import build_demo_models

    return build_demo_models(shared_home / "models")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A client of the real Docker engine; tests needing it fail when none answers."""
    import docker

    client = docker.from_env(timeout=300)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def runtime_image(docker_client: object, shared_home: Path) -> str:
    """The runtime image tag (built on first use)."""
    from lorafaas.images.runtime_image import ensure_runtime_image

    return ensure_runtime_image(docker_client, home=shared_home,  # type: ignore[arg-type]
                                repo_root=REPO_ROOT)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="lf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(tmp_path: Path, short_dir: Path, demo_models, runtime_image: str,  # type: ignore[no-untyped-def]
             empty_database_url: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings of a platform with its own registry (SQLite, then PostgreSQL), artifacts,
    sockets and tmpfs folder; a test marked `unshared` gets functions' own containers
    only (LORAFAAS_SHARED_CONTAINERS=off)."""
    shm_dir = Path("/dev/shm") / f"lorafaas-test-{uuid.uuid4().hex[:8]}"
    base = load_settings({"LORAFAAS_HOME": str(tmp_path / "home")})
    yield replace(base, run_dir=short_dir, shm_dir=shm_dir, runtime_image=runtime_image,
                  backbone_dir=demo_models.backbone_dir, models_dir=demo_models.backbone_dir.parent,
                  invoker_id=f"test{uuid.uuid4().hex[:8]}", port=0,
                  # No stem cells unless a test asks: start kinds stay predictable.
                  prewarm_min=0, prewarm_max=0,
                  # Containers go when their keep-alive ends, unless a test asks otherwise.
                  preload_spare_share=0.0,
                  # No profiling container competing for the cores unless a test asks.
                  prefill_profiling="off",
                  database_url=empty_database_url,
                  shared_containers="off" if request.node.get_closest_marker("unshared")
                  else base.shared_containers)
    shutil.rmtree(shm_dir, ignore_errors=True)


@pytest.fixture
async def platform(settings: Settings, aiohttp_client):  # type: ignore[no-untyped-def]
    """A running platform (real registry, backbone server and Docker) and the guest's key."""
    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.registry.db import upgrade

    upgrade(settings.database_url)
    credential = await ensure_guest(settings)
    client = await aiohttp_client(PlatformTestServer(create_app(settings)))
    return PlatformClient(client, credential, settings)


class PlatformTestServer(TestServer):
    """aiohttp's TestServer serving through the platform's runner (parse errors in JSON)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        from lorafaas.controller.serving import PlatformRunner

        return PlatformRunner(self.app, **kwargs)


class PlatformClient:
    """A test client that sends the guest's Basic auth on every request."""

    def __init__(self, client, credential: str, settings: Settings) -> None:  # type: ignore[no-untyped-def]
        import aiohttp

        self.client = client
        self.credential = credential
        self.settings = settings
        self.headers = {"Authorization": aiohttp.encode_basic_auth(*credential.split(":", 1))}

    @property
    def app(self):  # type: ignore[no-untyped-def]
        """The aiohttp application under test."""
        return self.client.app

    async def request(self, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        """Send a request with the guest's credentials."""
        import io
        import json

        headers = {**self.headers, **kwargs.pop("headers", {})}
        if "json" in kwargs:  # a stream: aiohttp warns about large in-memory bodies
            kwargs["data"] = io.BytesIO(json.dumps(kwargs.pop("json")).encode())
            headers["Content-Type"] = "application/json"
        kwargs["headers"] = headers
        return await self.client.request(method, path, **kwargs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests where no CUDA device exists."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def make_zip():  # type: ignore[no-untyped-def]
    """Zip a folder (or a mapping of names to bytes) into bytes."""
    import io
    import zipfile

    def make(source: Path | dict[str, bytes], prefix: str = "") -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            items = source.items() if isinstance(source, dict) else \
                ((p.name, p.read_bytes()) for p in sorted(source.iterdir()) if p.is_file())
            for name, data in items:
                archive.writestr(prefix + name, data)
        return buffer.getvalue()

    return make


