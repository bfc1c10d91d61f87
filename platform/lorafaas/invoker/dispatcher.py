"""The invoker's batch dispatcher: per-function fill-or-expire queues and the M cap.

Each request joins its function's `FunctionQueue` (lorafaas.invoker.batching). A loop
wakes on every arrival, at every batch's end, and when the earliest queue's slack runs
out; it closes the ready batches least deadline margin first while fewer than the
configured cap of batches run, and hands each to the runner, which gets a container and
runs the batch there (lorafaas.invoker.batch_runner). With `eager` batching a batch closes
as soon as a slot is free, not when it is full or its slack is gone: waiting to fill while
the accelerator idles costs latency and gains nothing, so batches grow only while the
slots are taken (the `fill-or-expire` mode is the paper's rule as stated). The `fifo`
order (the oldest waiting request first) is the baseline the contention benchmark compares
deadline-margin order with.

A batch whose container must first be started (a cold start, a stem cell's
specialization, or a wait for memory) gives its slot back until the container is ready:
starting a container does not use the accelerator, and holding the slot would block every
other function behind one cold start. Meanwhile its function closes no new batch (its
requests keep filling the queue) so one start is not followed by another. A request is never dropped: a late
one is served and counted as an SLO miss; only its caller giving up (its timeout) takes
it out of the queue.

With namespace containers (`lorafaas.invoker.sharing`), `route` says where each request
runs: its function's own containers, or its namespace's container, which the dispatcher
treats as one more function (one queue, one session) whose requests belong to several
functions. A batch there is always a session: each request is its own /run joining the
container's shared decode, in whichever batching mode.

Streaming requests, and every request when batching is off, skip the queue and run at
once as a batch of one: the runtime streams text deltas for one request only (one bound
for a namespace container joins its running session instead, if it has room). So does every
request of a code action or of a function with its own handler (`FunctionRef.runs_alone`):
the owner's code runs once per activation, in a container of its own for the time it runs,
never batched with other requests (a handler's `llm` calls may still share the container's
continuous decode with one another).

With `continuous` batching (iteration-level) a batch is a `ContinuousSession`: the running
decode of one container, which a request joins between two decode steps (the runtime's
continuous-batching engine), so nothing waits to fill a batch and a short request never
waits for a long one. A waiting request joins an open session of its function with room
(at most `max_batch_size` requests at once in a container); else a new session starts, in
another container, within the cap of M; else it waits in its function's queue. A session
ends when its last request does. So that a function with steady traffic cannot keep its
slot for ever, a session stops taking requests while another function waits for a slot
(it ends, and frees its slot, when its requests do). Streaming requests join too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lorafaas.invoker.batching import (
    FunctionQueue,
    PrefillModel,
    contention,
    order_by_deadline_margin,
)
from lorafaas.invoker.containers import is_namespace_key
from lorafaas.invoker.metrics import InvokerMetrics
from lorafaas.invoker.pool import Lease
from lorafaas.invoker.records import WHISK_ERROR
from lorafaas.invoker.runtime_client import DeltaSink, RunOutcome

if TYPE_CHECKING:  # the invoker imports this module
    from lorafaas.invoker.invoker import ActivationRequest
    from lorafaas.invoking.activations import FunctionRef

logger = logging.getLogger(__name__)
# The settings' default T(b): the demo backbone on 2 CPU cores (docs/benchmarks/batching.md).
DEFAULT_PREFILL = PrefillModel(t0_ms=35.0, alpha_ms=16.0)


@dataclass(frozen=True)
class Served:
    """One request's outcome from its batch's container."""

    outcome: RunOutcome
    lease: Lease
    ready_at: float  # epoch s when the batch's container was ready
    batch_size: int
    reports_start: bool = True  # the batch's first outcome: it reports the container's start


class BatchFailed(Exception):
    """The batch's container (or the invoker) failed before this request's outcome came."""

    def __init__(self, status: int, message: str, lease: Lease | None, logs: list[str],
                 batch_size: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.lease = lease
        self.logs = logs
        self.batch_size = batch_size


@dataclass(frozen=True)
class BatchingConfig:
    """How the dispatcher batches (the LORAFAAS_BATCHING… settings)."""

    enabled: bool = False
    eager: bool = False  # close a batch as soon as a slot is free (see the module doc)
    max_batch_size: int = 8
    max_concurrent: int = 2  # the cap of M, batches running at once
    default_slo_ms: float = 2000.0  # for actions stored before the `slo_ttft_ms` limit
    default_model: PrefillModel = DEFAULT_PREFILL
    continuous: bool = False  # requests join a running decode (see the module doc)
    order: Literal["deadline-margin", "fifo"] = "deadline-margin"  # which ready batch first


class Ticket:
    """One request in the dispatcher, and the future its outcome arrives on."""

    def __init__(self, request: ActivationRequest, on_delta: DeltaSink | None,
                 slo_ms: float, target: FunctionRef | None = None) -> None:
        self.request = request
        # What the pool starts for it: its function, or its namespace's container.
        self.target = target or request.function
        self.on_delta = on_delta
        self.slo_ms = slo_ms
        self.future: asyncio.Future[Served] = asyncio.get_running_loop().create_future()
        self.abandoned = False  # its caller stopped waiting (timeout)
        self.batch: RunningBatch | None = None  # set when its batch closes
        # Set once its container is ready: the action's time limit runs from then on.
        self.started = asyncio.Event()

    def deliver(self, served: Served) -> None:
        """Hand the outcome to the caller, unless it stopped waiting."""
        if not self.abandoned and not self.future.done():
            self.future.set_result(served)

    def fail(self, failure: BatchFailed) -> None:
        """Hand a failure to the caller, unless it stopped waiting."""
        if not self.abandoned and not self.future.done():
            self.future.set_exception(failure)


class RunningBatch:
    """A closed batch: its requests, oldest first, and the container it runs in."""

    def __init__(self, tickets: list[Ticket], on_change: Callable[[], None]) -> None:
        self.tickets = tickets
        self.lease: Lease | None = None
        self.ready_at: float | None = None  # epoch s when its container was ready
        self.answered = 0  # outcomes delivered so far
        self.task: asyncio.Task[None] | None = None
        self.holds_slot = True  # counts among the M batches running
        self._on_change = on_change

    @property
    def function_key(self) -> str:
        """The pool's key of the batch's function (or namespace container)."""
        return self.tickets[0].target.key

    @property
    def starting(self) -> bool:
        """Whether it waits for its container to be started."""
        return not self.holds_slot and self.ready_at is None

    def container_starting(self) -> None:
        """Its container must be started first: give the slot back until it is ready."""
        self.holds_slot = False
        self._on_change()

    def container_ready(self, lease: Lease, at: float) -> None:
        """The container is ready (`at`, epoch s): the batch runs now."""
        self.lease, self.ready_at, self.holds_slot = lease, at, True
        for ticket in self.tickets:
            ticket.started.set()
        self._on_change()

    @property
    def function_path(self) -> str:
        """namespace/name of the batch's function (or its namespace container's path)."""
        return self.tickets[0].target.path

    def abandoned(self) -> bool:
        """Whether no caller waits for any of its requests any more."""
        return all(t.abandoned for t in self.tickets)


class ContinuousSession(RunningBatch):
    """Continuous batching: a container's running decode, which requests of its function
    join until the last of them ends (see the module doc)."""

    def __init__(self, tickets: list[Ticket], capacity: int,
                 on_change: Callable[[], None]) -> None:
        super().__init__([], on_change)
        self.capacity = capacity
        self.accepting = True  # open to new requests
        self.live = 0  # requests joined whose outcome has not come yet
        self.late: set[Ticket] = set()  # joined once the container was ready
        self.start_reported = False  # one outcome reports the container's start
        self.error: BaseException | None = None
        # Requests for the runner to send, in order; None: the session is over.
        self.to_send: asyncio.Queue[Ticket | None] = asyncio.Queue()
        for ticket in tickets:
            self.join(ticket)

    @property
    def room(self) -> int:
        """How many more requests it takes now."""
        return max(0, self.capacity - self.live) if self.accepting else 0

    def join(self, ticket: Ticket) -> None:
        """Add a request: the runner sends it at once (or once the container is ready)."""
        ticket.batch = self
        self.tickets.append(ticket)
        if self.ready_at is not None:
            self.late.add(ticket)
            ticket.started.set()
        self.live += 1
        self.to_send.put_nowait(ticket)

    def ended_one(self) -> bool:
        """A request's outcome came; True if it was the last (the session is over)."""
        self.live -= 1
        last = self.live == 0
        if last:
            self.close()
        self._on_change()  # room for a waiting request, or a slot freed
        return last

    def fail(self, error: BaseException) -> None:
        """Its container failed: the session is over; the runner fails its requests."""
        if self.error is None:
            self.error = error
            self.accepting = False
            self.to_send.put_nowait(None)

    def close(self) -> None:
        """Take no more requests; the session is over once none is left."""
        if self.accepting:
            self.accepting = False
            if self.live == 0:
                self.to_send.put_nowait(None)
        elif self.live == 0 and self.error is None:
            self.to_send.put_nowait(None)  # it was draining: its last request ended

    def abandoned(self) -> bool:
        """Whether every request still waiting for its outcome was given up."""
        waiting = [t for t in self.tickets if not t.future.done()]
        return bool(waiting) and all(t.abandoned for t in waiting)


