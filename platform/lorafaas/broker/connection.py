"""One NATS connection per process, opened at start and closed (drained) at exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats
import nats.errors
from nats.aio.client import Client

logger = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 15.0


class BrokerUnreachable(Exception):
    """The broker did not answer at start."""


@contextlib.asynccontextmanager
async def connected(url: str, name: str) -> AsyncIterator[Client]:
    """A connection to the broker at `url`, reconnecting after a drop until exit."""
    async def on_error(error: Exception) -> None:
        logger.warning("%s: broker connection: %s", name, error)

    try:
        # Reconnects for ever (a broker restart must not stop the process), so the first
        # connection is bounded here.
        nc = await asyncio.wait_for(nats.connect(
            url, name=name, connect_timeout=5, allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, error_cb=on_error), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise BrokerUnreachable(f"the broker at {url} does not answer: {error}") from error
    logger.info("%s connected to the broker at %s", name, url)
    try:
        yield nc
    finally:
        with contextlib.suppress(nats.errors.Error):
            await nc.drain()
