"""The runtime's HTTP server on a Unix socket: OpenWhisk's action protocol.

- `POST /init` `{"value": {"name", "main", "env"}}`: load the function (once; a second
  init is refused with 403). Answers `{"ok": true, "initBreakdown": {artifact: ms},
  "initMemory": {artifact: bytes}}`: each artifact loaded, its load time and the host
  memory it took (see `runtime.memory`; an artifact /proc could not size is left out).
- `POST /run` `{"value": {parameters}, "activation_id": ...}`: answers 200 with the
  action's result; a bad parameter gives a result `{"error": ...}` (an application error,
  as in OpenWhisk). Timings travel in the `X-LoRAFaaS-Metrics` header (JSON, ms).
  With `"stream": true` the answer is NDJSON: `{"delta": text}` lines as tokens come,
  then `{"result": ..., "timings": ...}`; the deltas add up to the result's text.
  A streamed generation is cancelled by `POST /cancel` `{"activation_id"}` (answers
  `{"cancelled": bool}`: whether one of that id was streaming) or when its reader closes
  the connection: it ends after the decode step running, its result with finish_reason
  "cancelled" and the usage and timings up to the cut.
  The batch form `{"batch": [{"value": {...}, "activation_id": ...}, ...]}` runs them as
  one batched generation and answers NDJSON `{"index", "result", "timings"}` lines, each
  as soon as its request ends (a short request does not wait for the longest).
  With `"logs": true` (on the body, or on the batch's requests) each answer carries
  `"logs"`: the lines that belong to its activation alone (`runtime.log_capture`), in
  OpenWhisk's format; a single answer is then the envelope `{"result", "timings",
  "logs"}` (the `X-LoRAFaaS-Envelope` header says so).
  With `"continuous": true` (either form, streamed or not) the request joins the
  container's continuous-batching engine (`runtime.continuous`) at its next decode step
  instead of waiting for the generation running; without it, generations run one after the
  other. The invoker sends every request of a container the same way (its batching mode).
- `POST /offload` and `POST /restore` (no body): move the function's own artifacts (adapter
  weights, cached buffers; never the shared backbone) to host memory, or back to accelerator
  memory, while the container keeps running. Each waits for a running generation to end and
  answers `{"moved": "host"|"accelerator", "bytes": int, "ms": float}` (bytes 0 when they
  were there already); 409 before /init. A /run on an offloaded function restores first and
  reports it in its timings as `restore` (ms, also counted in `ttft`).
- After the last /init or /run in flight ends, the container gives the allocator's free
  memory back to the system (`runtime.idle_trim`): an idle container holds what its
  artifacts need, not its busiest moment's heap.
- `GET /health`: `{"ok": true, "initialized": bool, "busyMs": float,
  "generations": int, "tier": "accelerator"|"host"|null, "artifactBytes": int,
  "acceleratorBytes": int}`: busyMs is the wall time spent generating since /init
  (metering); tier says where the function's own artifacts are, artifactBytes their size,
  acceleratorBytes what they hold in accelerator memory now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self

from aiohttp import web

from lorafaas.runtime.function import (
    LoadedFunction,
    RuntimePaths,
    attach_backbone,
    load_function,
)
from lorafaas.runtime.handler import LLM, run_handler
from lorafaas.runtime.idle_trim import IdleTrimmer, idle_trim_middleware
from lorafaas.runtime.log_capture import ACTIVATION, LogCapture
from lorafaas.runtime.memory import release_free_heap
from lorafaas.runtime.namespace import FunctionView
from lorafaas.runtime.request import GenerationRequest, RequestError, parse_request
from lorafaas.runtime.sampling import GREEDY_DEFAULTS
from lorafaas.runtime.streaming import IncrementalText
from lorafaas.runtime.user_code import apply_run_env
from lorafaas.wire.aio import drain
from lorafaas.wire.runtime_protocol import ENVELOPE_HEADER, METRICS_HEADER

logger = logging.getLogger(__name__)

function_key = web.AppKey("function", dict)
# What /run serves: the container's own function, or one function of a namespace container
# (`runtime.namespace_server`), whose requests all join the namespace's shared decode.
Served = LoadedFunction | FunctionView


def create_app(paths: RuntimePaths, client: str, libraries_ms: float,
               libraries_bytes: int | None = None,
               capture: LogCapture | None = None,
               generation_defaults: str = GREEDY_DEFAULTS) -> web.Application:
    """The runtime application for one container (`capture`: its log, for `"logs"`;
    `generation_defaults`: what requests sample with by default, see runtime.sampling)."""
    trimmer = IdleTrimmer(release_free_heap)
    app = web.Application(client_max_size=64 * 1024 * 1024,
                          middlewares=[idle_trim_middleware(trimmer)])
    app[function_key] = {"loaded": None, "backbone": None, "paths": paths, "client": client,
                         "libraries_ms": libraries_ms, "libraries_bytes": libraries_bytes,
                         "libraries_reported": False, "lock": asyncio.Lock(),
                         "capture": capture, "streams": {},
                         "generation_defaults": generation_defaults}
    app.add_routes([web.post("/init", handle_init), web.post("/run", handle_run),
                    web.post("/cancel", handle_cancel),
                    web.post("/offload", handle_move), web.post("/restore", handle_move),
                    web.get("/health", handle_health)])
    return app


async def handle_init(request: web.Request) -> web.Response:
    """Load artifacts: `{"stage": "prewarm"}` attaches the backbone only (a stem cell);
    otherwise the function's adapter, tokenizer and kernels (and the backbone if needed)."""
    state = request.app[function_key]
    body = await request.json()
    value = body.get("value") or {}
    async with state["lock"]:
        if state["loaded"] is not None or (value.get("stage") == "prewarm"
                                           and state["backbone"] is not None):
            return web.json_response({"error": "Cannot initialize the action more than once."},
                                     status=403)
        for key, env_value in (value.get("env") or {}).items():
            os.environ[str(key)] = str(env_value)
        try:
            breakdown, memory = await asyncio.to_thread(_initialize, state,
                                                        value.get("stage"))
        except Exception as error:
            logger.exception("init failed")
            return web.json_response({"error": f"initialization failed: {error}"}, status=502)
    if not state["libraries_reported"]:
        # The first init of a container reports the import of the libraries it paid for.
        # A function of the general path imported transformers and peft at its load: its
        # libraries step is both imports.
        breakdown = {**breakdown, "libraries": round(
            state["libraries_ms"] + breakdown.get("libraries", 0.0), 3)}
        if state["libraries_bytes"] is not None:
            memory = {**memory, "libraries": state["libraries_bytes"]
                      + memory.get("libraries", 0)}
        state["libraries_reported"] = True
    return web.json_response({"ok": True, "initBreakdown": breakdown, "initMemory": memory})