Runner = Callable[[RunningBatch], Awaitable[None]]
Route = Callable[["ActivationRequest"], "FunctionRef"]


def monotonic_ms() -> float:
    """The dispatcher's clock."""
    return time.monotonic() * 1000


class Dispatcher:
    """Queues requests per function and starts their batches (see the module doc)."""

    def __init__(self, config: BatchingConfig, runner: Runner, metrics: InvokerMetrics,
                 clock: Callable[[], float] = monotonic_ms, route: Route | None = None) -> None:
        self.config = config
        self.route = route  # None: every request runs in its function's own containers
        self.metrics = metrics
        self._runner = runner
        self._clock = clock
        self._queues: dict[str, FunctionQueue[Ticket]] = {}  # by the pool's function key
        self._models: dict[str, PrefillModel] = {}
        self._paths: dict[str, str] = {}  # function key -> namespace/name
        self._running: set[RunningBatch] = set()
        self._wake = asyncio.Event()

    # --- what the metrics show -----------------------------------------------------------

    @property
    def running(self) -> int:
        """Batches holding a slot now (M before the cap)."""
        return sum(b.holds_slot for b in self._running)

    def queue_lengths(self) -> dict[str, int]:
        """Requests waiting, per function path."""
        lengths: dict[str, int] = {}
        for key, queue in self._queues.items():
            path = self._paths[key]
            lengths[path] = lengths.get(path, 0) + len(queue)
        return lengths

    def set_prefill_model(self, function_key: str, model: PrefillModel) -> None:
        """Use a function's profiled T(b) for the queues it starts from now on."""
        self._models[function_key] = model

    # --- requests ------------------------------------------------------------------------

    def submit(self, request: ActivationRequest, on_delta: DeltaSink | None = None) -> Ticket:
        """Queue a request (or start it at once when it streams or batching is off)."""
        slo_ms = float(request.limits.get("slo_ttft_ms", self.config.default_slo_ms))
        target = self.route(request) if self.route is not None else None
        ticket = Ticket(request, on_delta, slo_ms, target)
        if not self.config.enabled or (on_delta is not None and not self.config.continuous) \
                or ticket.target.runs_alone:
            # A namespace container decodes every request it gets together, in any mode:
            # one that would run alone joins its running session rather than wait for it.
            session = self._open_session(ticket.target.key) \
                if is_namespace_key(ticket.target.key) else None
            if session is not None:
                session.join(ticket)
                self.metrics.observe_batch(session.function_path, session.live)
            else:
                self._start([ticket])
            return ticket
        key = ticket.target.key
        queue = self._queues.get(key)
        if queue is None:
            self._paths[key] = ticket.target.path
            model = self._models.get(key, self.config.default_model)
            queue = self._queues[key] = FunctionQueue(key, slo_ms, model,
                                                      self.config.max_batch_size)
        queue.push(ticket, self._clock())
        self._wake.set()
        return ticket

    async def abandon(self, ticket: Ticket) -> None:
        """The caller stopped waiting: take the request out of its queue, or, when no
        request of its batch is waited for any more, stop the batch (and wait for that)."""
        self.forget(ticket)
        task = ticket.batch.task if ticket.batch is not None else None
        if task is not None and ticket.batch is not None and ticket.batch.abandoned():
            await asyncio.wait([task])

    def forget(self, ticket: Ticket) -> None:
        """`abandon` without waiting for the batch to stop (the caller is being cancelled)."""
        ticket.abandoned = True
        if ticket.future.done() and not ticket.future.cancelled():
            ticket.future.exception()  # retrieved: nobody will read it now
        if ticket.batch is None:
            queue = self._queues.get(ticket.target.key)
            if queue is not None:
                queue.discard(ticket)
            return
        if ticket.batch.abandoned() and ticket.batch.task is not None:
            ticket.batch.task.cancel()

    # --- the loop ------------------------------------------------------------------------

    def step(self, now_ms: float) -> list[RunningBatch]:
        """Close and start the ready batches in the configured order, within the cap."""
        if self.config.continuous:
            return self._step_continuous(now_ms)
        self._join_namespace_sessions(now_ms)
        started = []
        while self.running < self.config.max_concurrent:
            m = contention(self.running, self.config.max_concurrent)
            ordered = self._ordered(self._closable(), now_ms, m)
            ready = ordered if self.config.eager else [q for q in ordered if q.ready(now_ms, m)]
            if not ready:
                break
            queue = ready[0]
            batch = queue.take_batch(now_ms)
            if not queue:
                del self._queues[queue.function]
            started.append(self._start([r.item for r in batch.requests]))
        return started

    def _step_continuous(self, now_ms: float) -> list[RunningBatch]:
        """Waiting requests join an open session of their function, or start one within the
        cap (in the configured order); a function left waiting for a slot drains the oldest
        session."""
        started: list[RunningBatch] = []
        blocked = False
        for queue in self._ordered(list(self._queues.values()), now_ms, 1):
            while queue:
                session = self._open_session(queue.function)
                if session is not None:
                    for queued in queue.take_batch(now_ms, session.room).requests:
                        session.join(queued.item)
                    self.metrics.observe_batch(session.function_path, session.live)
                elif self.running < self.config.max_concurrent:
                    taken = queue.take_batch(now_ms, self.config.max_batch_size).requests
                    started.append(self._start([r.item for r in taken]))
                else:
                    # A function with a session waits for room in it; one without, for a slot.
                    blocked |= not any(isinstance(b, ContinuousSession) and
                                       b.function_key == queue.function for b in self._running)
                    break
            if not queue:
                del self._queues[queue.function]
        if blocked:
            self._drain_oldest_session()
        return started

    def _join_namespace_sessions(self, now_ms: float) -> None:
        """Requests waiting for a namespace container join its running session, batching
        mode whatever it is: the container decodes them together."""
        for key, queue in list(self._queues.items()):
            session = self._open_session(key) if is_namespace_key(key) else None
            if not queue or session is None or session.ready_at is None:
                continue
            for queued in queue.take_batch(now_ms, session.room).requests:
                session.join(queued.item)
            self.metrics.observe_batch(session.function_path, session.live)
            if not queue:
                del self._queues[key]

    def _open_session(self, function_key: str) -> ContinuousSession | None:
        """A session of the function with room; one whose container is ready first."""
        sessions = [b for b in self._running if isinstance(b, ContinuousSession)
                    and b.function_key == function_key and b.room > 0]
        return min(sessions, key=lambda b: (b.ready_at is None, -b.room), default=None)

    def _drain_oldest_session(self) -> None:
        """A request waits for a slot: the oldest session holding one takes no more requests
        (unless one drains already), so that its slot frees when its requests end."""
        holding = [b for b in self._running
                   if isinstance(b, ContinuousSession) and b.holds_slot]
        if not holding or any(not b.accepting for b in holding):
            return
        oldest = min(holding, key=lambda b: b.ready_at or 0.0)
        logger.debug("draining the session of %s: another function waits for a slot",
                     oldest.function_path)
        oldest.close()

    def next_wake_ms(self) -> float | None:
        """When the earliest queue's slack runs out; None when only an arrival or the end of
        a batch can change anything."""
        if self.config.continuous:
            return None  # no timer: a request joins, starts a session or waits for room
        if self.running >= self.config.max_concurrent:
            return None
        m = contention(self.running, self.config.max_concurrent)
        expiries = [at for q in self._closable() if (at := q.expires_at(m)) is not None]
        return min(expiries, default=None)

    def _ordered(self, queues: list[FunctionQueue[Ticket]], now_ms: float,
                 m: int) -> list[FunctionQueue[Ticket]]:
        """The non-empty queues, least deadline margin first, or with `fifo` the oldest
        waiting request first."""
        if self.config.order == "fifo":
            waiting = [q for q in queues if len(q)]
            return sorted(waiting, key=lambda q: (-q.oldest_wait(now_ms), q.function))
        return order_by_deadline_margin(queues, now_ms, m)

    def _closable(self) -> list[FunctionQueue[Ticket]]:
        """The queues whose function is not waiting for a container start."""
        starting = {b.function_key for b in self._running if b.starting}
        return [q for q in self._queues.values() if q.function not in starting]

    async def run(self) -> None:
        """Dispatch until cancelled."""
        while True:
            self._wake.clear()
            self.step(self._clock())
            wake_at = self.next_wake_ms()
            delay = None if wake_at is None else max(0.0, wake_at - self._clock()) / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    @contextlib.asynccontextmanager
    async def running_loop(self) -> AsyncIterator[None]:
        """Run the loop for the duration of the block; then stop it and any batch left."""
        loop = asyncio.create_task(self.run())
        try:
            yield
        finally:
            tasks = [loop, *(b.task for b in self._running if b.task is not None)]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- batches -------------------------------------------------------------------------

    def _start(self, tickets: list[Ticket]) -> RunningBatch:
        shared = is_namespace_key(tickets[0].target.key)
        batch = (ContinuousSession(tickets, self.config.max_batch_size, self._wake.set)
                 if self.config.continuous or shared else RunningBatch(tickets, self._wake.set))
        for ticket in tickets:
            ticket.batch = batch
        self._running.add(batch)
        self.metrics.observe_batch(batch.function_path, len(tickets))
        batch.task = asyncio.create_task(self._execute(batch))
        return batch

    async def _execute(self, batch: RunningBatch) -> None:
        try:
            await self._runner(batch)
        finally:
            self._running.discard(batch)
            self._wake.set()
            # The runner answers every request; this is the last resort if it did not.
            for ticket in batch.tickets:
                if not ticket.future.done() and not ticket.abandoned:
                    logger.error("activation %s: its batch ended without an outcome",
                                 ticket.request.activation_id)
                    ticket.fail(BatchFailed(WHISK_ERROR, "The invoker lost the activation.",
                                            batch.lease, [], len(batch.tickets)))
