"""Artifact profiles: record the loads a start measured, and read the profiles back.

`record_loads` folds each measured load into its row's running estimate with one
`INSERT … ON CONFLICT DO UPDATE`, which SQLite and PostgreSQL both run atomically against
the unique key: two starts of one function recording at once give one row with two samples,
never two rows nor a unique violation that would fail the caller's transaction. The new
estimate is computed by the database from the stored row (not read, changed and written
back), so concurrent writers lose no sample; it is the same exponentially weighted mean as
`lorafaas.invoker.artifact_loads.next_estimate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from lorafaas.invoker.artifact_loads import ARTIFACTS, EWMA_WEIGHT, ArtifactLoad, LoadEstimate
from lorafaas.registry.clock import now_ms
from lorafaas.registry.db import dialect_insert
from lorafaas.registry.models import ArtifactProfile

KEY = ("namespace", "action", "adapter_digest", "artifact", "tier")


def _ewma(stored: ColumnElement[Any] | InstrumentedAttribute[Any],
          sample: ColumnElement[Any]) -> ColumnElement[Any]:
    """The moving mean's step in SQL: stored + WEIGHT·(sample − stored)."""
    return stored + literal(EWMA_WEIGHT) * (sample - stored)


async def record_loads(session: AsyncSession, namespace: str, action: str, digest: str,
                       loads: Sequence[ArtifactLoad], at_ms: int | None = None) -> None:
    """Fold one start's measured loads into the function's profiles (one statement each)."""
    insert = dialect_insert(session)
    updated = now_ms() if at_ms is None else at_ms
    for load in loads:  # in load order: concurrent writers lock rows in the same order
        statement = insert(ArtifactProfile).values(
            namespace=namespace, action=action, adapter_digest=digest, artifact=load.artifact,
            tier=load.tier, load_ms=load.load_ms, memory_bytes=load.memory_bytes, samples=1,
            updated_ms=updated)
        sample = statement.excluded
        await session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_={
            "load_ms": _ewma(ArtifactProfile.load_ms, sample.load_ms),
            "memory_bytes": cast(func.round(_ewma(ArtifactProfile.memory_bytes,
                                                  sample.memory_bytes)), BigInteger),
            "samples": ArtifactProfile.samples + 1,
            "updated_ms": sample.updated_ms}))


async def function_profiles(session: AsyncSession, namespace: str, action: str,
                            digest: str) -> list[ArtifactProfile]:
    """The profiles of one function's code, in load order."""
    rows = await session.scalars(select(ArtifactProfile).where(
        ArtifactProfile.namespace == namespace, ArtifactProfile.action == action,
        ArtifactProfile.adapter_digest == digest))
    return sorted(rows, key=_load_order)


async def all_estimates(session: AsyncSession
                        ) -> list[tuple[str, str, str, str, LoadEstimate]]:
    """Every stored profile as (function path, digest, artifact, tier, estimate)."""
    rows = await session.scalars(select(ArtifactProfile))
    return [(f"{row.namespace}/{row.action}", row.adapter_digest, row.artifact, row.tier,
             LoadEstimate(row.load_ms, row.memory_bytes, row.samples)) for row in rows]


def profile_json(row: ArtifactProfile) -> dict[str, Any]:
    """A profile as the API shows it (`updated` in epoch ms, as OpenWhisk's records)."""
    return {"artifact": row.artifact, "tier": row.tier, "loadMs": round(row.load_ms, 3),
            "memoryBytes": row.memory_bytes, "samples": row.samples, "updated": row.updated_ms}


def _load_order(row: ArtifactProfile) -> tuple[int, str]:
    order = ARTIFACTS.index(row.artifact) if row.artifact in ARTIFACTS else len(ARTIFACTS)
    return order, row.tier
