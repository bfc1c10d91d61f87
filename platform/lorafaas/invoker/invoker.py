"""Run one activation: queue it for its batch, wait for its outcome, and build the record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from lorafaas.invoker.artifact_loads import measured_loads
from lorafaas.invoker.batch_runner import BatchRunner, container_logs, start_logs
from lorafaas.invoker.dispatcher import BatchFailed, BatchingConfig, Dispatcher, Served, Ticket
from lorafaas.invoker.maintenance import FunctionTracker
from lorafaas.invoker.metrics import InvokerMetrics
from lorafaas.invoker.pool import ContainerPool, Lease
from lorafaas.invoker.records import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    SUCCESS,
    WHISK_ERROR,
    annotation_list,
    response,
)
from lorafaas.invoker.runtime_client import DeltaSink
from lorafaas.invoker.sharing import (
    FUNCTION_CONTAINER,
    NamespaceSharing,
    SharingConfig,
    container_kind,
)
from lorafaas.invoking.activations import ActivationRequest, ActivationResult
from lorafaas.start_kinds import ADAPTER, PRELOADED, WARM

logger = logging.getLogger(__name__)


class Invoker:
    """Runs activations in the container pool, batched by the dispatcher."""

    def __init__(self, pool: ContainerPool, tracker: FunctionTracker,
                 batching: BatchingConfig | None = None,
                 sharing: SharingConfig | None = None,
                 capacity_wait: Callable[[int], float] | None = None) -> None:
        self.pool = pool
        # How long an activation may wait for a container, by its time limit (ms).
        self.capacity_wait = capacity_wait or capacity_wait_s
        self.tracker = tracker
        self.metrics = InvokerMetrics()
        # With namespace containers on, each request's placement is asked of the policy.
        self.sharing = (NamespaceSharing(sharing, pool) if sharing is not None
                        and sharing.enabled else None)
        self.dispatcher = Dispatcher(batching or BatchingConfig(),
                                     BatchRunner(pool, self.metrics).run, self.metrics,
                                     route=self.sharing.route if self.sharing else None)

    async def retire(self, function_path: str) -> None:
        """An action was updated or deleted: remove its containers and forget what was seen
        of it, so that nothing keeps or pre-loads a version no request will use."""
        await self.pool.remove_function(function_path)
        self.tracker.forget(function_path)
        if self.sharing is not None:
            self.sharing.forget(f"{function_path}@")

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        """Run the activation to its end; never raises for a failed action.

        The request waits in its function's batch queue, then runs in its batch. With
        `on_delta`, it runs alone and streams: each text delta is handed over as it comes.
        As OpenWhisk's, the action's time limit covers its /init and /run only: the wait for
        a container is the platform's, bounded by `capacity_wait`.
        """
        started = time.time()
        self.tracker.arrived(request.function, request.received_at)
        ticket = self.dispatcher.submit(request, on_delta)
        try:
            if not await _container_ready(ticket, self.capacity_wait(request.limits["timeout"])):
                return await self._not_started(request, started, ticket)
            async with asyncio.timeout(_run_budget_s(request, ticket)):
                # Shielded: the future belongs to the batch, which may outlive this wait.
                served = await asyncio.shield(ticket.future)
        except TimeoutError:
            return await self._timed_out(request, started, ticket)
        except BatchFailed as failure:
            return self._failed(request, started, failure.status, failure.message,
                                failure.lease, failure.logs, failure.batch_size)
        except BaseException:
            self.dispatcher.forget(ticket)
            raise
        return await self._succeeded(request, started, served)

    async def _not_started(self, request: ActivationRequest, started: float,
                           ticket: Ticket) -> ActivationResult:
        """No container was ready in time: a platform error, not the action's (its wait is
        in the record's `waitTime`)."""
        await self.dispatcher.abandon(ticket)
        self.metrics.record_failed(request.function.path)
        return self._failed(request, started, WHISK_ERROR,
                            "The platform had no container ready for the action in time; "
                            "the action did not start.", None, [], None)

    async def _succeeded(self, request: ActivationRequest, started: float,
                         served: Served) -> ActivationResult:
        ended = time.time()
        outcome, lease = served.outcome, served.lease
        # What the container's start measured, reported once per batch (by its first outcome).
        # A namespace container's start is no start of the function's own: its figures
        # (no adapter; several functions') would skew the function's artifact profiles.
        own = container_kind(lease.container) == FUNCTION_CONTAINER
        loads = (tuple(measured_loads(lease.init_breakdown, lease.init_memory))
                 if served.reports_start and own else ())
        self.tracker.ended(request.function, ended, lease.init_breakdown if own else {}, loads)
        status = DEVELOPER_ERROR if outcome.developer_error else \
            APPLICATION_ERROR if "error" in outcome.result else SUCCESS
        logs = outcome.logs
        if logs is None:  # a runtime that captures no log: only the engine has its lines
            logs = await container_logs(self.pool, lease, started, ended)
        elif lease.start_kind != "warm" and served.reports_start:
            # A container started for its batch: the start's lines (before the container
            # was ready, so no request's) go with the activation that reports the start.
            logs = [*await start_logs(self.pool, lease, started, served.ready_at), *logs]
        annotations = self._annotations(request, served.ready_at, lease, outcome.timings,
                                        served.batch_size)
        return ActivationResult(_ms(started), _ms(ended), status, response(status, outcome.result),
                                logs, annotations, outcome.timings, loads, served.reports_start)

    async def _timed_out(self, request: ActivationRequest, started: float,
                         ticket: Ticket) -> ActivationResult:
        batch = ticket.batch
        lease = batch.lease if batch is not None else None
        logs: list[str] = []
        if lease is not None:
            logs = await container_logs(self.pool, lease, started, time.time())
        # The last request of a batch to give up stops it: its container is discarded.
        await self.dispatcher.abandon(ticket)
        self.metrics.record_failed(request.function.path)
        result = self._failed(request, started, DEVELOPER_ERROR,
                              f"The action exceeded its time limits of "
                              f"{request.limits['timeout']} milliseconds.",
                              lease, logs, len(batch.tickets) if batch is not None else None)
        result.annotations.append({"key": "timeout", "value": True})  # OpenWhisk's marker
        return result

    def _failed(self, request: ActivationRequest, started: float, status: int, message: str,
                lease: Lease | None, logs: list[str],
                batch_size: int | None) -> ActivationResult:
        ended = time.time()
        logger.warning("activation %s ended with status %d: %s", request.activation_id, status,
                       message)
        annotations = self._annotations(request, ended, lease, {}, batch_size)
        return ActivationResult(_ms(started), _ms(ended), status,
                                response(status, {"error": message}), logs, annotations)

    def _annotations(self, request: ActivationRequest, ready_at: float, lease: Lease | None,
                     timings: dict[str, float], batch_size: int | None) -> list[dict[str, Any]]:
        # Between arrival and the container being ready: the batch queue, then (for a
        # container started for it) initialization.
        before_run_ms = max(0.0, (ready_at - request.received_at) * 1000)
        init_ms = lease.init_ms if lease is not None and lease.start_kind != "warm" else None
        wait_ms = max(0.0, before_run_ms - (init_ms or 0.0))
        return annotation_list({
            "path": str(request.function.name),
            "kind": request.function.kind,
            "limits": request.limits,
            "parameters": request.parameters,  # what the request asked, shown by the console
            "waitTime": round(wait_ms),
            "initTime": round(init_ms) if init_ms is not None else None,
            "startKind": _start_kind(lease, timings),
            # Which kind of container ran it: `namespace` (shared) or `function` (its own).
            "container": container_kind(lease.container) if lease is not None else None,
            "initBreakdown": lease.init_breakdown if lease is not None else None,
            # What the caller waited for its first token: queue, initialization, prefill.
            "ttft": round(before_run_ms + timings["ttft"], 3)
            if "ttft" in timings else None,
            "batchSize": batch_size,
            # Which of the runtime's engines generated it: `native` or `general`.
            "engine": timings.get("engine"),
        })


