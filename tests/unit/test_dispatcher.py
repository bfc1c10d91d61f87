"""The batch dispatcher's scheduling on a fake clock, and its runner against a fake pool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.batching import PrefillModel
from lorafaas.invoker.dispatcher import (
    BatchFailed,
    BatchingConfig,
    Dispatcher,
    RunningBatch,
    Ticket,
)
from lorafaas.invoker.invoker import ActivationRequest, Invoker
from lorafaas.invoker.keepalive import KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker
from lorafaas.invoker.metrics import InvokerMetrics
from lorafaas.invoker.pool import FunctionRef, Lease
from lorafaas.invoker.runtime_client import RunOutcome, RuntimeUnavailable
from lorafaas.names import QualifiedName

# T(b) = 100 + 10·(b−1): with an SLO of 1000 ms a batch holds up to 91, capped at 4 here.
MODEL = PrefillModel(t0_ms=100.0, alpha_ms=10.0)
CONFIG = BatchingConfig(enabled=True, max_batch_size=4, max_concurrent=2,
                        default_slo_ms=1000.0, default_model=MODEL)


def request(name: str = "f", number: int = 0, slo_ms: int = 1000,
            timeout_ms: int = 60_000) -> ActivationRequest:
    """An activation of function `name`."""
    return ActivationRequest(
        activation_id=f"{name}-{number}", namespace="guest", name=name, version="0.0.1",
        subject="guest", function=FunctionRef(f"guest/{name}@0.0.1:x", QualifiedName.from_path(f"guest/{name}"),
                                              Path("/nowhere"), 1024),
        parameters={"prompt": str(number)},
        limits={"timeout": timeout_ms, "max_tokens": 16, "slo_ttft_ms": slo_ms},
        received_at=0.0)


class Clock:
    """A clock the test moves by hand (ms)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HeldRunner:
    """Records the batches it is given and holds each until the test ends it."""

    def __init__(self) -> None:
        self.batches: list[RunningBatch] = []
        self.release: dict[int, asyncio.Event] = {}

    async def __call__(self, batch: RunningBatch) -> None:
        self.batches.append(batch)
        done = self.release.setdefault(id(batch), asyncio.Event())
        await done.wait()

    def end(self, batch: RunningBatch) -> None:
        """Let the batch end (its tickets get no outcome: the dispatcher's last resort)."""
        self.release.setdefault(id(batch), asyncio.Event()).set()


def dispatcher(config: BatchingConfig = CONFIG) -> tuple[Dispatcher, Clock, HeldRunner]:
    """A dispatcher on a fake clock with a held runner."""
    clock, runner = Clock(), HeldRunner()
    return Dispatcher(config, runner, InvokerMetrics(), clock), clock, runner


async def finish(batches: list[RunningBatch]) -> None:
    """Stop the batches a test left running, and read their outcomes (nobody waits)."""
    for batch in batches:
        assert batch.task is not None
        batch.task.cancel()
    await asyncio.gather(*(b.task for b in batches if b.task), return_exceptions=True)
    for ticket in (t for b in batches for t in b.tickets):
        if ticket.future.done() and not ticket.future.cancelled():
            ticket.future.exception()


def names(batch: RunningBatch) -> list[str]:
    """The activation ids of a batch, in order."""
    return [t.request.activation_id for t in batch.tickets]


async def test_a_full_queue_closes_its_batch_at_once() -> None:
    d, clock, runner = dispatcher()
    for number in range(5):
        d.submit(request(number=number))
    (batch,) = d.step(clock.now)
    assert names(batch) == ["f-0", "f-1", "f-2", "f-3"]  # N = the cap, oldest first
    assert d.queue_lengths() == {"guest/f": 1} and d.running == 1
    await asyncio.sleep(0)
    assert runner.batches == [batch]
    await finish([batch])


async def test_a_lone_request_waits_until_its_slack_runs_out() -> None:
    d, clock, _ = dispatcher()
    clock.now = 50.0
    d.submit(request())
    assert d.step(clock.now) == []
    # Its slack: SLO − wait − M·T(N) with M = 1 and N = 4: 1000 − 130 after arriving at 50.
    assert d.next_wake_ms() == pytest.approx(50.0 + 1000 - 130)
    clock.now = 919.0
    assert d.step(clock.now) == []
    clock.now = 920.0
    (batch,) = d.step(clock.now)
    assert names(batch) == ["f-0"]
    assert d.queue_lengths() == {}
    await finish([batch])


