"""The invoker side of the broker: takes what controllers send to this invoker and drives the
invoker behind the seam (a `LocalInvoker` in `lorafaas serve --role invoker`).

Blocking and streamed activations come by request on `lorafaas.invoker.<id>.run` and are
answered on the caller's inbox (`accepted` or `refused`, `delta`s, `alive` every
`ALIVE_S`, then `result` or `error`); non-blocking ones are fetched from this invoker's
durable consumer, kept in progress while they run, and acked once the controller that
placed them answers that their record is stored (or is gone: its pending row then runs them
again). The consumers of invokers that stopped heartbeating are adopted, so that what a
dead invoker took and did not finish runs here after its `ack_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from lorafaas.broker.codec import (
    Json,
    decode_function,
    decode_request,
    dumps,
    encode_metrics,
    encode_result,
    encode_snapshot,
    encode_view,
    loads,
)
from lorafaas.broker.heartbeats import Heartbeat, LiveInvokers, beating
from lorafaas.broker.topology import (
    ACK_WAIT_S,
    HEARTBEAT_S,
    STREAM,
    consumer_name,
    consumer_owner,
    ensure_consumer,
    ensure_stream,
    heartbeat_bucket,
    invoker_subject,
)
from lorafaas.invoking.activations import ActivationRequest, ActivationResult, StreamCancelled
from lorafaas.invoking.client import InvokerClient
from lorafaas.names import QualifiedName

logger = logging.getLogger(__name__)

ALIVE_S = 2.0  # a caller unanswered for several of these takes the invoker for dead
MAX_INFLIGHT = 256  # activations run or queued at once; beyond, `run` is refused
RESULT_TIMEOUT_S = 30.0  # how long a controller may take to store a record
DRAIN_S = 30.0  # how long a stopping invoker lets its activations end
FETCH_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # the waits after successive failed fetches
DELIVERY_TRIES = 3  # a result its controller does not answer is sent again, not rerun
WHISK_ERROR = 3  # OpenWhisk's "whisk internal error"


@dataclass
class Call:
    """A blocking or streamed activation in flight here."""

    task: asyncio.Task[Any] | None = None
    stream_cancelled: bool = False  # the caller's reader left: the next delta stops it


@dataclass
class Capacity:
    """Activations in flight against the most this invoker takes."""

    limit: int
    inflight: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)

    def free(self) -> int:
        """How many more it takes now."""
        return max(0, self.limit - self.inflight)

    @contextlib.contextmanager
    def taken(self) -> Any:
        """Count one activation while it runs."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
            self.freed.set()


