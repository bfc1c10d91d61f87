"""The invoker side of the broker on fakes of the NATS client: its fetch loop outlives the
broker's failures, and an activation whose run fails is answered and acked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from lorafaas.broker import service as service_module
from lorafaas.broker.codec import dumps, encode_request, loads
from lorafaas.broker.service import InvokerService
from lorafaas.broker.topology import consumer_name
from lorafaas.invoking.activations import ActivationRequest, FunctionRef
from lorafaas.names import QualifiedName
from tests.unit.test_invoker_seam import FakeInvoker


class FakeSubscription:
    """Fetches that fail once with a broker error, then give one message, then stop."""

    def __init__(self, owner: InvokerService) -> None:
        self.owner = owner
        self.fetches = 0

    async def fetch(self, batch: int, timeout: float) -> list[object]:
        self.fetches += 1
        if self.fetches == 1:
            raise nats.errors.ConnectionReconnectingError()
        if self.fetches == 2:
            return ["message"]
        self.owner.stopping = True
        raise nats.errors.TimeoutError()

    async def unsubscribe(self) -> None:
        pass


class FakeJetStream:
    """Binding fails once (the broker away), then binds the fake subscription."""

    def __init__(self) -> None:
        self.binds = 0
        self.subscription: FakeSubscription | None = None

    async def pull_subscribe_bind(self, durable: str, stream: str) -> FakeSubscription:
        self.binds += 1
        if self.binds == 1:
            raise nats.errors.NoServersError()
        assert self.subscription is not None
        return self.subscription


class FakeClient:
    """The NATS client: its JetStream, and the requests it sent (answered at once)."""

    def __init__(self) -> None:
        self.js = FakeJetStream()
        self.requests: list[tuple[str, bytes]] = []

    def jetstream(self) -> FakeJetStream:
        return self.js

    async def request(self, subject: str, body: bytes, timeout: float) -> None:
        self.requests.append((subject, body))


class FakeMsg:
    """A fetched activation, recording how it was settled."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")

    async def in_progress(self) -> None:
        pass


class BrokenInvoker(FakeInvoker):
    async def run(self, request: ActivationRequest, on_delta: Any = None) -> Any:
        raise RuntimeError("the pool broke")


def request() -> ActivationRequest:
    function = FunctionRef(key="guest/f@0.0.1:d", name=QualifiedName("guest", None, "f"),
                           adapter_dir=Path("/nonexistent"), memory_mb=256)
    return ActivationRequest(activation_id="a1", namespace="guest", name="f",
                             version="0.0.1", subject="guest", function=function,
                             parameters={"prompt": "p"}, limits={"timeout": 1000},
                             received_at=time.time(), durable=True)


def service(invoker: FakeInvoker) -> tuple[InvokerService, FakeClient]:
    client = FakeClient()
    served = InvokerService(client, invoker, "i1")  # type: ignore[arg-type]
    return served, client


async def test_the_fetch_loop_waits_out_broker_errors_and_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "FETCH_BACKOFF_S", (0.01,))
    served, client = service(FakeInvoker())
    client.js.subscription = FakeSubscription(served)
    taken: list[object] = []

    async def run_async(msg: object, owner: str) -> None:
        taken.append(msg)

    monkeypatch.setattr(served, "_run_async", run_async)
    await served._pull("i1")
    await asyncio.gather(*served.tasks)
    assert client.js.binds == 2 and client.js.subscription.fetches == 3
    assert taken == ["message"]  # fetched after both failures


async def test_a_failed_run_is_answered_as_a_whisk_internal_error_and_acked() -> None:
    served, client = service(BrokenInvoker())
    msg = FakeMsg(dumps({"request": encode_request(request()), "reply": "lorafaas.result.c.a1"}))
    await served._run_async(msg, "i1")  # type: ignore[arg-type]
    ((subject, body),) = client.requests
    result = loads(body)["result"]
    assert subject == "lorafaas.result.c.a1"
    assert result["status_code"] == 3
    assert result["response"]["status"] == "whisk internal error"
    assert msg.settled == ["ack"]


class HangingInvoker(FakeInvoker):
    """Takes a run and never ends it; tells when it started and when it was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, request: ActivationRequest, on_delta: Any = None) -> Any:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class PublishingClient(FakeClient):
    """Also publishes (its messages dropped)."""

    async def publish(self, subject: str, body: bytes, reply: str = "") -> None:
        pass


class CallMsg:
    """A `run` request, as the controller sends it."""

    reply = "lorafaas.reply.c.call"
    data = b""


async def test_a_stopped_run_handler_cancels_the_activation_it_runs() -> None:
    invoker = HangingInvoker()
    served = InvokerService(PublishingClient(), invoker, "i1")  # type: ignore[arg-type]
    handler = asyncio.create_task(served._run(CallMsg(),  # type: ignore[arg-type]
                                              {"call": "c1",
                                               "request": encode_request(request())}))
    await invoker.started.wait()
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert invoker.cancelled  # ended with its handler, not left running


class ConsumerInfo:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_a_failed_adoption_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    served, client = service(FakeInvoker())

    async def consumers_info(stream: str) -> list[ConsumerInfo]:
        return [ConsumerInfo(consumer_name("dead"))]

    client.js.consumers_info = consumers_info  # type: ignore[attr-defined]
    pulls: list[str] = []

    async def pull(owner: str) -> None:
        pulls.append(owner)
        if len(pulls) == 1:
            raise nats.errors.NoServersError()
        await asyncio.Event().wait()

    monkeypatch.setattr(served, "_pull", pull)
    await served._adopt_once()
    await asyncio.wait([served.adopted["dead"]])  # it failed
    await served._adopt_once()
    await asyncio.sleep(0)  # the new pull starts
    assert pulls == ["dead", "dead"] and not served.adopted["dead"].done()
    served.adopted["dead"].cancel()
    await asyncio.gather(served.adopted["dead"], return_exceptions=True)