async def test_eager_batching_closes_a_batch_at_once_while_a_slot_is_free() -> None:
    d, clock, _ = dispatcher(BatchingConfig(enabled=True, eager=True, max_batch_size=4,
                                            max_concurrent=1, default_model=MODEL))
    d.submit(request(number=0))
    (alone,) = d.step(clock.now)  # the slot is free: no waiting to fill
    assert names(alone) == ["f-0"]
    for number in range(1, 4):
        d.submit(request(number=number))
    assert d.step(clock.now) == []  # the slot is taken: the queue fills
    alone.container_ready(None, 0.0)  # type: ignore[arg-type]
    await finish([alone])
    d._running.discard(alone)
    (batch,) = d.step(clock.now)
    assert names(batch) == ["f-1", "f-2", "f-3"]
    await finish([batch])


async def test_a_batch_waiting_for_a_container_start_gives_its_slot_to_other_functions(
        ) -> None:
    d, clock, _ = dispatcher(BatchingConfig(enabled=True, eager=True, max_batch_size=4,
                                            max_concurrent=1, default_model=MODEL))
    d.submit(request("cold", 0))
    (cold,) = d.step(clock.now)
    d.submit(request("cold", 1))
    d.submit(request("warm", 0))
    assert d.step(clock.now) == []  # the slot is held
    cold.container_starting()
    assert d.running == 0
    (warm,) = d.step(clock.now)  # the other function runs meanwhile,
    assert names(warm) == ["warm-0"]
    warm.container_ready(None, 0.0)  # type: ignore[arg-type]
    d._running.discard(warm)
    assert d.step(clock.now) == []  # and `cold` closes no second batch while it starts
    assert d.queue_lengths() == {"guest/cold": 1}
    cold.container_ready(None, 0.0)  # type: ignore[arg-type]
    assert d.running == 1
    await finish([cold, warm])


async def test_the_cap_of_m_holds_ready_batches_and_the_least_margin_goes_first() -> None:
    d, clock, runner = dispatcher(BatchingConfig(enabled=True, max_batch_size=2,
                                                 max_concurrent=1, default_model=MODEL))
    d.submit(request("relaxed", 0, slo_ms=5000))
    d.submit(request("relaxed", 1, slo_ms=5000))
    d.submit(request("urgent", 0, slo_ms=500))
    d.submit(request("urgent", 1, slo_ms=500))
    (first,) = d.step(clock.now)
    assert names(first) == ["urgent-0", "urgent-1"]  # Δ = 500 − 110 before 5000 − 110
    assert d.step(clock.now) == [] and d.next_wake_ms() is None  # M is at its cap
    await asyncio.sleep(0)
    runner.end(first)
    for ticket in first.tickets:
        with pytest.raises(BatchFailed):  # the held runner answered nothing: last resort
            await ticket.future
    (second,) = d.step(clock.now)
    assert names(second) == ["relaxed-0", "relaxed-1"]
    assert d.metrics.batch_sizes["guest/urgent"].count == 1
    await finish([second])


@pytest.mark.parametrize("eager", [False, True])
async def test_fifo_order_starts_the_oldest_waiting_request_first(eager: bool) -> None:
    d, clock, _ = dispatcher(BatchingConfig(enabled=True, eager=eager, max_batch_size=2,
                                            max_concurrent=1, default_model=MODEL,
                                            order="fifo"))
    d.submit(request("relaxed", 0, slo_ms=5000))
    d.submit(request("relaxed", 1, slo_ms=5000))
    clock.now = 10.0
    d.submit(request("urgent", 0, slo_ms=500))
    d.submit(request("urgent", 1, slo_ms=500))
    (first,) = d.step(clock.now)
    # Deadline-margin order would start `urgent` (Δ = 500 − 110 before 5000 − 120).
    assert names(first) == ["relaxed-0", "relaxed-1"]
    assert d.queue_lengths() == {"guest/urgent": 2}
    await finish([first])


async def test_streaming_and_batching_off_run_alone_at_once() -> None:
    d, _, _ = dispatcher(BatchingConfig(enabled=True, max_batch_size=4, max_concurrent=1,
                                        default_model=MODEL))

    async def sink(delta: str) -> None:
        pass

    first = d.submit(request(number=0), on_delta=sink)
    second = d.submit(request(number=1), on_delta=sink)
    assert first.batch is not None and second.batch is not None  # past the cap of M
    assert d.running == 2 and d.queue_lengths() == {}

    off, _, _ = dispatcher(BatchingConfig(enabled=False))
    ticket = off.submit(request())
    assert ticket.batch is not None and len(ticket.batch.tickets) == 1
    await finish([first.batch, second.batch, ticket.batch])


