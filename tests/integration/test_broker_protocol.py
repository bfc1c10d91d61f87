"""The broker's protocol against a real NATS server: the controller's `BrokerInvoker` and two
invoker services, each driving an echo invoker (the seam's second implementation), so that
placement, streaming, cancelling, refusal and redelivery are checked without containers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from lorafaas.broker import client as client_module
from lorafaas.broker.client import BrokerInvoker
from lorafaas.broker.service import InvokerService
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
    StreamCancelled,
)
from lorafaas.invoking.client import FunctionView, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName


class EchoInvoker:
    """Echoes the prompt word by word; `hold` keeps a run waiting until it is set."""

    def __init__(self, name: str, pause_s: float = 0.01) -> None:
        self.name = name
        self.pause_s = pause_s  # between words
        self.ran: list[str] = []
        self.retired: list[str] = []
        self.hold: asyncio.Event | None = None
        self.cancelled = 0

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        words = str(request.parameters["prompt"]).split()
        try:
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        sent = []
        for word in words:
            if on_delta is not None:
                try:
                    await on_delta(word + " ")
                except StreamCancelled:
                    break
            sent.append(word)
            await asyncio.sleep(self.pause_s)
        self.ran.append(request.activation_id)
        now = int(time.time() * 1000)
        return ActivationResult(now, now + 1, 0, {"status": "success", "statusCode": 0,
                                                  "success": True,
                                                  "result": {"text": " ".join(sent),
                                                             "invoker": self.name}},
                                [f"{self.name}: ran"], [{"key": "startKind", "value": "warm"}])

    async def retire(self, name: QualifiedName) -> None:
        self.retired.append(str(name))

    def prepare(self, function: FunctionRef) -> None:
        pass

    def describe_function(self, function: FunctionRef) -> FunctionView:
        return FunctionView([], {"policy": "fixed"}, {"t0": 1.0})

    def snapshot(self) -> InvokerSnapshot:
        return InvokerSnapshot([{"container": f"{self.name}-c", "function": "guest/f0",
                                 "state": "warm", "pid": 1}], 1024, [])

    def metrics(self) -> MetricsText:
        return MetricsText("# TYPE q gauge\nq{function=\"f\"} 1\nup 1\n", "text/plain")


def function(index: int) -> FunctionRef:
    return FunctionRef(key=f"guest/f{index}@0.0.1:d", name=QualifiedName("guest", None,
                                                                         f"f{index}"),
                       adapter_dir=Path("/nonexistent"), memory_mb=256)


def request(index: int, prompt: str = "one two three", durable: bool = False
            ) -> ActivationRequest:
    return ActivationRequest(activation_id=f"a{index}-{time.monotonic_ns()}",
                             namespace="guest", name=f"f{index % 7}", version="0.0.1",
                             subject="guest", function=function(index % 7),
                             parameters={"prompt": prompt}, limits={"timeout": 60000},
                             received_at=time.time(), durable=durable)


@contextlib.asynccontextmanager
async def invoker_service(url: str, name: str, echo: EchoInvoker, max_inflight: int = 256
                          ) -> AsyncIterator[tuple[InvokerService, Client]]:
    nc = await nats.connect(url)
    try:
        async with InvokerService(nc, echo, name, max_inflight).serving() as service:
            yield service, nc
    finally:
        if not nc.is_closed:
            await nc.close()


@contextlib.asynccontextmanager
async def controller(url: str, invokers: int) -> AsyncIterator[BrokerInvoker]:
    nc = await nats.connect(url)
    try:
        async with BrokerInvoker(nc).connected() as client:
            await wait_for(lambda: len(client.live.live()) >= invokers)
            yield client
    finally:
        await nc.close()


async def wait_for(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_blocking_and_durable_runs_land_on_both_invokers(nats_url: str) -> None:
    a, b = EchoInvoker("a"), EchoInvoker("b")
    async with invoker_service(nats_url, "pa", a), invoker_service(nats_url, "pb", b), \
            controller(nats_url, 2) as client:
        blocking = await asyncio.gather(*(client.run(request(i)) for i in range(14)))
        durable = await asyncio.gather(*(client.run(request(i, durable=True))
                                         for i in range(14)))
    for result in [*blocking, *durable]:
        assert result.status_code == 0
        assert result.response["result"]["text"] == "one two three"
    ran_on = {r.response["result"]["invoker"] for r in blocking}
    assert ran_on == {"a", "b"}
    assert {r.response["result"]["invoker"] for r in durable} == {"a", "b"}
    assert len(a.ran) + len(b.ran) == 28


async def test_a_function_runs_on_its_home_invoker_each_time(nats_url: str) -> None:
    a, b = EchoInvoker("a"), EchoInvoker("b")
    async with invoker_service(nats_url, "ha", a), invoker_service(nats_url, "hb", b), \
            controller(nats_url, 2) as client:
        results = [await client.run(request(3)) for _ in range(5)]
    assert len({r.response["result"]["invoker"] for r in results}) == 1


async def test_deltas_stream_in_order_and_a_left_reader_stops_the_run(nats_url: str) -> None:
    echo = EchoInvoker("s", pause_s=0.5)  # the cancel is there before the last word
    async with invoker_service(nats_url, "sa", echo), controller(nats_url, 1) as client:
        deltas: list[str] = []

        async def sink(text: str) -> None:
            deltas.append(text)

        result = await client.run(request(1, "a b c d e f"), sink)
        assert "".join(deltas) == "a b c d e f "
        assert result.response["result"]["text"] == "a b c d e f"

        async def leaving(text: str) -> None:
            raise StreamCancelled("gone")

        stopped = await client.run(request(2, "a b c d e f"), leaving)
    # The invoker's sink stops at the first delta after the cancel: not all were generated.
    assert len(stopped.response["result"]["text"].split()) < 6


async def test_a_full_invoker_refuses_and_the_next_takes_it(nats_url: str) -> None:
    full, free = EchoInvoker("full"), EchoInvoker("free")
    async with invoker_service(nats_url, "fa", full, max_inflight=0), \
            invoker_service(nats_url, "fb", free), controller(nats_url, 2) as client:
        results = await asyncio.gather(*(client.run(request(i)) for i in range(7)))
    assert {r.response["result"]["invoker"] for r in results} == {"free"}
    assert full.ran == []


async def test_a_caller_giving_up_cancels_the_run_on_the_invoker(nats_url: str) -> None:
    echo = EchoInvoker("c")
    echo.hold = asyncio.Event()
    async with invoker_service(nats_url, "ca", echo), controller(nats_url, 1) as client:
        task = asyncio.create_task(client.run(request(1)))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: echo.cancelled == 1, 10)


async def test_reads_and_retire_reach_the_invokers(nats_url: str) -> None:
    a, b = EchoInvoker("a"), EchoInvoker("b")
    async with invoker_service(nats_url, "ra", a), invoker_service(nats_url, "rb", b), \
            controller(nats_url, 2) as client:
        await client.retire(QualifiedName("guest", None, "f1"))
        snapshot = client.snapshot()
        client.metrics()
        await wait_for(lambda: 'invoker="ra"' in client.metrics().body
                       and 'invoker="rb"' in client.metrics().body, 10)
        client.describe_function(function(0))
        await wait_for(lambda: client.describe_function(function(0)).keep_alive != {}, 10)
        view = client.describe_function(function(0))
    assert a.retired == b.retired == ["guest/f1"]
    assert sorted(c["invoker"] for c in snapshot.containers) == ["ra", "rb"]
    assert snapshot.pool_memory_mb == 2048
    assert len(view.instances) == 2 and "pid" not in view.instances[0]


async def test_a_durable_activation_on_a_dead_invoker_runs_on_another(nats_url: str) -> None:
    stuck, alive = EchoInvoker("stuck"), EchoInvoker("alive")
    stuck.hold = asyncio.Event()  # never set: it took the activation and never ends it
    async with invoker_service(nats_url, "da", alive), controller(nats_url, 1) as client:
        async with invoker_service(nats_url, "db", stuck) as (_, stuck_nc):
            await wait_for(lambda: len(client.live.live()) == 2)
            # Every durable activation placed while both live; those on `db` hang there.
            runs = [asyncio.create_task(client.run(request(i, durable=True)))
                    for i in range(7)]
            await wait_for(lambda: len(stuck.ran) == 0 and len(alive.ran) +
                           sum(1 for r in runs if not r.done()) == 7, 10)
            await asyncio.sleep(1)
            await stuck_nc.close()  # as killed: no ack, no more heartbeats
        results = await asyncio.wait_for(asyncio.gather(*runs), 90)
    assert {r.response["result"]["invoker"] for r in results} == {"alive"}
    assert stuck.ran == []


async def test_a_durable_result_that_never_comes_is_a_whisk_internal_error(
        nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RESULT_GRACE_S", 1.0)
    echo = EchoInvoker("w")
    echo.hold = asyncio.Event()  # set only once the controller gave up
    async with invoker_service(nats_url, "wa", echo), controller(nats_url, 1) as client:
        late = dataclasses.replace(request(1, durable=True), limits={"timeout": 100})
        result = await asyncio.wait_for(client.run(late), 60)
        echo.hold.set()
    assert result.status_code == 3
    assert result.response["result"]["error"] == \
        "The activation's result did not come in time."


class FailingEcho(EchoInvoker):
    """An invoker whose runs fail (its pool broke)."""

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        raise RuntimeError("the pool broke")


async def test_a_durable_run_failing_on_the_invoker_is_a_whisk_internal_error(
        nats_url: str) -> None:
    async with invoker_service(nats_url, "xa", FailingEcho("x")), \
            controller(nats_url, 1) as client:
        result = await asyncio.wait_for(client.run(request(1, durable=True)), 60)
    assert result.status_code == 3
    assert result.response["status"] == "whisk internal error"
