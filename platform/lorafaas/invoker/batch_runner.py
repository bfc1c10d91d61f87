"""Run one closed batch in a container: acquire it, send /run, answer each request.

A batch of several requests goes to the runtime's batch form of /run, one batched
generation, and each request is answered as soon as its sequence ends; a batch of one
takes the single /run (streamed when the caller streams). A container that fails fails
every request of its batch still running, and is discarded; so is one whose requests
were all given up (timed out) mid-run, which stops the generation nobody waits for.

A continuous-batching session sends each request to its container as it joins, as its own
/run with `"continuous": true` (streamed when the caller streams): the runtime adds it to
the decode running there. Each is answered when it ends; the last releases the container.
A namespace container's session is one such (`lorafaas.invoker.sharing`); each request
names its function's folder there, linked in just before it is sent.

Every request's outcome carries the CPU time the host read from its container's cgroup for
it (lorafaas.invoker.cpu_shares), which billing charges instead of wall time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import replace
from typing import Any

from lorafaas.backbone.health import BackboneDown
from lorafaas.invoker.cgroup_cpu import ContainerCpu
from lorafaas.invoker.cpu_shares import RunCpu, with_cpu
from lorafaas.invoker.dispatcher import (
    BatchFailed,
    ContinuousSession,
    RunningBatch,
    Served,
    Ticket,
)
from lorafaas.invoker.metrics import InvokerMetrics
from lorafaas.invoker.pool import ContainerPool, Lease
from lorafaas.invoker.records import DEVELOPER_ERROR, WHISK_ERROR, log_time
from lorafaas.invoker.runtime_client import RunOutcome, RuntimeUnavailable
from lorafaas.invoker.sharing import function_slot
from lorafaas.wire.runtime_protocol import SENTINEL

# A line of the runtime's own logging (its `basicConfig` format, `<asctime> runtime LEVEL`,
# after the record's `<time> stderr: `): the container's, never an activation's.
RUNTIME_LINE = re.compile(r"^\S+ stderr: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} runtime "
                          r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")

logger = logging.getLogger(__name__)


class BatchRunner:
    """The dispatcher's runner on the container pool."""

    def __init__(self, pool: ContainerPool, metrics: InvokerMetrics,
                 cpu: ContainerCpu | None = None) -> None:
        self.pool = pool
        self.metrics = metrics
        self.cpu = cpu or ContainerCpu()

    async def run(self, batch: RunningBatch) -> None:
        """Run the batch to its end; every request still waited for gets an outcome."""
        lease: Lease | None = None
        try:
            lease = await self.pool.acquire(batch.tickets[0].target,
                                            on_start=batch.container_starting)
            batch.container_ready(lease, time.time())
            if isinstance(batch, ContinuousSession):
                await self._serve(batch, lease)
            else:
                await self._generate(batch, lease)
        except asyncio.CancelledError:
            if lease is not None:  # nobody waits: stop the generation with its container
                await self.pool.discard(lease.container, "its activations were given up")
            raise
        except RuntimeUnavailable as error:
            await self._fail(batch, DEVELOPER_ERROR, await self._crash_message(lease, str(error)))
        except BackboneDown as error:  # a fault of the platform, told as it is
            await self._fail(batch, WHISK_ERROR, f"The action's container could not start: "
                                                 f"{error}")
        except Exception as error:
            logger.exception("a batch of %s (activations %s) failed in the invoker",
                             batch.function_path, _ids(batch))
            await self._fail(batch, WHISK_ERROR, f"The invoker could not run the action: {error}")

    def _run_cpu(self, lease: Lease) -> RunCpu:
        info = lease.container.info
        return RunCpu(lambda: self.cpu.seconds(info))

    def _metered(self, outcome: RunOutcome, cpu_s: float | None) -> RunOutcome:
        # The cores a container computes on: its torch threads, else torch's default.
        cores = (self.pool.config.torch_threads or os.cpu_count() or 1) if cpu_s else 1
        return replace(outcome, timings=with_cpu(outcome.timings, cpu_s, cores))

    async def _generate(self, batch: RunningBatch, lease: Lease) -> None:
        client = lease.container.client
        run = self._run_cpu(lease)
        if len(batch.tickets) == 1:
            (ticket,) = batch.tickets
            payload = _payload(ticket)
            outcome = await (client.run(payload) if ticket.on_delta is None
                             else client.run_stream(payload, ticket.on_delta))
            outcome = self._metered(outcome, run.ended(run.start, None, last=True))
            if outcome.developer_error:  # OpenWhisk removes such a container too
                await self.pool.discard(lease.container, "the action did not return a "
                                                         "dictionary")
            else:
                await self.pool.release(lease.container)  # warm before the caller goes on
            self._answer(batch, ticket, outcome)
            return
        left = len(batch.tickets)

        async def on_result(index: int, outcome: RunOutcome) -> None:
            nonlocal left
            left -= 1
            cpu_s = run.ended(run.start, outcome.timings.get("compute"), last=left == 0)
            self._answer(batch, batch.tickets[index], self._metered(outcome, cpu_s))

        limit = int(batch.tickets[0].request.limits["max_tokens"])
        await client.run_batch([_payload(t) for t in batch.tickets], limit, on_result)
        await self.pool.release(lease.container)

    async def _serve(self, session: ContinuousSession, lease: Lease) -> None:
        """Send each request of the session as it joins, until the last one has ended."""
        sends: set[asyncio.Task[None]] = set()
        run = self._run_cpu(lease)
        try:
            while (ticket := await session.to_send.get()) is not None:
                sends.add(asyncio.create_task(self._send(session, lease, ticket, run)))
            if session.error is not None:
                raise session.error
            await asyncio.gather(*sends)  # their last steps: the release, the last answer
        finally:
            session.accepting = False
            for task in sends:
                task.cancel()  # when the container failed, or the session was cancelled
            await asyncio.gather(*sends, return_exceptions=True)

    async def _send(self, session: ContinuousSession, lease: Lease, ticket: Ticket,
                    run: RunCpu) -> None:
        """One request of a session: its /run joins the container's running decode."""
        client = lease.container.client
        sent_at, size, sent = time.time(), session.live, run.mark()
        payload = {**_payload(ticket), "continuous": True}
        try:
            slot = await asyncio.to_thread(function_slot, lease.container, ticket.request)
            if slot is not None:  # a namespace container: the request names its function
                payload["function"] = slot
            outcome = await (client.run(payload) if ticket.on_delta is None
                             else client.run_stream(payload, ticket.on_delta))
        except BaseException as error:
            session.fail(error)  # the runner raises it, and fails the session's requests
            raise
        last = session.ended_one()
        outcome = self._metered(outcome, run.ended(sent, outcome.timings.get("compute"), last))
        if last:
            await self.pool.release(lease.container)  # warm before the caller goes on
        late = ticket in session.late
        # A request that joined once the container was ready found it warm, and waited in
        # the queue until it was sent; the first of the others reports the container start.
        reports_start = not late and not session.start_reported
        session.start_reported |= reports_start
        self._answer(session, ticket, outcome, ready_at=sent_at if late else None, size=size,
                     lease=replace(lease, start_kind="warm", init_breakdown={}, init_ms=0.0,
                                   init_memory={}) if late else None,
                     reports_start=reports_start)

    def _answer(self, batch: RunningBatch, ticket: Ticket, outcome: RunOutcome, *,
                ready_at: float | None = None, size: int | None = None,
                lease: Lease | None = None, reports_start: bool | None = None) -> None:
        """Deliver an outcome; a session's request has its own start, size and lease."""
        ready_at = batch.ready_at if ready_at is None else ready_at
        lease = batch.lease if lease is None else lease
        assert lease is not None and ready_at is not None
        # The first token: the container ready, then the runtime's own time to it (a
        # request refused before generating answers at once).
        first_token_ms = ready_at * 1000 + outcome.timings.get("ttft", 0.0)
        self.metrics.record_served(batch.function_path, ticket.request.received_at * 1000,
                                   first_token_ms, ticket.slo_ms)
        ticket.deliver(Served(outcome, lease, ready_at,
                              step_batch_size(outcome.timings,
                                              len(batch.tickets) if size is None else size),
                              reports_start=batch.answered == 0 if reports_start is None
                              else reports_start))
        batch.answered += 1

    async def _fail(self, batch: RunningBatch, status: int, message: str) -> None:
        lease = batch.lease
        logs: list[str] = []
        if lease is not None:
            started = min(t.request.received_at for t in batch.tickets)
            logs = await self._logs(lease, started, time.time())
            # A container that failed mid-batch is never reused.
            await self.pool.discard(lease.container, message)
        logger.warning("a batch of %s (activations %s) failed: %s", batch.function_path,
                       _ids(batch), message)
        for ticket in batch.tickets:
            if not ticket.future.done() and not ticket.abandoned:
                self.metrics.record_failed(batch.function_path)
                ticket.fail(BatchFailed(status, message, lease, logs, len(batch.tickets)))

    async def _crash_message(self, lease: Lease | None, detail: str) -> str:
        if lease is None:
            return f"The action's container could not start: {detail}"
        exit_code, oom = await self.pool.check_alive(lease.container)
        if oom:
            return "The action's container ran out of memory and was stopped."
        if exit_code is not None:
            return f"The action's container stopped (exit code {exit_code}) during the activation."
        return f"The action's container failed: {detail}"

    async def _logs(self, lease: Lease, started: float, ended: float) -> list[str]:
        return await container_logs(self.pool, lease, started, ended)


