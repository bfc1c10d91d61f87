"""Alarm ticks on a fake clock: each tick fires once, even with two controllers racing on
one registry (SQLite, then PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

from lorafaas.controller.alarm_feed import CRON_FEED
from lorafaas.controller.alarm_scheduler import AlarmScheduler
from lorafaas.registry import alarms as alarm_rows
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Alarm, Namespace, Trigger

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, on a whole minute


class FakeClock:
    """Milliseconds that move only when the test says."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def _alarm_trigger(sessions: Any, cron: str) -> int:
    async with sessions() as session, session.begin():
        namespace = Namespace(name="guest", created_ms=T0)
        session.add(namespace)
        await session.flush()
        trigger = Trigger(namespace_id=namespace.id, name="tick", version="0.0.1",
                          parameters=[], annotations=[], limits={}, publish=False,
                          updated_ms=T0)
        session.add(trigger)
        await session.flush()
        session.add(Alarm(trigger_id=trigger.id, namespace="guest", subject="guest",
                          feed=CRON_FEED, cron=cron, minutes=None, timezone=None,
                          payload={"n": 1}, start_ms=None, stop_ms=None, created_ms=T0))
        return trigger.id


async def test_two_controllers_fire_each_tick_once(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    try:
        trigger_id = await _alarm_trigger(sessions, "*/2 * * * * *")
        clock = FakeClock(T0)
        fired: list[tuple[str, int]] = []

        def firing(name: str) -> Any:
            async def fire(alarm: Alarm) -> None:
                fired.append((name, clock.now))
            return fire

        one = AlarmScheduler(sessions, firing("one"), clock, controller="one")
        two = AlarmScheduler(sessions, firing("two"), clock, controller="two")
        claimed: list[tuple[int, int]] = []
        for step in range(1, 21):  # 10 seconds in steps of 0.5 s
            clock.now = T0 + step * 500
            results = await asyncio.gather(one.step(), two.step())
            claimed += [pair for result in results for pair in result]
        ticks = [T0 + s * 1000 for s in range(2, 11, 2)]  # 2, 4, 6, 8, 10 s
        assert sorted(tick for _, tick in claimed) == ticks
        assert {pair[0] for pair in claimed} == {trigger_id}
        assert len(fired) == len(ticks)
        async with sessions() as session:
            rows = await alarm_rows.ticks_of(session, trigger_id)
        assert [row.tick_ms for row in rows] == ticks
    finally:
        await engine.dispose()


async def test_a_new_controller_does_not_fire_old_ticks(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    try:
        await _alarm_trigger(sessions, "* * * * * *")
        clock = FakeClock(T0 + 60_000)  # a minute of ticks it never watched
        fired: list[int] = []

        async def fire(alarm: Alarm) -> None:
            fired.append(clock.now)

        scheduler = AlarmScheduler(sessions, fire, clock)
        assert len(await scheduler.step()) == 1  # only the latest, within the grace
        assert await scheduler.step() == []  # the same tick again: already fired
        clock.now += 1000
        assert len(await scheduler.step()) == 1
        assert len(fired) == 2
    finally:
        await engine.dispose()
