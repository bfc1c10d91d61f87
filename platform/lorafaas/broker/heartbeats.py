"""Invoker heartbeats in the broker's key-value bucket: each invoker puts its capacity and
what is loaded on it every `HEARTBEAT_S`; a watcher holds the latest of each, and an invoker
not heard from for `HEARTBEAT_TTL_S` is out (the bucket's TTL drops its entry too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from lorafaas.background import running_in_background
from lorafaas.broker.codec import decode_snapshot, dumps, encode_snapshot, loads
from lorafaas.broker.topology import HEARTBEAT_S, HEARTBEAT_TTL_S
from lorafaas.invoking.client import InvokerSnapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heartbeat:
    """One invoker's report: how busy it is and what it holds."""

    invoker_id: str
    at: float  # epoch seconds when it was sent; once taken, when it came (local clock)
    inflight: int  # activations it runs or queues now
    max_inflight: int  # beyond which it refuses new ones
    snapshot: InvokerSnapshot

    def encode(self) -> bytes:
        """The bucket value."""
        return dumps({"invoker": self.invoker_id, "at": self.at, "inflight": self.inflight,
                      "maxInflight": self.max_inflight,
                      "snapshot": encode_snapshot(self.snapshot)})

    @classmethod
    def decode(cls, body: bytes) -> Heartbeat:
        """A bucket value read back."""
        value = loads(body)
        return cls(value["invoker"], float(value["at"]), int(value["inflight"]),
                   int(value["maxInflight"]), decode_snapshot(value["snapshot"]))


@contextlib.asynccontextmanager
async def beating(kv: KeyValue, report: Callable[[], Heartbeat]) -> AsyncIterator[None]:
    """Put the invoker's heartbeat every period until exit; then delete it, so that
    placement drops this invoker at once rather than after the TTL."""
    key = report().invoker_id

    async def beat() -> None:
        while True:
            try:
                await kv.put(key, report().encode())
            except nats.errors.Error:
                logger.warning("heartbeat of invoker %s not written", key, exc_info=True)
            await asyncio.sleep(HEARTBEAT_S)

    try:
        async with running_in_background(beat()):
            yield
    finally:
        with contextlib.suppress(nats.errors.Error):
            await kv.delete(key)


class Follower(Protocol):
    """What follows the heartbeats besides `LiveInvokers` (the controller's placement)."""

    def seen(self, heartbeat: Heartbeat) -> None:
        """An invoker's heartbeat came."""
        ...

    def gone(self, invoker_id: str) -> None:
        """An invoker deleted its heartbeat."""
        ...


class LiveInvokers:
    """The latest heartbeat of each invoker, read from the bucket as they come."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 follower: Follower | None = None) -> None:
        self.clock = clock
        self.follower = follower  # told of each heartbeat and departure (placement)
        self.heartbeats: dict[str, Heartbeat] = {}
        self.changed = asyncio.Event()  # set at each heartbeat (tests wait on it)

    def seen(self, heartbeat: Heartbeat) -> None:
        """Take a heartbeat, stamped with the local time it came: liveness and placement
        compare it with this clock, never with the sender's (clocks drift apart)."""
        heartbeat = replace(heartbeat, at=self.clock())
        self.heartbeats[heartbeat.invoker_id] = heartbeat
        if self.follower is not None:
            self.follower.seen(heartbeat)
        self.changed.set()

    def gone(self, invoker_id: str) -> None:
        """The invoker deleted its heartbeat (it stopped)."""
        self.heartbeats.pop(invoker_id, None)
        if self.follower is not None:
            self.follower.gone(invoker_id)

    def live(self) -> list[Heartbeat]:
        """The invokers heard from within the TTL, by id."""
        now = self.clock()
        return sorted((h for h in self.heartbeats.values() if now - h.at < HEARTBEAT_TTL_S),
                      key=lambda h: h.invoker_id)

    def live_ids(self) -> list[str]:
        """The ids of the live invokers, sorted."""
        return [h.invoker_id for h in self.live()]

    @contextlib.asynccontextmanager
    async def watching(self, kv: KeyValue) -> AsyncIterator[LiveInvokers]:
        """Follow the bucket until exit."""
        watcher = await kv.watchall()
        try:
            async with running_in_background(self._follow(watcher)):
                yield self
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        # Iterated, not polled with `updates(timeout)`: its wait_for would not cancel. The
        # iteration ends at the end of the entries there were when the watch began: resume.
        while True:
            async for entry in watcher:
                self._take(entry)

    def _take(self, entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self.gone(entry.key)
            return
        try:
            self.seen(Heartbeat.decode(entry.value))
        except (ValueError, KeyError, TypeError):
            logger.warning("heartbeat %s unreadable", entry.key, exc_info=True)
