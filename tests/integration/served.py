"""A platform served on a real loopback port from a thread of its own, for a whole module.

Clients that block (the `openai` package's sync client, LangChain, LiteLLM) cannot share
the test's event loop with the server, and one platform per module saves every test its
own start (backbone server, cold containers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from lorafaas.settings import Settings, load_settings, replace


def module_settings(home: Path, run_dir: Path, shm_dir: Path, demo_models: Any,
                    runtime_image: str) -> Settings:
    """Settings as the `settings` fixture makes them, on a SQLite registry in `home`."""
    base = load_settings({"LORAFAAS_HOME": str(home)})
    return replace(base, run_dir=run_dir, shm_dir=shm_dir, runtime_image=runtime_image,
                   backbone_dir=demo_models.backbone_dir,
                   models_dir=demo_models.backbone_dir.parent,
                   invoker_id=f"test{run_dir.name[-8:]}", port=0, prewarm_min=0,
                   prewarm_max=0, preload_spare_share=0.0, prefill_profiling="off",
                   database_url=f"sqlite:///{home / 'registry.db'}")


class ServedPlatform:
    """The platform's app on 127.0.0.1, its event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="served-platform",
                                       daemon=True)
        self.runner: web.AppRunner | None = None
        self.credential = ""
        self.url = ""

    def start(self) -> None:
        """Migrate, create the guest, and serve; returns once the port is open."""
        from lorafaas.registry.db import upgrade

        upgrade(self.settings.database_url)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=600)

    async def _start(self) -> None:
        from lorafaas.controller.app import create_app
        from lorafaas.controller.bootstrap import ensure_guest

        self.credential = await ensure_guest(self.settings)
        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop serving (the platform's containers go with it) and end the thread."""
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=300)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        self.loop.close()

    def request(self, method: str, path: str, body: Any = None,
                credential: str | None = None) -> tuple[int, Any]:
        """A JSON request with the guest's Basic auth; (status, decoded body)."""
        token = base64.b64encode((credential or self.credential).encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())


@contextlib.contextmanager
def served_platform(home: Path, demo_models: Any, runtime_image: str,
                    **changes: Any) -> Iterator[ServedPlatform]:
    """A started platform with its own run and shared-memory folders, removed after;
    `changes` replace settings."""
    run_dir = Path(tempfile.mkdtemp(prefix="lf-", dir="/tmp"))
    shm_dir = Path("/dev/shm") / f"lorafaas-test-{uuid.uuid4().hex[:8]}"
    platform = ServedPlatform(replace(module_settings(home, run_dir, shm_dir, demo_models,
                                                      runtime_image), **changes))
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(shm_dir, ignore_errors=True)