async def test_a_request_given_up_leaves_its_queue_and_its_batch_stops_with_the_last() -> None:
    d, clock, _ = dispatcher()
    queued = d.submit(request(number=0))
    await d.abandon(queued)
    assert d.queue_lengths() == {"guest/f": 0} and d.step(clock.now + 10_000) == []

    tickets = [d.submit(request(number=n)) for n in range(1, 5)]
    (batch,) = d.step(clock.now)
    await asyncio.sleep(0)
    for ticket in tickets[:-1]:
        await d.abandon(ticket)
    assert batch.task is not None and not batch.task.done()  # one caller still waits
    await d.abandon(tickets[-1])
    assert batch.task.cancelled() and d.running == 0


async def test_the_loop_wakes_at_the_expiry_of_a_lone_request() -> None:
    d = Dispatcher(BatchingConfig(enabled=True, max_batch_size=8, default_slo_ms=50.0,
                                  default_model=PrefillModel(1.0, 1.0)),
                   answer_all, InvokerMetrics())
    async with d.running_loop():
        ticket = d.submit(request(slo_ms=50))
        served = await asyncio.wait_for(ticket.future, timeout=30)
    assert served.batch_size == 1 and served.outcome.result == {"text": "f-0"}


async def answer_all(batch: RunningBatch) -> None:
    """A runner that answers each request with its id."""
    for ticket in batch.tickets:
        ticket.deliver(fake_served(batch, ticket))


def fake_served(batch: RunningBatch, ticket: Ticket) -> Any:
    """A Served outcome with a fake lease."""
    from lorafaas.invoker.dispatcher import Served

    lease = Lease(SimpleNamespace(function_key="guest/f"), "warm", {},  # type: ignore[arg-type]
                  0.0)
    return Served(RunOutcome({"text": ticket.request.activation_id}, {"ttft": 1.0}), lease,
                  0.0, len(batch.tickets))


# --- the runner against a fake pool --------------------------------------------------------


