"""Prefill profiles: store the fits a profiling run measured, and read a key's fits back.

`store_fits` writes each fit with one `INSERT … ON CONFLICT DO UPDATE` against the unique
key: a profile measured again (the admin command, or two controllers sharing a database)
replaces the stored one instead of adding a row or failing on the unique constraint.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.invoker.prefill_fits import PrefillFit, PrefillKey
from lorafaas.registry.db import dialect_insert
from lorafaas.registry.models import PrefillProfileRecord
from lorafaas.wire.prefill_fit import PrefillModel, PrefillProfile

KEY = ("backbone", "backbone_digest", "image", "machine", "adapter_rank", "prompt_length")


async def store_fits(session: AsyncSession, key: PrefillKey, fits: Sequence[PrefillFit]) -> None:
    """Insert the fits under `key`, replacing any stored for the same rank and prompt length."""
    insert = dialect_insert(session)
    for fit in fits:
        profile = fit.profile
        statement = insert(PrefillProfileRecord).values(
            backbone=key.backbone, backbone_digest=key.backbone_digest, image=key.image,
            machine=key.machine, adapter_rank=fit.rank, prompt_length=profile.prompt_length,
            t0_ms=profile.model.t0_ms, alpha_ms=profile.model.alpha_ms, r2=profile.r2,
            samples=[list(sample) for sample in profile.samples],
            measured_ms=fit.measured_ms)
        new = statement.excluded
        await session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_={
            "t0_ms": new.t0_ms, "alpha_ms": new.alpha_ms, "r2": new.r2,
            "samples": new.samples, "measured_ms": new.measured_ms}))


async def read_fits(session: AsyncSession, key: PrefillKey,
                    rank: int | None = None) -> list[PrefillFit]:
    """The fits stored under `key` (of one rank, if given), by rank and prompt length."""
    query = select(PrefillProfileRecord).where(
        PrefillProfileRecord.backbone == key.backbone,
        PrefillProfileRecord.backbone_digest == key.backbone_digest,
        PrefillProfileRecord.image == key.image, PrefillProfileRecord.machine == key.machine)
    if rank is not None:
        query = query.where(PrefillProfileRecord.adapter_rank == rank)
    rows = await session.scalars(query.order_by(PrefillProfileRecord.adapter_rank,
                                                PrefillProfileRecord.prompt_length))
    return [_fit(row) for row in rows]


def _fit(row: PrefillProfileRecord) -> PrefillFit:
    samples = [(int(b), float(ms)) for b, ms in row.samples]
    profile = PrefillProfile(row.prompt_length, samples, PrefillModel(row.t0_ms, row.alpha_ms),
                             row.r2)
    return PrefillFit(row.adapter_rank, profile, row.measured_ms)
