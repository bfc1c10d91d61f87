"""Reading what the console shows: activations of a namespace, and the pool's containers."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from lorafaas import start_kinds
from lorafaas.billing.ledger import ACTIVATION
from lorafaas.console.timeline import Charge
from lorafaas.controller.appkeys import invoker_key, sessions_key
from lorafaas.registry.activations import list_activations
from lorafaas.registry.models import Activation, UsageRecord
from lorafaas.registry.namespaces import Identity

MAX_ROWS = 10_000


async def activations_since(request: web.Request, identity: Identity, since_ms: int,
                            name: str | None = None, limit: int = MAX_ROWS) -> list[Activation]:
    """The namespace's activations started since a time, newest first."""
    async with request.app[sessions_key]() as session:
        return await list_activations(session, identity.namespace, name, limit, 0,
                                      since=since_ms)


async def charges_since(request: web.Request, identity: Identity, name: str,
                        since_ms: int) -> list[Charge]:
    """The function's billed activations in the ledger since a time, oldest first."""
    statement = (select(UsageRecord.start_ms, UsageRecord.cost_total)
                 .where(UsageRecord.kind == ACTIVATION,
                        UsageRecord.namespace == identity.namespace,
                        UsageRecord.action == name, UsageRecord.start_ms >= since_ms)
                 .order_by(UsageRecord.start_ms))
    async with request.app[sessions_key]() as session:
        return [Charge(int(start), float(cost))
                for start, cost in await session.execute(statement)]


def containers(request: web.Request) -> list[dict[str, Any]]:
    """Every pooled container: name, function, state, memory, idle time."""
    return request.app[invoker_key].snapshot().containers


def function_state(views: list[dict[str, Any]], path: str) -> tuple[str, int]:
    """What the function's next call would find (warm, preloaded, starting, or cold: no
    container), in the start-kind vocabulary, and its container count (a namespace
    container holding its adapter among them)."""
    mine = [v for v in views if v["function"] == path or path in v.get("functions", ())]
    states = {str(v["state"]) for v in mine}
    if states & {"warm", "busy"}:
        return start_kinds.WARM, len(mine)
    if "preloaded" in states:
        return start_kinds.PRELOADED, len(mine)
    if start_kinds.STARTING in states:
        return start_kinds.STARTING, len(mine)
    return start_kinds.COLD, len(mine)
