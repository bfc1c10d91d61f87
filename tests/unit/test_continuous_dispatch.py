"""Continuous batching in the invoker: requests join their function's running session at
once, within its room and the cap of M; the runner sends each as it joins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lorafaas.invoker.dispatcher import BatchingConfig, ContinuousSession, RunningBatch
from lorafaas.invoker.invoker import Invoker
from lorafaas.invoker.keepalive import KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker
from lorafaas.invoker.pool import FunctionRef, Lease
from lorafaas.invoker.runtime_client import RunOutcome, RuntimeUnavailable
from lorafaas.names import QualifiedName
from tests.unit.test_dispatcher import MODEL, FakePool, dispatcher, finish, names, request

CONTINUOUS = BatchingConfig(enabled=True, continuous=True, max_batch_size=2,
                            max_concurrent=1, default_slo_ms=1000.0, default_model=MODEL)


def session_of(batch: RunningBatch) -> ContinuousSession:
    """The batch, which continuous batching makes a session."""
    assert isinstance(batch, ContinuousSession)
    return batch


async def test_requests_join_the_running_session_up_to_its_room() -> None:
    d, clock, _ = dispatcher(CONTINUOUS)
    d.submit(request(number=0))
    (batch,) = d.step(clock.now)  # nothing waits to fill: it starts at once
    session = session_of(batch)
    assert names(session) == ["f-0"] and d.next_wake_ms() is None
    session.container_ready(None, 1.0)  # type: ignore[arg-type]
    d.submit(request(number=1))
    d.submit(request(number=2))
    assert d.step(clock.now) == []  # f-1 joins the session; f-2 finds it full and M taken
    assert names(session) == ["f-0", "f-1"] and session.late == {session.tickets[1]}
    assert d.queue_lengths() == {"guest/f": 1}
    assert session.accepting, "a request waiting for room drains nothing"
    assert session.ended_one() is False  # f-0 ends: room for f-2
    assert d.step(clock.now) == [] and names(session) == ["f-0", "f-1", "f-2"]
    sent = [session.to_send.get_nowait() for _ in range(3)]
    assert [t.request.activation_id for t in sent if t] == ["f-0", "f-1", "f-2"]
    assert d.metrics.batch_sizes["guest/f"].count == 3  # one per admission: sizes 1, 2, 2
    assert d.metrics.batch_sizes["guest/f"].total == 5
    await finish([session])


async def test_a_full_session_sends_more_to_another_container_within_m() -> None:
    d, clock, _ = dispatcher(BatchingConfig(enabled=True, continuous=True, max_batch_size=2,
                                            max_concurrent=2, default_model=MODEL))
    for number in range(3):
        d.submit(request(number=number))
    first, second = d.step(clock.now)
    assert names(first) == ["f-0", "f-1"] and names(second) == ["f-2"]
    await finish([first, second])


async def test_another_function_waiting_for_a_slot_drains_the_oldest_session() -> None:
    d, clock, runner = dispatcher(CONTINUOUS)
    d.submit(request("f", 0))
    (session,) = (session_of(b) for b in d.step(clock.now))
    session.container_ready(None, 1.0)  # type: ignore[arg-type]
    d.submit(request("g", 0))
    assert d.step(clock.now) == []
    assert not session.accepting, "f takes no new request while g waits for the slot"
    clock.now = 5.0
    d.submit(request("f", 1))
    assert d.step(clock.now) == [] and d.queue_lengths() == {"guest/f": 1, "guest/g": 1}
    assert session.ended_one() is True  # its last request ended: the session is over
    assert session.to_send.get_nowait() is not None and session.to_send.get_nowait() is None
    await asyncio.sleep(0)
    runner.end(session)
    with pytest.raises(Exception, match="lost the activation"):
        await session.tickets[0].future  # the held runner answered nothing: last resort
    (g_session,) = d.step(clock.now)  # g waited longer: it goes first
    assert names(g_session) == ["g-0"] and d.queue_lengths() == {"guest/f": 1}
    assert not session_of(g_session).accepting, "now f waits: g's session drains in turn"
    await finish([g_session])


async def test_streaming_requests_join_too() -> None:
    d, clock, _ = dispatcher(CONTINUOUS)

    async def sink(delta: str) -> None:
        pass

    first = d.submit(request(number=0), on_delta=sink)
    second = d.submit(request(number=1), on_delta=sink)
    assert first.batch is None and d.queue_lengths() == {"guest/f": 2}
    (session,) = d.step(clock.now)
    assert names(session) == ["f-0", "f-1"] and second.batch is session
    await finish([session])


async def test_a_session_is_given_up_only_when_no_waited_request_is_left() -> None:
    d, clock, _ = dispatcher(CONTINUOUS)
    tickets = [d.submit(request(number=n)) for n in range(2)]
    (session,) = d.step(clock.now)
    await asyncio.sleep(0)
    await d.abandon(tickets[0])
    assert session.task is not None and not session.task.done()
    await d.abandon(tickets[1])
    assert session.task.cancelled() and d.running == 0


# --- the runner: each request its own /run, sent as it joins ------------------------------


class HeldClient:
    """A runtime whose /run answers when the test opens the request's gate."""

    def __init__(self, fail: str | None = None) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail = fail

    def gate(self, activation_id: str) -> asyncio.Event:
        """The event that lets the activation's /run answer."""
        return self.gates.setdefault(activation_id, asyncio.Event())

    async def run(self, payload: dict[str, Any]) -> RunOutcome:
        self.payloads.append(payload)
        await self.gate(payload["activation_id"]).wait()
        if payload["activation_id"] == self.fail:
            raise RuntimeUnavailable("the container's runtime stopped answering")
        return RunOutcome({"text": payload["value"]["prompt"]}, {"ttft": 5.0, "compute": 1.0})

    async def sent(self, count: int) -> None:
        """Wait until `count` requests were sent."""
        while len(self.payloads) < count:
            await asyncio.sleep(0.001)


