"""For admins: the pool's containers and the backbone servers with their RSS and PSS, stem
cells and pre-loaded containers, memory per tier, queue lengths, recent evictions."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from lorafaas.console.data import containers
from lorafaas.console.keys import console_identity_key
from lorafaas.console.memory import Footprint, footprints
from lorafaas.console.pages import ContainerRow, EvictionRow, PlatformPage
from lorafaas.console.render import render_page
from lorafaas.console.stats import when
from lorafaas.controller.appkeys import (
    backbones_key,
    invocations_key,
    invoker_key,
    served_backbones_key,
    settings_key,
)
from lorafaas.errors import Forbidden
from lorafaas.invoking.client import Eviction

# The pool's states as the page names them, in the order shown.
POOL_STATES = {"prewarmed": "stem cells", "preloaded": "pre-loaded containers",
               "warm": "warm containers", "busy": "busy containers",
               "starting": "starting containers"}


def _published_mb(folder: Path) -> float:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def _serves(view: dict[str, Any]) -> str:
    """What a container serves: its function, or a namespace container's loaded ones."""
    function = str(view["function"] or "—")
    held = view.get("functions") or []
    return f"{function}: {', '.join(held)}" if held else function


async def platform_page(request: web.Request) -> web.Response:
    """The platform's state; only for the admin namespaces."""
    settings = request.app[settings_key]
    if request[console_identity_key].namespace not in settings.admin_namespaces:
        raise Forbidden("This page is for the platform's administrators.")
    views = containers(request)
    served = request.app[served_backbones_key]
    backbone_pids = {name: b.pid for name, b in served.items() if b.pid}
    measured = await asyncio.to_thread(
        footprints, [int(v.get("pid") or 0) for v in views] + list(backbone_pids.values()))
    rows = [ContainerRow(str(v["container"]), _serves(v), str(v["state"]),
                         int(v.get("memoryMB") or 0), float(v.get("idleSeconds") or 0),
                         *_mb(measured.get(int(v.get("pid") or 0))))
            for v in views]
    snapshot = request.app[invoker_key].snapshot()
    limit_mb = snapshot.pool_memory_mb
    shm = shutil.disk_usage("/dev/shm")
    tiers = [("function containers (limits, MB)", float(sum(r.memory_mb for r in rows))),
             ("pool size (MB)", float(limit_mb) if limit_mb else 0.0),
             ("backbones published in tmpfs, each once (MB)", _published_mb(settings.shm_dir)),
             ("tmpfs free (MB)", round(shm.free / 2**20, 1))]
    backbones = [{"name": b.name, "folder": str(b.model_dir),
                  "socket": str(served[b.name].endpoint.socket_path) if b.name in served else "",
                  "published": str(served[b.name].endpoint.publish_dir)
                  if b.name in served else "", "dtype": b.published.dtype,
                  "published_mb": round(b.published.bytes / 2**20, 1), "default": b.default,
                  **dict(zip(("rss_mb", "pss_mb"),
                             _mb(measured.get(backbone_pids.get(b.name, 0))), strict=True))}
                 for b in request.app[backbones_key].all()]
    in_flight = len(request.app[invocations_key].tasks)
    by_state = Counter(r.state for r in rows)
    queues = [("activations in flight", in_flight),
              *((f"containers {state}", count) for state, count in sorted(by_state.items()))]
    pool_counts = [(label, by_state.get(state, 0)) for state, label in POOL_STATES.items()]
    return await render_page(request, PlatformPage(
        rows, tiers, backbones, queues, pool_counts, totals(rows, backbones),
        eviction_rows(snapshot.evictions), when(int(time.time() * 1000))))


def eviction_rows(evictions: Sequence[Eviction]) -> list[EvictionRow]:
    """The pool's recent evictions as the page lists them."""
    return [EvictionRow(when(int(e.at * 1000)), e.container, e.function or "stem cell",
                        e.state, e.memory_mb, e.idle_s, e.uses, e.reason) for e in evictions]


def _mb(footprint: Footprint | None) -> tuple[float | None, float | None]:
    return (footprint.rss_mb, footprint.pss_mb) if footprint else (None, None)


def totals(rows: list[ContainerRow], backbones: Sequence[Mapping[str, object]]
           ) -> list[tuple[str, float]]:
    """Summed RSS and PSS of the containers and of the backbone servers, and of all."""
    def total(values: list[object]) -> float:
        return round(sum(float(v) for v in values if isinstance(v, int | float)), 1)

    containers_rss = total([r.rss_mb for r in rows])
    containers_pss = total([r.pss_mb for r in rows])
    backbones_rss = total([b.get("rss_mb") for b in backbones])
    backbones_pss = total([b.get("pss_mb") for b in backbones])
    return [("containers, RSS (MB)", containers_rss), ("containers, PSS (MB)", containers_pss),
            ("backbone servers, RSS (MB)", backbones_rss),
            ("backbone servers, PSS (MB)", backbones_pss),
            ("all, RSS (MB): shared pages counted in each", round(containers_rss
                                                                 + backbones_rss, 1)),
            ("all, PSS (MB): what the host spends", round(containers_pss + backbones_pss, 1))]