def _initialize(state: dict[str, Any], stage: str | None
                ) -> tuple[dict[str, float], dict[str, int]]:
    """Load what the stage needs; the load time (ms) and host bytes of each artifact."""
    if stage == "prewarm":
        backbone = state["backbone"] = attach_backbone(state["paths"], state["client"])
        memory = {} if backbone.attach_bytes is None else {"backbone": backbone.attach_bytes}
        return {"backbone": backbone.attach_ms}, memory
    loaded = load_function(state["paths"], state["client"], state["backbone"],
                           state["generation_defaults"])
    state["loaded"] = loaded
    return loaded.breakdown, loaded.memory


async def handle_run(request: web.Request) -> web.StreamResponse:
    """Run one activation; with `"stream": true` answer NDJSON lines as tokens come."""
    state = request.app[function_key]
    loaded: LoadedFunction | None = state["loaded"]
    if loaded is None:
        return web.json_response({"error": "the action was not initialized"}, status=502)
    if loaded.attachment is not None and not await asyncio.to_thread(
            loaded.attachment.is_current):
        # CUDA IPC memory of a server that is gone: never compute on it. The invoker
        # replaces this container (it lacks a channel on the restarted server).
        return web.json_response({"error": "the backbone server restarted: this container's "
                                           "backbone memory is gone"}, status=503)
    body = await request.json()
    capture: LogCapture | None = state["capture"] if wants_logs(body) else None
    join = bool(body.get("continuous"))
    if loaded.handler is not None:  # the owner's main(args, llm) runs instead
        return await _run_handler(state, loaded, body, join, capture)
    if isinstance(body.get("batch"), list):
        if join:
            return await _run_batch(request, loaded, body, join, capture)
        async with state["lock"]:
            return await _run_batch(request, loaded, body, join, capture)
    with ActivationLog(capture) as log:
        return await _run_one(request, loaded, body, log)