class ColdPool(FakePool):
    """Its container is started for the first request (a cold start that loaded things)."""

    async def acquire(self, function: FunctionRef, on_start: Any = None) -> Lease:
        return Lease(self.container, "cold", {"adapter": 10.0}, 50.0,  # type: ignore[arg-type]
                     {"adapter": 1024})


def annotations(result: Any) -> dict[str, Any]:
    """An activation result's annotations by key."""
    return {a["key"]: a["value"] for a in result.annotations}


async def test_a_request_joins_while_another_runs_and_returns_first() -> None:
    client = HeldClient()
    pool = ColdPool(client)  # type: ignore[arg-type]
    inv = Invoker(pool, FunctionTracker(KeepAlivePolicy()), CONTINUOUS)  # type: ignore[arg-type]
    async with inv.dispatcher.running_loop():
        long = asyncio.create_task(inv.run(request(number=0)))
        await asyncio.wait_for(client.sent(1), 30)
        short = asyncio.create_task(inv.run(request(number=1)))
        await asyncio.wait_for(client.sent(2), 30)  # sent while the first still runs
        client.gate("f-1").set()
        short_result = await asyncio.wait_for(short, 30)
        assert not long.done() and pool.released == 0
        client.gate("f-0").set()
        long_result = await asyncio.wait_for(long, 30)
    assert all(p["continuous"] is True for p in client.payloads)
    assert short_result.response["result"] == {"text": "1"}
    assert long_result.response["result"] == {"text": "0"}
    assert pool.released == 1 and pool.discarded == []
    # The first found no container ready and reports its start; the second found it warm.
    assert annotations(long_result)["startKind"] == "cold" and long_result.reports_start
    assert long_result.loads and not short_result.loads
    assert annotations(short_result)["startKind"] == "warm"
    assert "initTime" not in annotations(short_result)
    assert not short_result.reports_start
    assert [annotations(r)["batchSize"] for r in (long_result, short_result)] == [1, 2]
    assert inv.metrics.slo.counts("guest/f").served == 2


async def test_a_failing_container_fails_every_request_of_its_session() -> None:
    client = HeldClient(fail="f-1")
    pool = FakePool(client)  # type: ignore[arg-type]
    inv = Invoker(pool, FunctionTracker(KeepAlivePolicy()), CONTINUOUS)  # type: ignore[arg-type]
    async with inv.dispatcher.running_loop():
        first = asyncio.create_task(inv.run(request(number=0)))
        await asyncio.wait_for(client.sent(1), 30)
        second = asyncio.create_task(inv.run(request(number=1)))
        await asyncio.wait_for(client.sent(2), 30)
        client.gate("f-1").set()
        results = await asyncio.wait_for(asyncio.gather(first, second), 30)
    assert [r.status_code for r in results] == [2, 2]
    assert results[0].response["result"]["error"] == (
        "The action's container stopped (exit code 137) during the activation.")
    assert pool.discarded and pool.released == 0


async def test_with_batching_off_a_namespace_container_s_requests_join_its_session() -> None:
    """Batching off runs each request alone at once, but a namespace container decodes all
    of its requests together: one bound there joins its running session rather than wait
    for the container, up to the session's room."""
    d, _, _ = dispatcher(BatchingConfig(enabled=False, max_batch_size=2))
    shared = FunctionRef("namespace:guest/default", QualifiedName("guest", None, "(ns)"),
                         Path("/nowhere"), 1024)
    d.route = lambda _request: shared
    first = d.submit(request("f", 0))
    second = d.submit(request("g", 0))
    third = d.submit(request("h", 0))
    session = session_of(first.batch)  # type: ignore[arg-type]
    assert second.batch is session and names(session) == ["f-0", "g-0"]
    assert third.batch is not session and third.batch is not None  # no room: its own
    await finish([session, third.batch])
