"""Leases on pending invocations: which controller runs an accepted activation.

The controller that writes a pending row holds its lease and renews it while it runs;
a row whose lease ran out (its controller stopped or died) or that has none is claimed by
one UPDATE of the rows a `SELECT ... FOR UPDATE SKIP LOCKED` found claimable, so that of
several controllers claiming at once exactly one gets each row: on PostgreSQL a row
another claim holds is skipped, and one it took is no longer claimable; SQLite, which has
no row locks (the clause is left out there), runs one writing statement at a time.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.registry.models import PendingInvocation

LEASE_MS = 15_000  # a controller silent this long loses its pending activations
RENEW_S = LEASE_MS / 3000  # how often a controller renews its leases and claims others'


def now_ms() -> int:
    """Epoch milliseconds: leases compare controllers' clocks (kept in step by NTP)."""
    return int(time.time() * 1000)


def lease(pending: PendingInvocation, owner: str, at_ms: int | None = None) -> None:
    """Give a pending row being written to its controller."""
    pending.owner = owner
    pending.lease_until_ms = (now_ms() if at_ms is None else at_ms) + LEASE_MS


async def claim(session: AsyncSession, owner: str, *, every: bool = False,
                at_ms: int | None = None, limit: int | None = None) -> list[PendingInvocation]:
    """Take the lease of every pending row that has none or whose lease ran out (`every`:
    of every row, for the only controller there is), the oldest `limit` of them (None: all);
    the rows taken, oldest first."""
    at = now_ms() if at_ms is None else at_ms
    claimable = select(PendingInvocation.activation_id)
    if not every:
        claimable = claimable.where(or_(PendingInvocation.lease_until_ms.is_(None),
                                        PendingInvocation.lease_until_ms < at))
    if limit is not None:
        claimable = claimable.order_by(PendingInvocation.received_ms).limit(limit)
    taken = list(await session.scalars(
        update(PendingInvocation)
        .where(PendingInvocation.activation_id.in_(claimable.with_for_update(skip_locked=True)))
        .values(owner=owner, lease_until_ms=at + LEASE_MS)
        .returning(PendingInvocation.activation_id)
        .execution_options(synchronize_session=False)))
    if not taken:
        return []
    return list(await session.scalars(
        select(PendingInvocation).where(PendingInvocation.activation_id.in_(taken))
        .order_by(PendingInvocation.received_ms)))


async def renew(session: AsyncSession, owner: str, activation_ids: Collection[str],
                at_ms: int | None = None) -> int:
    """Extend the controller's leases of the activations it runs (`activation_ids`): a row
    it holds and no longer runs (its run failed before its record was stored) lapses, so
    that another controller resumes it; how many were extended."""
    if not activation_ids:
        return 0
    at = now_ms() if at_ms is None else at_ms
    result = await session.execute(update(PendingInvocation)
                                   .where(PendingInvocation.owner == owner,
                                          PendingInvocation.activation_id.in_(activation_ids))
                                   .values(lease_until_ms=at + LEASE_MS)
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def release(session: AsyncSession, owner: str,
                  activation_ids: Collection[str] | None = None) -> int:
    """Give up the controller's leases of these activations (None: of all it holds), so
    that the next claim takes them at once; how many were given up."""
    condition = PendingInvocation.owner == owner
    if activation_ids is not None:
        if not activation_ids:
            return 0
        condition = condition & PendingInvocation.activation_id.in_(activation_ids)
    result = await session.execute(update(PendingInvocation).where(condition)
                                   .values(owner=None, lease_until_ms=None)
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