def wants_logs(body: dict[str, Any]) -> bool:
    """Whether the answer is to carry the activations' lines (`"logs": true`, on the body
    or on the requests of its batch)."""
    batch = body.get("batch")
    return bool(body.get("logs")) or (isinstance(batch, list) and any(
        isinstance(item, dict) and item.get("logs") for item in batch))


async def _run_one(request: web.Request, loaded: Served, body: dict[str, Any],
                   log: ActivationLog) -> web.StreamResponse:
    """The single form of /run (streamed or not, joined or not)."""
    state = request.app[function_key]
    join = bool(body.get("continuous"))
    value: dict[str, Any] = body.get("value") or {}
    try:
        generation_request = parse_request(value, int(body.get("max_tokens_limit", 4096)),
                                           loaded.render_chat, loaded.sampling)
    except RequestError as error:
        # In the activation's logs: why its result is an error.
        logger.warning("activation %s refused: %s", body.get("activation_id"), error)
        return _answer({"error": str(error)}, {}, log)
    activation_id = str(body.get("activation_id", ""))
    if join and body.get("stream"):
        return await _run_streamed(request, loaded, generation_request, log, activation_id,
                                   join)
    if join:
        result, timings = await asyncio.wrap_future(loaded.continuous().submit(
            generation_request))
        return _ended(result, timings, log)
    async with state["lock"]:
        if body.get("stream"):
            return await _run_streamed(request, loaded, generation_request, log,
                                       activation_id)
        result, timings = await asyncio.to_thread(loaded.run, generation_request)
    return _ended(result, timings, log)


async def _run_handler(state: dict[str, Any], loaded: LoadedFunction, body: dict[str, Any],
                       join: bool, capture: LogCapture | None) -> web.Response:
    """One activation of the function's own handler (`runtime.handler`); its `llm` calls
    join the continuous engine (`join`) or run one at a time under the container's lock."""
    limit = int(body.get("max_tokens_limit", 4096))
    value, entry = body.get("value"), loaded.handler
    assert entry is not None
    generate = (lambda r: loaded.continuous().submit(r).result()) if join else loaded.run
    with ActivationLog(capture) as log:
        apply_run_env(body)
        llm = LLM(lambda v: parse_request(v, limit, loaded.render_chat, loaded.sampling),
                  generate, exclusive=not join)
        async with contextlib.nullcontext() if join else state["lock"]:
            outcome, timings = await asyncio.to_thread(
                run_handler, entry, value if isinstance(value, dict) else {}, llm)
        return _ended(outcome.result, timings, log, outcome.developer_error)


class ActivationLog:
    """One activation's own lines of the container's log, when its /run asked for them.

    `owns_context`: the caller's context handles this activation alone (the single form),
    so what it and its worker threads write is this activation's; a batch's requests share
    one context, so each of them owns its lines only inside `owning()`."""

    def __init__(self, capture: LogCapture | None, owns_context: bool = True) -> None:
        self._capture = capture
        self._key = capture.begin() if capture is not None else 0
        self._token = ACTIVATION.set(self._key) if capture is not None and owns_context \
            else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.lines()  # a failed activation ends too: its lines are not held for ever

    @contextlib.contextmanager
    def owning(self) -> Iterator[None]:
        """What the block writes is this activation's."""
        token = ACTIVATION.set(self._key)
        try:
            yield
        finally:
            ACTIVATION.reset(token)

    def lines(self) -> list[str] | None:
        """The activation's lines so far, once: it ends (None: none asked for)."""
        capture, self._capture = self._capture, None
        if self._token is not None:
            ACTIVATION.reset(self._token)
            self._token = None
        return None if capture is None else capture.end(self._key)

    def add_to(self, message: dict[str, Any]) -> dict[str, Any]:
        """A result line of the streamed or batch form, with the logs when asked for."""
        lines = self.lines()
        return message if lines is None else {**message, "logs": lines}


