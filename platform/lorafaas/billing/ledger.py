"""Usage records: meter each finished activation, and sample idle containers as overhead.

An activation's row is written in the same transaction as its activation record. What no
function is billed for is recorded as platform overhead: the time containers spend
initializing for a request (`init`) and the time they sit idle, warm after a request,
pre-loaded with a function, or pre-warmed as a stem cell (`idle_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.background import running_in_background
from lorafaas.billing.metering import (
    Cost,
    Usage,
    activation_usage,
    code_action_usage,
    cost_annotation,
    cost_of,
)
from lorafaas.billing.prices import PriceSheet
from lorafaas.invoking.activations import ActivationRequest, ActivationResult
from lorafaas.registry.models import UsageRecord

logger = logging.getLogger(__name__)

ACTIVATION = "activation"
INIT = "init"
IDLE_KINDS = {"warm": "idle_warm", "preloaded": "idle_preloaded", "prewarmed": "idle_prewarm"}
PLATFORM_NAMESPACE = "(platform)"  # overhead of stem cells, which belong to no function


@dataclass(frozen=True)
class MeteredActivation:
    """An activation's `cost` annotation and the usage rows to store with its record."""

    annotation: dict[str, Any]
    rows: list[UsageRecord]


def usage_row(kind: str, namespace: str, action: str | None, start_ms: int, end_ms: int,
              memory_mb: int, usage: Usage, cost: Cost, prices: PriceSheet,
              **extra: Any) -> UsageRecord:
    """One usage row."""
    return UsageRecord(kind=kind, namespace=namespace, action=action, start_ms=start_ms,
                       end_ms=end_ms, memory_mb=memory_mb, prompt_tokens=usage.prompt_tokens,
                       completion_tokens=usage.completion_tokens,
                       accelerator_s=usage.accelerator_s, gb_s=usage.gb_s,
                       accelerator_kind=prices.accelerator_kind,
                       cost_accelerator=cost.accelerator, cost_memory=cost.memory,
                       cost_prompt=cost.prompt, cost_completion=cost.completion,
                       cost_total=cost.total, **extra)


def meter_activation(request: ActivationRequest, result: ActivationResult,
                     prices: PriceSheet) -> MeteredActivation:
    """Meter a finished activation: its container's CPU time as the host read it, or the
    runtime's timings (alone, or its share of a batch) where the host could not."""
    memory_mb = int(request.function.memory_mb)
    answer = result.response.get("result")
    usage = code_action_usage(result.timings, memory_mb) if request.function.is_code else \
        activation_usage(result.timings, memory_mb, answer if isinstance(answer, dict) else {},
                         prices.cpus_per_accelerator)
    cost = cost_of(usage, prices)
    annotations = {a["key"]: a["value"] for a in result.annotations}
    start_kind = annotations.get("startKind")
    action = request.function.name.relative  # `pkg/action` in a package
    rows = [usage_row(ACTIVATION, request.namespace, action, result.start_ms,
                      result.end_ms, memory_mb, usage, cost, prices,
                      activation_id=request.activation_id, start_kind=start_kind,
                      status_code=result.status_code)]
    init_ms = annotations.get("initTime")
    # A batch's requests all waited for its container's start; one of them accounts for it.
    if isinstance(init_ms, (int, float)) and init_ms > 0 and result.reports_start:
        rows.append(_overhead(INIT, request.namespace, action, result.start_ms,
                              result.start_ms + int(init_ms), memory_mb, init_ms / 1000,
                              prices, start_kind=start_kind))
    return MeteredActivation(cost_annotation(usage, cost, prices), rows)


def _overhead(kind: str, namespace: str, action: str | None, start_ms: int, end_ms: int,
              memory_mb: int, seconds: float, prices: PriceSheet,
              start_kind: str | None = None) -> UsageRecord:
    usage = Usage(0.0, memory_mb / 1024 * seconds, 0, 0)
    return usage_row(kind, namespace, action, start_ms, end_ms, memory_mb, usage,
                     cost_of(usage, prices), prices, start_kind=start_kind)


def idle_kind(container: Any) -> str | None:
    """The overhead kind of a container's state, None while it works for an activation."""
    state = getattr(container, "state", None)
    if state is not None:
        return IDLE_KINDS.get(str(getattr(state, "value", state)))
    return None if getattr(container, "busy", True) else "idle_warm"


@dataclass
class _IdleSpan:
    kind: str
    path: str | None
    memory_mb: int
    start_ms: int
    end_ms: int
    seconds: float = 0.0


class IdleMeter:
    """Samples the pool's containers and records their idle time as overhead rows."""

    def __init__(self, containers: Callable[[], Sequence[Any]],
                 sessions: async_sessionmaker[AsyncSession], prices: PriceSheet,
                 interval_s: float = 1.0, flush_every_s: float = 60.0) -> None:
        self.containers = containers
        self.sessions = sessions
        self.prices = prices
        self.interval_s = interval_s
        self.flush_every_s = flush_every_s
        self._spans: dict[tuple[str, str], _IdleSpan] = {}
        self._last: float | None = None

    def sample(self, now: float | None = None) -> None:
        """Add the time since the previous sample to every container idle now."""
        now = time.time() if now is None else now
        elapsed = 0.0 if self._last is None else now - self._last
        self._last = now
        for container in self.containers():
            kind = idle_kind(container)
            if kind is None:
                continue
            key = (str(container.info.id), kind)
            span = self._spans.get(key)
            if span is None:
                span = self._spans[key] = _IdleSpan(
                    kind, getattr(container, "function_path", None),
                    int(getattr(container, "memory_mb", 0)), int(now * 1000), int(now * 1000))
                continue  # its idle time counts from this sample on
            span.seconds += elapsed
            span.end_ms = int(now * 1000)

    def take_rows(self) -> list[UsageRecord]:
        """Rows of the idle time sampled since the last call."""
        rows = []
        for key, span in list(self._spans.items()):
            if span.seconds <= 0:  # not idle since the last rows (busy, or removed)
                del self._spans[key]
                continue
            namespace, _, action = (span.path or PLATFORM_NAMESPACE).partition("/")
            rows.append(_overhead(span.kind, namespace, action or None, span.start_ms,
                                  span.end_ms, span.memory_mb, span.seconds, self.prices))
            span.start_ms, span.seconds = span.end_ms, 0.0  # it goes on counting from here
        return rows

    async def flush(self) -> None:
        """Write the sampled idle time."""
        rows = self.take_rows()
        if rows:
            async with self.sessions() as session, session.begin():
                session.add_all(rows)

    async def run(self) -> None:
        """Sample every `interval_s`, write every `flush_every_s` (until cancelled)."""
        last_flush = time.monotonic()
        while True:
            self.sample()
            if time.monotonic() - last_flush >= self.flush_every_s:
                try:
                    await self.flush()
                except Exception:
                    logger.exception("could not write idle-container usage records")
                last_flush = time.monotonic()
            await asyncio.sleep(self.interval_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sample in the background; on exit, write what was sampled."""
        try:
            async with running_in_background(self.run()):
                yield
        finally:
            self.sample()
            await self.flush()
