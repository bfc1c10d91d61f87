"""Draining a queue that a background task fills, for streams on both sides of the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


async def drain(queue: asyncio.Queue[T], producer: asyncio.Future[Any]) -> AsyncIterator[T]:
    """The queue's items as they come, until the producer is done and the queue is empty.

    The caller awaits the producer afterwards, so that its failure is raised there.
    """
    while not (producer.done() and queue.empty()):
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield getter.result()
        else:
            getter.cancel()  # the producer ended; a pending get has taken nothing
