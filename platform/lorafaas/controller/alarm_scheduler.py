"""The controller's alarm loop: each period, every alarm whose tick came due is claimed in
the registry and, by the one controller whose claim landed, fired.

A controller watches an alarm from when it first sees it (less a short grace, so a tick
that fell in a pause is still fired, once); ticks it never watched are not fired late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.background import running_in_background
from lorafaas.controller.alarm_feed import latest_tick
from lorafaas.controller.trigger_service import alarm_spec
from lorafaas.registry import alarms as alarm_rows
from lorafaas.registry.models import Alarm

logger = logging.getLogger(__name__)
PERIOD_S = 0.5  # a cron tick has one-second resolution
GRACE_MS = 5_000
KEEP_TICKS_MS = 3_600_000
PRUNE_EVERY_MS = 60_000
Fire = Callable[[Alarm], Awaitable[object]]
Clock = Callable[[], int]


def wall_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)


class AlarmScheduler:
    """Fires the alarms' ticks that this controller wins; `step` is one pass."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], fire: Fire,
                 clock: Clock = wall_ms, controller: str | None = None) -> None:
        self.sessions = sessions
        self.fire = fire
        self.clock = clock
        self.controller = controller or uuid.uuid4().hex
        self.watched: dict[int, int] = {}  # trigger id -> the time it was last looked at
        self.pruned_ms = 0

    async def step(self) -> list[tuple[int, int]]:
        """One pass: claim and fire every due tick; the (trigger id, tick) pairs fired."""
        now = self.clock()
        async with self.sessions() as session:
            alarms = await alarm_rows.all_alarms(session)
        self.watched = {a.trigger_id: self.watched.get(a.trigger_id,
                                                       max(a.created_ms, now - GRACE_MS))
                        for a in alarms}
        fired = []
        for alarm in alarms:
            tick = latest_tick(alarm_spec(alarm), now)
            since, self.watched[alarm.trigger_id] = self.watched[alarm.trigger_id], now
            if tick is None or tick <= since or not await self._claim(alarm, tick):
                continue
            fired.append((alarm.trigger_id, tick))
            await self._fire(alarm, tick)
        await self._prune(now)
        return fired

    async def _claim(self, alarm: Alarm, tick: int) -> bool:
        async with self.sessions() as session, session.begin():
            return await alarm_rows.claim_tick(session, alarm.trigger_id, tick, self.controller)

    async def _fire(self, alarm: Alarm, tick: int) -> None:
        try:
            await self.fire(alarm)
        except Exception:  # one alarm's failure must not stop the others' ticks
            logger.exception("alarm of trigger %d: tick %d claimed by %s failed to fire",
                             alarm.trigger_id, tick, self.controller)

    async def _prune(self, now: int) -> None:
        if now - self.pruned_ms < PRUNE_EVERY_MS:
            return
        self.pruned_ms = now
        async with self.sessions() as session, session.begin():
            await alarm_rows.prune_ticks(session, now - KEEP_TICKS_MS)

    async def run(self, period_s: float = PERIOD_S) -> None:
        """Step every period until cancelled; a failed pass is logged and the next runs."""
        while True:
            try:
                await self.step()
            except Exception:
                logger.exception("alarm pass of controller %s failed", self.controller)
            await asyncio.sleep(period_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The loop as a background task, cancelled on exit."""
        async with running_in_background(self.run()):
            yield
