"""Reading what the console shows: activations of a namespace, and the pool's containers."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from lorafaas.controller.appkeys import pool_key, sessions_key
from lorafaas.registry.activations import list_activations
from lorafaas.registry.models import Activation
from lorafaas.registry.namespaces import Identity

MAX_ROWS = 10_000


async def activations_since(request: web.Request, identity: Identity, since_ms: int,
                            name: str | None = None, limit: int = MAX_ROWS) -> list[Activation]:
    """The namespace's activations started since a time, newest first."""
    async with request.app[sessions_key]() as session:
        return await list_activations(session, identity.namespace, name, limit, 0,
                                      since=since_ms)


def containers(request: web.Request) -> list[dict[str, Any]]:
    """Every pooled container: name, function, state, memory, idle time."""
    return [_describe(c) for c in request.app[pool_key].containers()]


def _describe(container: Any) -> dict[str, Any]:
    if hasattr(container, "describe"):
        view = dict(container.describe())
    else:  # the pool before container states: busy or warm
        view = {"container": container.info.name,
                "state": "busy" if container.busy else "warm",
                "idleSeconds": round(time.monotonic() - container.last_used, 1),
                "memoryMB": 0}
    key = getattr(container, "function_key", None) or ""
    view["function"] = getattr(container, "function_path", None) or key.split("@")[0]
    return view


def function_state(views: list[dict[str, Any]], path: str) -> tuple[str, int]:
    """A function's instance state (warm, pre-loaded or cold) and its container count."""
    mine = [v for v in views if v["function"] == path]
    states = {str(v["state"]) for v in mine}
    if states & {"warm", "busy"}:
        return "warm", len(mine)
    if "preloaded" in states:
        return "pre-loaded", len(mine)
    return "cold", len(mine)
