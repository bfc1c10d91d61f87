"""For admins: the pool's containers, memory per tier, backbone servers, queue lengths."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from aiohttp import web

from lorafaas.console.data import containers
from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import ContainerRow, PlatformPage
from lorafaas.console.render import render_page
from lorafaas.controller.appkeys import (
    backbones_key,
    invocations_key,
    pool_key,
    served_backbones_key,
    settings_key,
)
from lorafaas.errors import Forbidden


def _published_mb(folder: Path) -> float:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


async def platform_page(request: web.Request) -> web.Response:
    """The platform's state; only for the admin namespaces."""
    settings = request.app[settings_key]
    if request[console_identity_key].namespace not in settings.admin_namespaces:
        raise Forbidden("This page is for the platform's administrators.")
    views = containers(request)
    rows = [ContainerRow(str(v["container"]), str(v["function"] or "—"), str(v["state"]),
                         int(v.get("memoryMB") or 0), float(v.get("idleSeconds") or 0))
            for v in views]
    pool = request.app[pool_key]
    limit_mb = getattr(pool.config, "memory_mb", None)
    shm = shutil.disk_usage("/dev/shm")
    tiers = [("function containers (limits, MB)", float(sum(r.memory_mb for r in rows))),
             ("pool size (MB)", float(limit_mb) if limit_mb else 0.0),
             ("backbones published in tmpfs, each once (MB)", _published_mb(settings.shm_dir)),
             ("tmpfs free (MB)", round(shm.free / 2**20, 1))]
    served = request.app[served_backbones_key]
    backbones = [{"name": b.name, "folder": str(b.model_dir),
                  "socket": str(served[b.name].endpoint.socket_path) if b.name in served else "",
                  "published": str(served[b.name].endpoint.publish_dir)
                  if b.name in served else "", "dtype": b.published.dtype,
                  "published_mb": round(b.published.bytes / 2**20, 1), "default": b.default}
                 for b in request.app[backbones_key].all()]
    in_flight = len(request.app[invocations_key].tasks)
    by_state = Counter(r.state for r in rows)
    queues = [("activations in flight", in_flight),
              *((f"containers {state}", count) for state, count in sorted(by_state.items()))]
    return await render_page(request, PlatformPage(rows, tiers, backbones, queues))
