"""Placement, for now: OpenWhisk's home invoker (a stable hash of namespace and action over
the live invokers) and, when it refuses, the next ones in ring order.

The one function the client calls is `placement_order`; a locality-aware policy replaces it
by taking the same arguments (the function and the live invokers' heartbeats, which carry
their capacity and what is loaded on them) and returning the invokers to try, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lorafaas.broker.heartbeats import Heartbeat
from lorafaas.invoking.activations import FunctionRef


def home_index(function: FunctionRef, count: int) -> int:
    """The home invoker's index among `count`: the same on every controller and run."""
    digest = hashlib.sha256(f"{function.name.namespace}/{function.name.relative}".encode())
    return int.from_bytes(digest.digest()[:8], "big") % count


def placement_order(function: FunctionRef, live: Sequence[Heartbeat]) -> list[str]:
    """The invokers to try for the function, its home first (none when none is live)."""
    ids = sorted(h.invoker_id for h in live)
    if not ids:
        return []
    home = home_index(function, len(ids))
    return ids[home:] + ids[:home]