class InvokerService:
    """Serves one invoker's subjects and consumer on the broker."""

    def __init__(self, nc: Client, invoker: InvokerClient, invoker_id: str,
                 max_inflight: int = MAX_INFLIGHT) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.invoker = invoker
        self.invoker_id = invoker_id
        self.capacity = Capacity(max_inflight)
        self.calls: dict[str, Call] = {}
        self.live = LiveInvokers()
        self.tasks: set[asyncio.Task[Any]] = set()  # activations running
        self.adopted: dict[str, asyncio.Task[None]] = {}  # dead invokers' consumers pulled
        self.stopping = False

    def heartbeat(self) -> Heartbeat:
        """This invoker's report now."""
        return Heartbeat(self.invoker_id, time.time(), self.capacity.inflight,
                         self.capacity.limit, self.invoker.snapshot())

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[InvokerService]:
        """Subscribe, pull and heartbeat until exit; then let what runs end (bounded)."""
        await ensure_stream(self.js)
        await ensure_consumer(self.js, self.invoker_id)
        kv = await heartbeat_bucket(self.js)
        subscription = await self.nc.subscribe(invoker_subject(self.invoker_id, "*"),
                                               cb=self._on_message)
        loops = [self._loop(self._pull(self.invoker_id)), self._loop(self._adopt_loop())]
        try:
            async with self.live.watching(kv), beating(kv, self.heartbeat):
                logger.info("invoker %s serves on the broker", self.invoker_id)
                yield self
                self.stopping = True  # refuses new runs while the heartbeat is deleted
        finally:
            self.stopping = True
            for task in [*loops, *self.adopted.values()]:
                task.cancel()
            await _gather(loops + list(self.adopted.values()))
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=DRAIN_S)
            await _gather(list(self.tasks), cancel=True)
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    def _loop(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A background loop of this service, whose failure is logged when it ends."""
        task = asyncio.create_task(coroutine)
        task.add_done_callback(self._loop_ended)
        return task

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("invoker %s: a loop stopped", self.invoker_id, exc_info=error)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _on_message(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        handler = self._handlers().get(verb)
        if handler is None:
            return
        try:
            body = loads(msg.data)
        except (ValueError, TypeError):
            logger.warning("invoker %s: unreadable %s message", self.invoker_id, verb)
            return
        self._spawn(handler(msg, body))

    def _handlers(self) -> dict[str, Callable[[Msg, Json], Awaitable[None]]]:
        return {"run": self._run, "cancel": self._cancel, "retire": self._retire,
                "prepare": self._prepare, "describe": self._describe,
                "snapshot": self._snapshot, "metrics": self._metrics}

    # --- blocking and streamed activations ---------------------------------------------

    async def _run(self, msg: Msg, body: Json) -> None:
        reply = msg.reply
        if not reply:
            return
        if self.stopping or self.capacity.free() == 0:
            await self.nc.publish(reply, dumps({"kind": "refused"}))
            return
        call_id = str(body["call"])
        request = decode_request(body["request"])
        call = Call()
        self.calls[call_id] = call
        with self.capacity.taken():
            try:
                await self.nc.publish(reply, dumps({"kind": "accepted"}))
                sink = self._sink(reply, call) if body.get("stream") else None
                call.task = asyncio.create_task(self.invoker.run(request, sink))
                end = await self._await_alive(call.task, reply)
            except asyncio.CancelledError:
                # Stopping: cancelling the wait leaves what it waits for running.
                if call.task is not None:
                    call.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await call.task
                raise
            finally:
                self.calls.pop(call_id, None)
        await self.nc.publish(reply, dumps(end))

    def _sink(self, reply: str, call: Call) -> Callable[[str], Awaitable[None]]:
        async def on_delta(text: str) -> None:
            if call.stream_cancelled:
                raise StreamCancelled("the caller's reader left")
            await self.nc.publish(reply, dumps({"kind": "delta", "text": text}))
        return on_delta

    async def _await_alive(self, task: asyncio.Task[Any], reply: str) -> Json:
        """The run's end marker, telling the caller it is alive meanwhile."""
        while True:
            done, _ = await asyncio.wait([task], timeout=ALIVE_S)
            if done:
                break
            await self.nc.publish(reply, dumps({"kind": "alive"}))
        if task.cancelled():
            return {"kind": "error", "message": "cancelled"}
        error = task.exception()
        if error is not None:
            logger.error("invoker %s: activation failed", self.invoker_id, exc_info=error)
            return {"kind": "error", "message": f"{type(error).__name__}: {error}"}
        return {"kind": "result", "result": encode_result(task.result())}

    async def _cancel(self, msg: Msg, body: Json) -> None:
        call = self.calls.get(str(body.get("call")))
        if call is None:
            return
        if body.get("how") == "stream":
            call.stream_cancelled = True
        elif call.task is not None:
            call.task.cancel()  # the caller gave up: a request still queued is withdrawn

    # --- non-blocking activations --------------------------------------------------------

    async def _pull(self, owner: str) -> None:
        """Fetch the activations of `owner`'s consumer while there is room for them; a
        failing broker is waited out (the heartbeat goes on, so nothing else takes them)."""
        failures = 0
        subscription: JetStreamContext.PullSubscription | None = None
        try:
            while not self.stopping:
                if self.capacity.free() == 0:
                    self.capacity.freed.clear()
                    await self.capacity.freed.wait()
                    continue
                try:
                    if subscription is None:
                        subscription = await self.js.pull_subscribe_bind(
                            consumer_name(owner), STREAM)
                    # One at a time: a fetch of several waits out its timeout to fill up.
                    messages = await subscription.fetch(1, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                except nats.errors.Error as error:
                    wait_s = FETCH_BACKOFF_S[min(failures, len(FETCH_BACKOFF_S) - 1)]
                    failures += 1
                    logger.warning("invoker %s: fetch from %s failed (%s); again in %.1f s",
                                   self.invoker_id, consumer_name(owner), error, wait_s)
                    await asyncio.sleep(wait_s)
                    continue
                failures = 0
                for message in messages:
                    self._spawn(self._run_async(message, owner))
        finally:
            if subscription is not None:
                with contextlib.suppress(nats.errors.Error):
                    await subscription.unsubscribe()

    async def _run_async(self, msg: Msg, owner: str) -> None:
        try:
            body = loads(msg.data)
            request, reply = decode_request(body["request"]), str(body["reply"])
        except (ValueError, KeyError, TypeError):
            logger.exception("invoker %s: unreadable activation dropped", self.invoker_id)
            await msg.term()
            return
        keeping = asyncio.create_task(_keep_in_progress(msg))
        try:
            try:
                with self.capacity.taken():
                    result = await self.invoker.run(request)
            except Exception as error:  # recorded as the platform's failure, not run again
                logger.error("invoker %s: activation %s failed", self.invoker_id,
                             request.activation_id, exc_info=error)
                result = whisk_error(request, f"The invoker failed: {type(error).__name__}")
            if owner != self.invoker_id:
                logger.info("activation %s of dead invoker %s ran on %s",
                            request.activation_id, owner, self.invoker_id)
            await self._deliver(msg, reply, dumps({"result": encode_result(result)}),
                                request.activation_id)
        finally:
            keeping.cancel()

    async def _deliver(self, msg: Msg, reply: str, body: bytes, activation_id: str) -> None:
        """Hand the result to its controller; ack once it is stored (or nobody waits). One
        its controller does not answer is sent again, and then acked: it is not run again,
        which would count towards the stream's deliveries (the controller's own wait runs
        out and records the failure)."""
        for _ in range(DELIVERY_TRIES):
            try:
                await self.nc.request(reply, body, timeout=RESULT_TIMEOUT_S)
                break
            except nats.errors.NoRespondersError:
                logger.warning("activation %s: its controller is gone; its pending row runs "
                               "it again", activation_id)
                break
            except nats.errors.TimeoutError:
                logger.warning("activation %s: its controller did not answer",
                               activation_id)
        with contextlib.suppress(nats.errors.Error):
            await msg.ack()

    async def _adopt_loop(self) -> None:
        """Pull from the consumers of invokers not heard from; leave those that are back."""
        while True:
            await asyncio.sleep(HEARTBEAT_S * 2)
            with contextlib.suppress(nats.errors.Error):
                await self._adopt_once()

    async def _adopt_once(self) -> None:
        live = set(self.live.live_ids()) | {self.invoker_id}
        owners = {consumer_owner(info.name or "")
                  for info in await self.js.consumers_info(STREAM)}
        for owner in [o for o, task in self.adopted.items() if task.done()]:
            del self.adopted[owner]  # it failed (logged): adopted again below
        for owner in sorted(o for o in owners if o and o not in live):
            if owner not in self.adopted:
                logger.info("invoker %s adopts the activations of %s", self.invoker_id,
                            owner)
                self.adopted[owner] = self._loop(self._pull(owner))
        for owner in [o for o in self.adopted if o in live or o not in owners]:
            self.adopted.pop(owner).cancel()

    # --- reads and control ---------------------------------------------------------------

    async def _retire(self, msg: Msg, body: Json) -> None:
        name = body["name"]
        await self.invoker.retire(QualifiedName(name["namespace"], name["package"],
                                                name["name"]))
        await self._answer(msg, {})

    async def _prepare(self, msg: Msg, body: Json) -> None:
        self.invoker.prepare(decode_function(body["function"]))

    async def _describe(self, msg: Msg, body: Json) -> None:
        view = self.invoker.describe_function(decode_function(body["function"]))
        await self._answer(msg, encode_view(view))

    async def _snapshot(self, msg: Msg, body: Json) -> None:
        await self._answer(msg, encode_snapshot(self.invoker.snapshot()))

    async def _metrics(self, msg: Msg, body: Json) -> None:
        await self._answer(msg, encode_metrics(self.invoker.metrics()))

    async def _answer(self, msg: Msg, value: Json) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, dumps(value))


async def _keep_in_progress(msg: Msg) -> None:
    """Tell the stream the activation still runs, so it is not delivered again meanwhile."""
    while True:
        await asyncio.sleep(ACK_WAIT_S / 3)
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()


async def _gather(tasks: list[asyncio.Task[Any]], cancel: bool = False) -> None:
    for task in tasks:
        if cancel:
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def whisk_error(request: ActivationRequest, message: str) -> ActivationResult:
    """A platform failure, recorded as OpenWhisk's "whisk internal error"."""
    now = int(time.time() * 1000)
    logger.warning("activation %s: %s", request.activation_id, message)
    return ActivationResult(
        now, now, WHISK_ERROR,
        {"status": "whisk internal error", "statusCode": WHISK_ERROR, "success": False,
         "result": {"error": message}}, [],
        [{"key": "path", "value": str(request.function.name)},
         {"key": "kind", "value": request.function.kind},
         {"key": "limits", "value": request.limits},
         {"key": "waitTime", "value": max(0, now - int(request.received_at * 1000))}])