def _ended(result: dict[str, Any], timings: dict[str, float],
           log: ActivationLog, developer_error: bool = False) -> web.Response:
    """The answer of an activation that ran. No OpenWhisk log sentinel is printed: the
    invoker takes an activation's lines from this answer, not from the engine's log."""
    return _answer(result, timings, log, developer_error)


def _answer(result: dict[str, Any], timings: dict[str, float],
            log: ActivationLog, developer_error: bool = False) -> web.Response:
    """A single /run's answer: the bare result, or with logs asked for, the envelope (with
    `developerError` when a handler's result was not a dictionary)."""
    headers = {METRICS_HEADER: json.dumps(timings)}
    lines = log.lines()
    if lines is None:
        return web.json_response(result, headers=headers)
    envelope: dict[str, Any] = {"result": result, "timings": timings, "logs": lines}
    if developer_error:
        envelope["developerError"] = True
    return web.json_response(envelope, headers={**headers, ENVELOPE_HEADER: "1"})


async def handle_cancel(request: web.Request) -> web.Response:
    """Cancel the streamed generation of an activation (see the module doc)."""
    body = await request.json()
    streams: dict[str, GenerationRequest] = request.app[function_key]["streams"]
    streaming = streams.get(str(body.get("activation_id", "")))
    if streaming is not None:
        streaming.cancelled.set()
        logger.info("activation %s cancelled: its reader left", body.get("activation_id"))
    return web.json_response({"cancelled": streaming is not None})


async def _run_streamed(request: web.Request, loaded: Served,
                        generation_request: GenerationRequest, log: ActivationLog,
                        activation_id: str, join: bool = False) -> web.StreamResponse:
    """`_stream_lines`, cancellable by `/cancel` while it runs."""
    streams: dict[str, GenerationRequest] = request.app[function_key]["streams"]
    streams[activation_id] = generation_request
    try:
        return await _stream_lines(request, loaded, generation_request, log, join)
    finally:
        streams.pop(activation_id, None)


async def _stream_lines(request: web.Request, loaded: Served,
                        generation_request: GenerationRequest, log: ActivationLog,
                        join: bool) -> web.StreamResponse:
    """Stream `{"delta": text}` lines, then one `{"result": ..., "timings": ...}` line
    (`join`: in the continuous-batching engine). A reader that leaves cancels the
    generation, which ends after its decode step, before the next request runs."""
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[list[int]] = asyncio.Queue()

    def sink(ids: list[int]) -> None:  # called on the generation thread
        loop.call_soon_threadsafe(tokens.put_nowait, ids)

    running: asyncio.Future[tuple[dict[str, Any], dict[str, float]]] = (
        asyncio.wrap_future(loaded.continuous().submit(generation_request, sink)) if join
        else asyncio.ensure_future(asyncio.to_thread(loaded.run, generation_request, sink)))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    text = IncrementalText(loaded.tokenizer, generation_request.stop)
    try:
        await response.prepare(request)
        async for token_ids in drain(tokens, running):
            if delta := text.add(token_ids):
                await response.write(_line({"delta": delta}))
    except (ConnectionError, asyncio.CancelledError):
        generation_request.cancelled.set()
        # Held (the lock, the engine's row) until the step running ends: then it is free.
        await asyncio.shield(asyncio.wait([running]))
        raise
    result, timings = running.result()
    if rest := text.finish(result["text"]):
        await response.write(_line({"delta": rest}))
    await response.write(_line(log.add_to({"result": result, "timings": timings})))
    await response.write_eof()
    return response


