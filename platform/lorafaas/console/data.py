"""Reading what the console shows: activations of a namespace, and the pool's containers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lorafaas import start_kinds
from lorafaas.controller.appkeys import invoker_key, sessions_key
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
    return request.app[invoker_key].snapshot().containers


def function_state(views: list[dict[str, Any]], path: str) -> tuple[str, int]:
    """What the function's next call would find (warm, preloaded, starting, or cold: no
    container), in the start-kind vocabulary, and its container count."""
    mine = [v for v in views if v["function"] == path]
    states = {str(v["state"]) for v in mine}
    if states & {"warm", "busy"}:
        return start_kinds.WARM, len(mine)
    if "preloaded" in states:
        return start_kinds.PRELOADED, len(mine)
    if start_kinds.STARTING in states:
        return start_kinds.STARTING, len(mine)
    return start_kinds.COLD, len(mine)