def capacity_wait_s(timeout_ms: int) -> float:
    """How long an activation may wait for a container: OpenWhisk's bound on an activation
    the invoker has not answered, max(time limit, 1 min) × 2 + 1 min."""
    return max(timeout_ms / 1000, 60.0) * 2 + 60.0


async def _container_ready(ticket: Ticket, limit_s: float) -> bool:
    """Wait until the ticket's container is ready, or its outcome (a failure) comes; False
    when `limit_s` runs out first."""
    ready = asyncio.ensure_future(ticket.started.wait())
    either: set[asyncio.Future[Any]] = {ready, ticket.future}
    try:
        done, _ = await asyncio.wait(either, timeout=limit_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    return bool(done)


def _run_budget_s(request: ActivationRequest, ticket: Ticket) -> float:
    """What is left of the time limit for /run once the container is ready: the limit less
    what its /init took, when it was initialized for this activation."""
    lease = ticket.batch.lease if ticket.batch is not None else None
    init_ms = 0.0
    if lease is not None and lease.start_kind != WARM:
        init_ms = sum(lease.init_breakdown.values())
    return max(0.0, request.limits["timeout"] - init_ms) / 1000


def _start_kind(lease: Lease | None, timings: dict[str, float]) -> str | None:
    """The lease's start kind; in a running namespace container, whether the function's
    adapter was loaded for this activation (`adapter`), by the pre-loading plan ahead of it
    (`preloaded`: its first request since), or by an earlier request (`warm`)."""
    if lease is None:
        return None
    if lease.start_kind in (WARM, PRELOADED) and "adapterLoaded" in timings:
        if timings["adapterLoaded"] is False:
            return ADAPTER
        return PRELOADED if timings.get("adapterPreloaded") else WARM
    return lease.start_kind


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