async def container_logs(pool: ContainerPool, lease: Lease, started: float,
                         ended: float) -> list[str]:
    """The container's log lines of a time window, without the runtime's sentinels."""
    lines = await asyncio.to_thread(pool.backend.logs, lease.container.info.id,
                                    started - 1, ended + 1)
    return [line for line in lines if SENTINEL not in line]


async def start_logs(pool: ContainerPool, lease: Lease, started: float,
                     ready_at: float) -> list[str]:
    """What the action's own code wrote as its container started (`started` until it was
    ready at `ready_at`, epoch s, before any request of the batch was sent): OpenWhisk's first
    activation holds its init's output, not the runtime's own lines."""
    lines = await container_logs(pool, lease, started, ready_at)
    return [line for line in lines
            if log_time(line.partition(" ")[0]) < ready_at and not RUNTIME_LINE.match(line)]


def _payload(ticket: Ticket) -> dict[str, Any]:
    request = ticket.request
    # The runtime answers with the activation's log lines: no call to the engine for them.
    # The fields beside `value` are OpenWhisk's (the owner's code sees them as `__OW_*`).
    payload = {"value": request.parameters, "activation_id": request.activation_id,
               "namespace": request.namespace, "action_name": request.name,
               "deadline": int(time.time() * 1000 + request.limits["timeout"]), "logs": True}
    if "max_tokens" in request.limits:  # a code action has no such limit
        payload["max_tokens_limit"] = request.limits["max_tokens"]
    return payload


def _ids(batch: RunningBatch) -> str:
    return ", ".join(t.request.activation_id for t in batch.tickets)


def step_batch_size(timings: dict[str, float], sent_with: int) -> int:
    """The record's batchSize: the most requests of any decode step the request was in, as
    the runtime's continuous engine counted them (every function's, in a namespace
    container); else the requests sent together with it."""
    stepped = timings.get("batchSize")
    if isinstance(stepped, int | float) and not isinstance(stepped, bool) and stepped >= 1:
        return int(stepped)
    return sent_with