class FakeClient:
    """A runtime that answers a batch in reverse order, or fails after `fail_after`."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.batches: list[list[dict[str, Any]]] = []

    async def run(self, payload: dict[str, Any]) -> RunOutcome:
        self.batches.append([payload])
        if self.fail_after == 0:
            raise RuntimeUnavailable("the container's runtime stopped answering")
        return RunOutcome({"text": payload["value"]["prompt"]}, {"ttft": 5.0, "total": 9.0})

    async def run_batch(self, payloads: list[dict[str, Any]], max_tokens_limit: int,
                        on_result: Any) -> None:
        self.batches.append(payloads)
        for answered, index in enumerate(reversed(range(len(payloads)))):
            if answered == self.fail_after:
                raise RuntimeUnavailable("the container's runtime stopped answering")
            await on_result(index, RunOutcome({"text": payloads[index]["value"]["prompt"]},
                                              {"ttft": 5.0, "compute": 1.0}))


class FakePool:
    """Hands out one container; records releases and discards."""

    def __init__(self, client: FakeClient) -> None:
        self.container = SimpleNamespace(client=client, info=ContainerInfo("c1", "c1", 0),
                                         folders=None, function_key="guest/f")
        self.released = 0
        self.discarded: list[str] = []
        self.backend = SimpleNamespace(logs=lambda *args: ["a log line"])

    async def acquire(self, function: FunctionRef, on_start: Any = None) -> Lease:
        return Lease(self.container, "warm", {}, 0.0)  # type: ignore[arg-type]

    async def release(self, container: Any) -> None:
        self.released += 1

    async def discard(self, container: Any, reason: str) -> None:
        self.discarded.append(reason)

    async def check_alive(self, container: Any) -> tuple[int | None, bool]:
        return 137, False


def invoker(client: FakeClient) -> tuple[Invoker, FakePool]:
    """An invoker with batching on, over a fake pool."""
    pool = FakePool(client)
    config = BatchingConfig(enabled=True, max_batch_size=3, default_slo_ms=60_000.0,
                            default_model=MODEL)
    return Invoker(pool, FunctionTracker(KeepAlivePolicy()), config), pool  # type: ignore[arg-type]


async def run_three(client: FakeClient) -> tuple[list[Any], FakePool, Invoker]:
    """Three concurrent activations of one function: they fill one batch."""
    inv, pool = invoker(client)
    async with inv.dispatcher.running_loop():
        results = await asyncio.wait_for(asyncio.gather(
            *(inv.run(request(number=n)) for n in range(3))), timeout=30)
    return results, pool, inv


async def test_a_batch_answers_each_request_with_its_own_outcome() -> None:
    client = FakeClient()
    results, pool, inv = await run_three(client)
    assert [len(b) for b in client.batches] == [3]
    for number, result in enumerate(results):
        annotations = {a["key"]: a["value"] for a in result.annotations}
        assert result.response["result"] == {"text": str(number)}
        assert annotations["batchSize"] == 3 and annotations["startKind"] == "warm"
        assert result.logs == ["a log line"]
    assert pool.released == 1 and pool.discarded == []
    assert inv.metrics.slo.counts("guest/f").served == 3


async def test_a_failing_container_fails_the_requests_still_running_and_is_discarded() -> None:
    client = FakeClient(fail_after=1)
    results, pool, inv = await run_three(client)
    statuses = [r.status_code for r in results]
    assert statuses == [2, 2, 0]  # the last was answered first, before the failure
    assert results[0].response["result"]["error"] == (
        "The action's container stopped (exit code 137) during the activation.")
    assert pool.discarded and pool.released == 0
    assert inv.metrics.failed["guest/f"] == 2


async def test_a_request_that_never_leaves_the_queue_ends_as_a_platform_error() -> None:
    # Its time limit (100 ms) does not run in the queue: only the wait for capacity ends it,
    # as the platform's error, with the wait in waitTime (OpenWhisk's reading).
    inv, _ = invoker(FakeClient())
    inv.capacity_wait = lambda timeout_ms: 0.3
    inv.dispatcher.config = BatchingConfig(enabled=True, max_batch_size=3,
                                           default_model=PrefillModel(1.0, 1.0))
    async with inv.dispatcher.running_loop():
        result = await asyncio.wait_for(
            inv.run(request(slo_ms=600_000, timeout_ms=100)), timeout=30)
    assert result.response["status"] == "whisk internal error" and result.status_code == 3
    assert "did not start" in result.response["result"]["error"]
    annotations = {a["key"]: a["value"] for a in result.annotations}
    assert "timeout" not in annotations and annotations["waitTime"] >= 300
    assert inv.dispatcher.queue_lengths() == {"guest/f": 0}


class TimedPool(FakePool):
    """A pool whose container takes `start_s` to come, initialized in `init_ms` (its /init)
    for the activation, and whose runtime answers in `run_s`."""

    def __init__(self, start_s: float, init_ms: float, run_s: float) -> None:
        super().__init__(FakeClient())
        self.start_s, self.init_ms, self.run_s = start_s, init_ms, run_s
        client = self.container.client
        answer, answer_batch = client.run, client.run_batch

        async def slow(payload: dict[str, Any]) -> RunOutcome:
            await asyncio.sleep(self.run_s)
            return await answer(payload)

        async def slow_batch(*args: Any) -> None:
            await asyncio.sleep(self.run_s)
            await answer_batch(*args)
        client.run, client.run_batch = slow, slow_batch

    async def acquire(self, function: FunctionRef, on_start: Any = None) -> Lease:
        await asyncio.sleep(self.start_s)
        return Lease(self.container, "cold", {"adapter": self.init_ms}, self.init_ms)  # type: ignore[arg-type]


async def timed_run(pool: TimedPool, timeout_ms: int) -> Any:
    inv = Invoker(pool, FunctionTracker(KeepAlivePolicy()), CONFIG)  # type: ignore[arg-type]
    async with inv.dispatcher.running_loop():
        return await asyncio.wait_for(inv.run(request(timeout_ms=timeout_ms)), timeout=30)


async def test_the_time_limit_leaves_out_the_wait_for_a_container() -> None:
    # The container takes 0.6 s to come, three times the 200 ms limit: the action still runs.
    result = await timed_run(TimedPool(start_s=0.6, init_ms=0.0, run_s=0.0), timeout_ms=200)
    assert result.status_code == 0, result.response


async def test_the_time_limit_covers_init_and_run() -> None:
    # /init took 150 ms of the 200: a run of 0.1 s more exceeds the limit.
    result = await timed_run(TimedPool(start_s=0.0, init_ms=150.0, run_s=0.1), timeout_ms=200)
    assert result.response["status"] == "action developer error"
    assert "time limits of 200 milliseconds" in result.response["result"]["error"]
    assert {"key": "timeout", "value": True} in result.annotations
