"""The runtime's HTTP server on a Unix socket: OpenWhisk's action protocol.

- `POST /init` `{"value": {"name", "main", "env"}}`: load the function (once; a second
  init is refused with 403). Answers `{"ok": true, "initBreakdown": {artifact: ms}}`.
- `POST /run` `{"value": {parameters}, "activation_id": ...}`: answers 200 with the
  action's result; a bad parameter gives a result `{"error": ...}` (an application error,
  as in OpenWhisk). Timings travel in the `X-LoRAFaaS-Metrics` header (JSON, ms).
  With `"stream": true` the answer is NDJSON: `{"delta": text}` lines as tokens come,
  then `{"result": ..., "timings": ...}`; the deltas add up to the result's text.
  The batch form `{"batch": [{"value": {...}, "activation_id": ...}, ...]}` runs them as
  one batched generation and answers NDJSON `{"index", "result", "timings"}` lines, each
  as soon as its request ends (a short request does not wait for the longest).
- `GET /health`: `{"ok": true, "initialized": bool, "busyMs": float,
  "generations": int}`: busyMs is the wall time spent generating since /init (metering).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from aiohttp import web

from lorafaas.runtime.function import (
    LoadedFunction,
    RuntimePaths,
    attach_backbone,
    load_function,
)
from lorafaas.runtime.generation import GenerationRequest, RequestError, parse_request
from lorafaas.runtime.streaming import IncrementalText
from lorafaas.wire.aio import drain
from lorafaas.wire.runtime_protocol import METRICS_HEADER, SENTINEL

logger = logging.getLogger(__name__)

function_key = web.AppKey("function", dict)


def create_app(paths: RuntimePaths, client: str, libraries_ms: float) -> web.Application:
    """The runtime application for one container."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[function_key] = {"loaded": None, "backbone": None, "paths": paths, "client": client,
                         "libraries_ms": libraries_ms, "libraries_reported": False,
                         "lock": asyncio.Lock()}
    app.add_routes([web.post("/init", handle_init), web.post("/run", handle_run),
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
            breakdown = await asyncio.to_thread(_initialize, state, value.get("stage"))
        except Exception as error:
            logger.exception("init failed")
            return web.json_response({"error": f"initialization failed: {error}"}, status=502)
    if not state["libraries_reported"]:
        # The first init of a container reports the import of the libraries it paid for.
        breakdown = {"libraries": round(state["libraries_ms"], 3), **breakdown}
        state["libraries_reported"] = True
    return web.json_response({"ok": True, "initBreakdown": breakdown})


def _initialize(state: dict[str, Any], stage: str | None) -> dict[str, float]:
    if stage == "prewarm":
        state["backbone"] = attach_backbone(state["paths"], state["client"])
        return {"backbone": state["backbone"].attach_ms}
    loaded = load_function(state["paths"], state["client"], state["backbone"])
    state["loaded"] = loaded
    return loaded.breakdown


async def handle_run(request: web.Request) -> web.StreamResponse:
    """Run one activation; with `"stream": true` answer NDJSON lines as tokens come."""
    state = request.app[function_key]
    loaded: LoadedFunction | None = state["loaded"]
    if loaded is None:
        return web.json_response({"error": "the action was not initialized"}, status=502)
    body = await request.json()
    if isinstance(body.get("batch"), list):
        async with state["lock"]:
            return await _run_batch(request, loaded, body)
    value: dict[str, Any] = body.get("value") or {}
    try:
        generation_request = parse_request(value, int(body.get("max_tokens_limit", 4096)),
                                           loaded.render_chat)
    except RequestError as error:
        return web.json_response({"error": str(error)})
    async with state["lock"]:
        if body.get("stream"):
            return await _run_streamed(request, loaded, generation_request)
        result, timings = await asyncio.to_thread(loaded.run, generation_request)
    _end_of_activation()
    return web.json_response(result, headers={METRICS_HEADER: json.dumps(timings)})


async def _run_streamed(request: web.Request, loaded: LoadedFunction,
                        generation_request: GenerationRequest) -> web.StreamResponse:
    """Stream `{"delta": text}` lines, then one `{"result": ..., "timings": ...}` line."""
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[list[int]] = asyncio.Queue()

    def sink(ids: list[int]) -> None:  # called on the generation thread
        loop.call_soon_threadsafe(tokens.put_nowait, ids)

    running = asyncio.ensure_future(asyncio.to_thread(loaded.run, generation_request, sink))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    text = IncrementalText(loaded.tokenizer, generation_request.stop)
    async for token_ids in drain(tokens, running):
        if delta := text.add(token_ids):
            await response.write(_line({"delta": delta}))
    result, timings = running.result()
    if rest := text.finish(result["text"]):
        await response.write(_line({"delta": rest}))
    await response.write(_line({"result": result, "timings": timings}))
    await response.write_eof()
    _end_of_activation()
    return response


async def _run_batch(request: web.Request, loaded: LoadedFunction,
                     body: dict[str, Any]) -> web.StreamResponse:
    """One batched generation; a `{"index", "result", "timings"}` line as each request ends."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    limit = int(body.get("max_tokens_limit", 4096))
    accepted: list[tuple[int, GenerationRequest]] = []
    for index, item in enumerate(body["batch"]):
        try:
            accepted.append((index, parse_request(item.get("value") or {}, limit,
                                                  loaded.render_chat)))
        except RequestError as error:  # refused alone; the others still run
            await response.write(_line({"index": index, "result": {"error": str(error)},
                                        "timings": {}}))
    loop = asyncio.get_running_loop()
    finished: asyncio.Queue[tuple[int, dict[str, Any], dict[str, float]]] = asyncio.Queue()

    def generate_all() -> None:  # on a worker thread
        for position, result, timings in loaded.run_batch([r for _, r in accepted]):
            loop.call_soon_threadsafe(finished.put_nowait, (accepted[position][0], result,
                                                            timings))

    running = asyncio.ensure_future(asyncio.to_thread(generate_all))
    async for index, result, timings in drain(finished, running):
        await response.write(_line({"index": index, "result": result, "timings": timings}))
    await running  # re-raises a failure of the generation
    await response.write_eof()
    _end_of_activation()
    return response


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _end_of_activation() -> None:
    # OpenWhisk's log sentinels: the invoker reads the logs up to them.
    print(SENTINEL, flush=True)


async def handle_health(request: web.Request) -> web.Response:
    """Liveness, whether /init has run, and the backbone's busy time here (metering)."""
    loaded: LoadedFunction | None = request.app[function_key]["loaded"]
    return web.json_response({"ok": True, "initialized": loaded is not None,
                              "busyMs": loaded.busy_ms if loaded is not None else 0.0,
                              "generations": loaded.generations if loaded is not None else 0})