async def _run_batch(request: web.Request, loaded: Served, body: dict[str, Any],
                     join: bool, capture: LogCapture | None) -> web.StreamResponse:
    """One batched generation (`join`: each request joins the continuous-batching engine);
    a `{"index", "result", "timings"}` line as each request ends."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(ActivationLog(capture, owns_context=False))
                for _ in body["batch"]]
        return await _run_batch_logged(request, loaded, body, join, logs)


async def _run_batch_logged(request: web.Request, loaded: Served,
                            body: dict[str, Any], join: bool,
                            logs: list[ActivationLog]) -> web.StreamResponse:
    """`_run_batch` with each request's log."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    limit = int(body.get("max_tokens_limit", 4096))
    accepted: list[tuple[int, GenerationRequest]] = []
    for index, item in enumerate(body["batch"]):
        try:
            accepted.append((index, parse_request(item.get("value") or {}, limit,
                                                  loaded.render_chat, loaded.sampling)))
        except RequestError as error:  # refused alone; the others still run
            with logs[index].owning():
                logger.warning("activation %s refused: %s", item.get("activation_id"), error)
            await response.write(_line(logs[index].add_to(
                {"index": index, "result": {"error": str(error)}, "timings": {}})))
    outcomes = _joined(loaded, accepted) if join else _batched(loaded, accepted)
    async for index, result, timings in outcomes:
        await response.write(_line(logs[index].add_to(
            {"index": index, "result": result, "timings": timings})))
    await response.write_eof()
    return response


Outcome = tuple[int, dict[str, Any], dict[str, float]]  # request index, result, timings


async def _batched(loaded: Served,
                   accepted: list[tuple[int, GenerationRequest]]) -> AsyncIterator[Outcome]:
    """The requests as one batched generation on a worker thread, each as it ends."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Queue[Outcome] = asyncio.Queue()

    def generate_all() -> None:  # on a worker thread
        for position, result, timings in loaded.run_batch([r for _, r in accepted]):
            loop.call_soon_threadsafe(finished.put_nowait, (accepted[position][0], result,
                                                            timings))

    running = asyncio.ensure_future(asyncio.to_thread(generate_all))
    async for outcome in drain(finished, running):
        yield outcome
    await running  # re-raises a failure of the generation


async def _joined(loaded: Served,
                  accepted: list[tuple[int, GenerationRequest]]) -> AsyncIterator[Outcome]:
    """The requests joined to the continuous-batching engine together (so they are
    prefilled together), each as it ends."""
    engine = loaded.continuous()
    waiting = {asyncio.wrap_future(engine.submit(r)): index for index, r in accepted}
    while waiting:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for future in sorted(done, key=waiting.__getitem__):
            result, timings = future.result()  # re-raises a failure of the engine
            yield waiting.pop(future), result, timings


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def handle_move(request: web.Request) -> web.Response:
    """Offload the function's artifacts to host memory, or restore them (by the path)."""
    state = request.app[function_key]
    async with state["lock"]:  # never while a generation uses the tensors
        loaded: LoadedFunction | None = state["loaded"]
        if loaded is None:
            return web.json_response({"error": "the action was not initialized"}, status=409)
        step = loaded.tiers.offload if request.path == "/offload" else loaded.tiers.restore
        engine = loaded.engine  # its decode holds no lock: wait for it to be idle
        move = await asyncio.to_thread(step if engine is None else
                                       functools.partial(engine.exclusive, step))
    # Debug only: the invoker reads a container's log into its activations' logs.
    logger.debug("%s: %d bytes in %.1f ms", request.path.lstrip("/"), move.bytes, move.ms)
    return web.json_response(move.as_json())


async def handle_health(request: web.Request) -> web.Response:
    """Liveness, whether /init has run, the backbone's busy time here (metering), and where
    the function's own artifacts are."""
    loaded: LoadedFunction | None = request.app[function_key]["loaded"]
    return web.json_response({"ok": True, "initialized": loaded is not None,
                              "busyMs": loaded.busy_ms if loaded is not None else 0.0,
                              "generations": loaded.generations if loaded is not None else 0,
                              "tier": loaded.tiers.tier if loaded is not None else None,
                              "artifactBytes": loaded.tiers.bytes if loaded is not None else 0,
                              "acceleratorBytes":
                                  loaded.tiers.accelerator_bytes if loaded is not None else 0})
