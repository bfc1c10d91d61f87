"""The count every fault test makes of what its clients got: accepted (an activation id was
returned), completed, failed with a message, lost (accepted with no record: must be 0),
doubled (two records for one id: must be 0), and orphans (whatever the test found left
behind: must be 0)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Activation, UsageRecord


@dataclass(frozen=True)
class Tally:
    """What became of the accepted activations, and what the fault left behind."""

    accepted: int
    completed: int
    failed: dict[str, str] = field(default_factory=dict)  # activation id -> its message
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No activation lost or doubled, every failure with a message, nothing orphaned."""
        assert self.accepted > 0, "the clients got no activation accepted"
        assert self.lost == [], f"accepted but never recorded: {self.lost}"
        assert self.doubled == [], f"recorded more than once: {self.doubled}"
        assert all(self.failed.values()), f"failures without a message: {self.failed}"
        assert self.orphans == [], f"left behind: {self.orphans}"
        assert self.completed + len(self.failed) == self.accepted


async def count(database_url: str, accepted: Sequence[str], orphans: Sequence[str] = (),
                deadline_s: float = 900.0) -> Tally:
    """Wait (a generous while: the cores are shared) until every accepted activation has its
    record, then count; `orphans` are what the test found left behind."""
    engine = make_engine(database_url)
    try:
        sessions = make_sessions(engine)
        ids = list(dict.fromkeys(accepted))
        deadline = time.monotonic() + deadline_s
        while True:
            async with sessions() as session:
                rows = list(await session.execute(
                    select(Activation.activation_id, Activation.status_code,
                           Activation.response).where(Activation.activation_id.in_(ids))))
                billed: Counter[str] = Counter({str(i): int(n) for i, n in await session.execute(
                    select(UsageRecord.activation_id, func.count()).where(
                        UsageRecord.activation_id.in_(ids)).group_by(
                        UsageRecord.activation_id))})
            if len({r[0] for r in rows}) == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await engine.dispose()
    recorded = Counter(r[0] for r in rows)
    failed = {r[0]: _message(r[2]) for r in rows if r[1] != 0}
    return Tally(accepted=len(ids), completed=sum(r[1] == 0 for r in rows), failed=failed,
                 lost=[i for i in ids if i not in recorded],
                 doubled=sorted({i for i, n in (recorded + billed).items()
                                 if recorded[i] > 1 or billed[i] > 1}),
                 orphans=list(orphans))


def _message(response: dict[str, object]) -> str:
    result = response.get("result")
    error = result.get("error") if isinstance(result, dict) else None
    return error if isinstance(error, str) else ""
