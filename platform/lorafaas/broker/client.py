"""The controller's `InvokerClient` over the broker (`lorafaas serve --role controller`).

An activation goes to the invokers `Placer.order` names, the balancer's choice first (the
home invoker refined by locality and load), the next when one refuses or does not answer.
A blocking or streamed one is a request on the invoker's `run` subject whose replies
(deltas, alive beats, the end marker) come on this client's inbox; a caller that gives up
sends `cancel`. A durable one (its pending row is written: non-blocking) is published to
the work stream and its result comes back by request, answered once the task that awaited
it (the controller's, which stores the record) has ended, so that the invoker acks after
the record is written.

Reads are synchronous, as the seam's: `snapshot` merges the invokers' latest heartbeats;
`describe_function` and `metrics` answer from what the invokers last answered (each read
asks again, in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from lorafaas.broker.codec import (
    Json,
    decode_metrics,
    decode_result,
    decode_view,
    dumps,
    encode_function,
    encode_request,
    loads,
)
from lorafaas.broker.heartbeats import LiveInvokers
from lorafaas.broker.metrics_text import merge_metrics
from lorafaas.broker.placing import Placer
from lorafaas.broker.service import ALIVE_S, RESULT_TIMEOUT_S, whisk_error
from lorafaas.broker.topology import (
    ACK_WAIT_S,
    MAX_DELIVER,
    async_subject,
    ensure_stream,
    heartbeat_bucket,
    invoker_subject,
    result_subject,
)
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
    StreamCancelled,
)
from lorafaas.invoking.client import FunctionView, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName

logger = logging.getLogger(__name__)

ACCEPT_TIMEOUT_S = 5.0  # an invoker that does not take a run in this long is passed over
SILENCE_S = ALIVE_S * 5  # an invoker running an activation and silent this long is dead
READ_TIMEOUT_S = 5.0
# Beyond its action's timeout, how long a durable activation's result may take to come:
# past it, the invoker is lost (the stream redelivers each delivery after `ACK_WAIT_S`).
RESULT_GRACE_S = ACK_WAIT_S * MAX_DELIVER
NO_INVOKER_WAIT_S = 30.0  # how long an activation waits for a live invoker


class Refused(Exception):
    """The invoker did not take the activation (full, stopping, or not there)."""


class Lost(Exception):
    """The invoker took the activation and went silent."""

    def __init__(self, streamed: bool) -> None:
        super().__init__("the invoker went silent")
        self.streamed = streamed  # deltas reached the caller: it cannot run again unseen


@dataclass
class AsyncWait:
    """A durable activation placed on the stream: its result, and who awaits it."""

    result: asyncio.Future[ActivationResult]
    waiter: asyncio.Task[Any] | None  # the task that stores its record


class BrokerInvoker:
    """The invokers behind the broker, as one `InvokerClient`."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.client_id = uuid.uuid4().hex[:16]
        self.placer = Placer()
        self.live = LiveInvokers(follower=self.placer)
        self._calls: dict[str, asyncio.Queue[Msg]] = {}
        self._async: dict[str, AsyncWait] = {}
        self._views: dict[str, FunctionView] = {}  # function key -> its latest view
        self._metrics: dict[str, MetricsText] = {}  # invoker -> its latest metrics
        self._background: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[BrokerInvoker]:
        """Subscribe to this client's inboxes and follow the heartbeats until exit."""
        await ensure_stream(self.js)
        kv = await heartbeat_bucket(self.js)
        replies = await self.nc.subscribe(f"lorafaas.reply.{self.client_id}.*",
                                          cb=self._on_reply)
        results = await self.nc.subscribe(f"lorafaas.result.{self.client_id}.*",
                                          cb=self._on_result)
        try:
            async with self.live.watching(kv):
                yield self
        finally:
            for subscription in (replies, results):
                with contextlib.suppress(nats.errors.Error):
                    await subscription.unsubscribe()
            for task in list(self._background):
                task.cancel()

    # --- activations -------------------------------------------------------------------

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        """Run the activation on an invoker, the balancer's first (see the module doc)."""
        order = await self._placement(request.function)
        if not order:
            return whisk_error(request, "No invoker is live to run the action.")
        try:
            return await self._run_in_order(request, order, on_delta)
        finally:
            self.placer.ended(order[0])

    async def _run_in_order(self, request: ActivationRequest, order: list[str],
                            on_delta: DeltaSink | None) -> ActivationResult:
        if request.durable and on_delta is None:
            return await self._run_durable(request, order[0])
        lost_once = False
        for invoker_id in order:
            try:
                return await self._run_on(invoker_id, request, on_delta)
            except Refused:
                continue
            except Lost as lost:
                logger.warning("activation %s: invoker %s went silent", request.activation_id,
                               invoker_id)
                if lost.streamed or lost_once:
                    break
                lost_once = True  # nothing reached the caller: once more, elsewhere
        return whisk_error(request, "The invoker running the action was lost.")

    async def _placement(self, function: FunctionRef) -> list[str]:
        deadline = time.monotonic() + NO_INVOKER_WAIT_S
        while not (order := self.placer.order(function)):
            if time.monotonic() > deadline:
                return []
            await asyncio.sleep(0.2)
        return order

    async def _run_on(self, invoker_id: str, request: ActivationRequest,
                      on_delta: DeltaSink | None) -> ActivationResult:
        call = uuid.uuid4().hex
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._calls[call] = queue
        body = {"call": call, "request": encode_request(request), "stream": on_delta is not None}
        try:
            await self.nc.publish(invoker_subject(invoker_id, "run"), dumps(body),
                                  reply=f"lorafaas.reply.{self.client_id}.{call}")
            first = await _next(queue, ACCEPT_TIMEOUT_S)
            if first is None or _no_responders(first) or \
                    loads(first.data).get("kind") != "accepted":
                raise Refused(invoker_id)
            return await self._follow(invoker_id, call, queue, on_delta)
        except asyncio.CancelledError:
            # The caller gave up its wait: a request still queued there is withdrawn.
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(invoker_subject(invoker_id, "cancel"),
                                      dumps({"call": call, "how": "task"}))
            raise
        finally:
            del self._calls[call]

    async def _follow(self, invoker_id: str, call: str, queue: asyncio.Queue[Msg],
                      on_delta: DeltaSink | None) -> ActivationResult:
        streamed = False
        while True:
            reply = await _next(queue, SILENCE_S)
            if reply is None:
                raise Lost(streamed)
            message = loads(reply.data)
            kind = message.get("kind")
            if kind == "delta" and on_delta is not None:
                try:
                    await on_delta(str(message["text"]))
                    streamed = True
                except StreamCancelled:  # the reader left: the invoker stops generating
                    await self.nc.publish(invoker_subject(invoker_id, "cancel"),
                                          dumps({"call": call, "how": "stream"}))
            elif kind == "result":
                return decode_result(message["result"])
            elif kind == "error":
                raise RuntimeError(f"invoker {invoker_id}: {message.get('message')}")

    async def _on_reply(self, msg: Msg) -> None:
        queue = self._calls.get(msg.subject.rsplit(".", 1)[-1])
        if queue is not None:
            queue.put_nowait(msg)

    async def _run_durable(self, request: ActivationRequest, invoker_id: str
                           ) -> ActivationResult:
        """Publish to the work stream; the result comes back by request (`_on_result`)."""
        wait = AsyncWait(asyncio.get_running_loop().create_future(), asyncio.current_task())
        self._async[request.activation_id] = wait
        try:
            await self.js.publish(async_subject(invoker_id), dumps({
                "request": encode_request(request),
                "reply": result_subject(self.client_id, request.activation_id)}))
            try:
                return await asyncio.wait_for(wait.result, result_wait_s(request))
            except TimeoutError:
                return whisk_error(request, "The activation's result did not come in time.")
        finally:
            # Kept until its waiter ends: a result delivered twice is answered "stored".
            if wait.waiter is None:
                self._async.pop(request.activation_id, None)
            else:
                wait.waiter.add_done_callback(
                    lambda _: self._async.pop(request.activation_id, None))

    async def _on_result(self, msg: Msg) -> None:
        wait = self._async.get(msg.subject.rsplit(".", 1)[-1])
        if wait is None:  # not placed by this run of this controller: its row resumes it
            await self._reply(msg, {"stored": False})
            return
        if not wait.result.done():
            try:
                wait.result.set_result(decode_result(loads(msg.data)["result"]))
            except (ValueError, KeyError, TypeError) as error:
                wait.result.set_exception(error)
        task = asyncio.create_task(self._answer_stored(msg, wait))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer_stored(self, msg: Msg, wait: AsyncWait) -> None:
        if wait.waiter is not None and wait.waiter is not asyncio.current_task():
            await asyncio.wait([wait.waiter], timeout=RESULT_TIMEOUT_S / 2)
        await self._reply(msg, {"stored": True})

    async def _reply(self, msg: Msg, value: Json) -> None:
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(msg.reply, dumps(value))

    # --- control and reads ---------------------------------------------------------------

    async def retire(self, name: QualifiedName) -> None:
        """Tell every live invoker that the action changed."""
        body = dumps({"name": {"namespace": name.namespace, "package": name.package,
                               "name": name.name}})
        await asyncio.gather(*(self._request(i, "retire", body) for i in self.live.live_ids()),
                             return_exceptions=True)

    def prepare(self, function: FunctionRef) -> None:
        """Tell the function's home invoker (fire and forget)."""
        order = self.placer.home_order(function)
        if order:
            self._spawn(self.nc.publish(invoker_subject(order[0], "prepare"),
                                        dumps({"function": encode_function(function)})))

    def describe_function(self, function: FunctionRef) -> FunctionView:
        """Its containers on every invoker, from their heartbeats; its policy and model
        from its home invoker's latest answer."""
        self._spawn(self._refresh_view(function))
        known = self._views.get(function.key, FunctionView([], {}, {}))
        instances = [{k: v for k, v in c.items() if k not in ("pid", "function", "kind")}
                     for c in self.snapshot().containers if c.get("function") == function.path]
        return FunctionView(instances, known.keep_alive, known.prefill_model)

    def snapshot(self) -> InvokerSnapshot:
        """Every live invoker's containers (each naming its invoker), and their pools."""
        live = self.live.live()
        containers = [{**c, "invoker": h.invoker_id} for h in live for c in h.snapshot.containers]
        sizes = [h.snapshot.pool_memory_mb for h in live]
        evictions = sorted((e for h in live for e in h.snapshot.evictions),
                           key=lambda e: e.at, reverse=True)
        total = None if not sizes or None in sizes else sum(s for s in sizes if s is not None)
        return InvokerSnapshot(containers, total, evictions)

    def metrics(self) -> MetricsText:
        """The live invokers' latest metrics, each series labelled with its invoker."""
        live = self.live.live_ids()
        self._spawn(self._refresh_metrics(live))
        return merge_metrics({i: self._metrics[i] for i in live if i in self._metrics})

    async def _refresh_view(self, function: FunctionRef) -> None:
        order = self.placer.home_order(function)
        if order:
            answer = await self._request(order[0], "describe",
                                         dumps({"function": encode_function(function)}))
            self._views[function.key] = decode_view(answer)

    async def _refresh_metrics(self, invokers: list[str]) -> None:
        for invoker_id in invokers:
            answer = await self._request(invoker_id, "metrics", b"{}")
            self._metrics[invoker_id] = decode_metrics(answer)

    async def _request(self, invoker_id: str, verb: str, body: bytes) -> Json:
        reply = await self.nc.request(invoker_subject(invoker_id, verb), body,
                                      timeout=READ_TIMEOUT_S)
        return loads(reply.data)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(_quiet_done)
        task.add_done_callback(self._background.discard)


def result_wait_s(request: ActivationRequest) -> float:
    """How long a durable activation's result is waited for."""
    return float(request.limits.get("timeout", 60_000)) / 1000 + RESULT_GRACE_S


def _quiet_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.debug("broker read failed: %s", error)


async def _next(queue: asyncio.Queue[Msg], timeout: float) -> Msg | None:
    """The next reply, or None when none came in `timeout` seconds."""
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


def _no_responders(msg: Msg) -> bool:
    return bool(msg.headers) and (msg.headers or {}).get("Status") == "503"
