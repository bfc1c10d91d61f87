"""Alarms (a trigger's periodic feed) and the election of one firing per tick.

Every controller computes the same ticks from an alarm's schedule; `claim_tick` inserts the
row (trigger, tick) and only the controller whose INSERT lands fires that tick: two
controllers on one registry fire each tick once. Old tick rows are pruned.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.registry.clock import now_ms
from lorafaas.registry.db import dialect_insert
from lorafaas.registry.models import Alarm, AlarmTick


async def find_alarm(session: AsyncSession, trigger_id: int) -> Alarm | None:
    """The trigger's alarm, if it has one."""
    return await session.get(Alarm, trigger_id)


async def put_alarm(session: AsyncSession, alarm: Alarm) -> Alarm:
    """Create or replace the trigger's alarm (its past ticks stay claimed)."""
    existing = await find_alarm(session, alarm.trigger_id)
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    session.add(alarm)
    await session.flush()
    return alarm


async def delete_alarm(session: AsyncSession, trigger_id: int) -> None:
    """End the trigger's alarm and forget its ticks."""
    await session.execute(delete(AlarmTick).where(AlarmTick.trigger_id == trigger_id))
    await session.execute(delete(Alarm).where(Alarm.trigger_id == trigger_id))


async def all_alarms(session: AsyncSession) -> list[Alarm]:
    """Every alarm of every namespace."""
    return list(await session.scalars(select(Alarm).order_by(Alarm.trigger_id)))


async def claim_tick(session: AsyncSession, trigger_id: int, tick_ms: int,
                     controller: str) -> bool:
    """Insert the tick's row; True when this call inserted it (this controller fires)."""
    insert = dialect_insert(session)
    statement = (insert(AlarmTick)
                 .values(trigger_id=trigger_id, tick_ms=tick_ms, fired_by=controller,
                         fired_ms=now_ms())
                 .on_conflict_do_nothing(index_elements=["trigger_id", "tick_ms"])
                 .returning(AlarmTick.tick_ms))
    return (await session.execute(statement)).first() is not None


async def prune_ticks(session: AsyncSession, before_ms: int) -> None:
    """Forget the ticks older than `before_ms` (no controller will claim them again)."""
    await session.execute(delete(AlarmTick).where(AlarmTick.tick_ms < before_ms))


async def ticks_of(session: AsyncSession, trigger_id: int) -> list[AlarmTick]:
    """The claimed ticks of an alarm, oldest first."""
    return list(await session.scalars(select(AlarmTick)
                                      .where(AlarmTick.trigger_id == trigger_id)
                                      .order_by(AlarmTick.tick_ms)))
