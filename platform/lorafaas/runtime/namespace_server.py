"""The runtime server of a namespace container (`LORAFAAS_RUNTIME_MODE=namespace`).

The action protocol of `runtime.server`, for several functions of one namespace:

- `POST /init` (any body): attach the backbone, load its tokenizer, warm the kernels; no
  adapter yet. Answers as a function container's /init (`initBreakdown`, `initMemory`);
  a second /init is refused with 403.
- `POST /run`: the single or batch form of `runtime.server`, plus `"function"`: the
  folder (slot) of the function's adapter under the mounted adapters folder. Every
  request joins the one continuous decode, whatever `"continuous"` says. The function's
  adapter is loaded on its first request; its timings then carry `adapterLoad` (ms), and
  every request's carry `adapterLoaded` (whether it was loaded before the request came)
  and `container: "namespace"`. An adapter that cannot be served here answers that
  function's requests with a result `{"error": ...}` (200: the container is sound; the
  other functions' requests run on). A missing or malformed `"function"` is refused 400.
- `POST /load`: `{"function": slot}`: load the function's adapter ahead of its first
  request (the invoker's pre-loading plan); answers `{"loaded": true, "adapterLoad": ms,
  "bytes"}` (`adapterLoad` 0 when it was loaded already), or `{"loaded": false, "error"}`
  for an adapter that cannot be served here. That first request's timings then carry
  `adapterPreloaded: true`.
- `POST /cancel`: as `runtime.server`'s.
- `GET /health`: `{"ok", "initialized", "mode": "namespace", "busyMs", "generations",
  "adapters": {slot: bytes}, "adapterBytes", "adapterBudget", "steps", "stepRows",
  "stepFunctions", "maxFunctionsPerStep"}`: the loaded adapters (least recently used
  first) and the shared decode's composition (requests and distinct functions per step).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from lorafaas.runtime import server
from lorafaas.runtime.adapter_cache import AdapterTooLarge
from lorafaas.runtime.idle_trim import IdleTrimmer, idle_trim_middleware
from lorafaas.runtime.log_capture import LogCapture
from lorafaas.runtime.memory import release_free_heap
from lorafaas.runtime.namespace import (
    FunctionUnavailable,
    NamespacePaths,
    NamespaceRuntime,
    load_namespace,
)
from lorafaas.runtime.sampling import GREEDY_DEFAULTS

logger = logging.getLogger(__name__)
namespace_key = web.AppKey("namespace", dict)


def create_namespace_app(paths: NamespacePaths, client: str, budget_bytes: int,
                         libraries_ms: float, libraries_bytes: int | None = None,
                         capture: LogCapture | None = None,
                         generation_defaults: str = GREEDY_DEFAULTS) -> web.Application:
    """The runtime application of one namespace container."""
    trimmer = IdleTrimmer(release_free_heap)
    app = web.Application(client_max_size=64 * 1024 * 1024,
                          middlewares=[idle_trim_middleware(trimmer)])
    app[namespace_key] = {"runtime": None, "paths": paths, "client": client,
                          "budget": budget_bytes, "libraries_ms": libraries_ms,
                          "libraries_bytes": libraries_bytes, "lock": asyncio.Lock(),
                          "generation_defaults": generation_defaults}
    # What runtime.server's run path reads: the log capture and the streams to cancel.
    app[server.function_key] = {"capture": capture, "streams": {}, "lock": asyncio.Lock()}
    app.add_routes([web.post("/init", handle_init), web.post("/run", handle_run),
                    web.post("/load", handle_load),
                    web.post("/cancel", server.handle_cancel),
                    web.get("/health", handle_health)])
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    runtime: NamespaceRuntime | None = app[namespace_key]["runtime"]
    if runtime is not None:
        await asyncio.to_thread(runtime.close)


async def handle_init(request: web.Request) -> web.Response:
    """Attach the backbone and warm up (once)."""
    state = request.app[namespace_key]
    async with state["lock"]:
        if state["runtime"] is not None:
            return web.json_response({"error": "Cannot initialize the action more than once."},
                                     status=403)
        try:
            runtime = await asyncio.to_thread(load_namespace, state["paths"], state["client"],
                                              state["budget"], None,
                                              state["generation_defaults"])
        except Exception as error:
            logger.exception("namespace init failed")
            return web.json_response({"error": f"initialization failed: {error}"}, status=502)
        state["runtime"] = runtime
    breakdown = {"libraries": round(state["libraries_ms"], 3), **runtime.breakdown}
    memory = dict(runtime.memory)
    if state["libraries_bytes"] is not None:
        memory = {"libraries": state["libraries_bytes"], **memory}
    return web.json_response({"ok": True, "initBreakdown": breakdown, "initMemory": memory})


async def handle_run(request: web.Request) -> web.StreamResponse:
    """Run one request, or a batch, of the function the body names."""
    runtime: NamespaceRuntime | None = request.app[namespace_key]["runtime"]
    if runtime is None:
        return web.json_response({"error": "the action was not initialized"}, status=502)
    body: dict[str, Any] = await request.json()
    slot = body.get("function")
    if not isinstance(slot, str) or not slot:
        return web.json_response({"error": "'function' must name the function's adapter "
                                  "folder"}, status=400)
    body["continuous"] = True  # one shared decode: every request joins it
    capture = request.app[server.function_key]["capture"] if server.wants_logs(body) else None
    if isinstance(body.get("batch"), list):
        try:
            acquired = await asyncio.to_thread(runtime.acquire, slot)
        except (FunctionUnavailable, AdapterTooLarge) as error:
            logger.warning("function %s unavailable: %s", slot, error)
            return await _refused(request, body, str(error))
        try:
            return await server._run_batch(request, runtime.view(acquired), body, True, capture)
        finally:
            runtime.release(slot)
    # The single form: what its handling writes (the refusal too) is this activation's.
    with server.ActivationLog(capture) as log:
        try:
            acquired = await asyncio.to_thread(runtime.acquire, slot)
        except (FunctionUnavailable, AdapterTooLarge) as error:
            logger.warning("function %s unavailable: %s", slot, error)
            return server._answer({"error": "the function's adapter cannot be served: "
                                            f"{error}"}, {}, log)
        try:
            return await server._run_one(request, runtime.view(acquired), body, log)
        finally:
            runtime.release(slot)


async def handle_load(request: web.Request) -> web.Response:
    """Load a function's adapter ahead of its first request."""
    runtime: NamespaceRuntime | None = request.app[namespace_key]["runtime"]
    if runtime is None:
        return web.json_response({"error": "the action was not initialized"}, status=502)
    try:
        body = await request.json()
    except ValueError:
        body = None
    slot = body.get("function") if isinstance(body, dict) else None
    if not isinstance(slot, str) or not slot:
        return web.json_response({"error": "'function' must name the function's adapter "
                                  "folder"}, status=400)
    try:
        acquired = await asyncio.to_thread(runtime.preload, slot)
    except (FunctionUnavailable, AdapterTooLarge) as error:
        logger.warning("function %s cannot be pre-loaded: %s", slot, error)
        return web.json_response({"loaded": False, "error": str(error)})
    return web.json_response({"loaded": True, "adapterLoad": round(acquired.load_ms, 3),
                              "bytes": runtime.adapters.loaded().get(slot, 0)})


async def _refused(request: web.Request, body: dict[str, Any],
                   message: str) -> web.StreamResponse:
    """The function's requests answered with an error result, in their form of /run."""
    result = {"error": f"the function's adapter cannot be served: {message}"}
    batch = body.get("batch")
    if not isinstance(batch, list):
        return web.json_response(result)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    for index in range(len(batch)):
        await response.write(server._line({"index": index, "result": result,
                                           "timings": {}}))
    await response.write_eof()
    return response


async def handle_health(request: web.Request) -> web.Response:
    """Liveness, the loaded adapters and the shared decode's composition."""
    runtime: NamespaceRuntime | None = request.app[namespace_key]["runtime"]
    answer: dict[str, Any] = {"ok": True, "initialized": runtime is not None,
                              "mode": "namespace",
                              "adapterBudget": request.app[namespace_key]["budget"]}
    if runtime is not None:
        answer |= {"busyMs": runtime.busy_ms, "generations": runtime.generations,
                   "adapters": runtime.adapters.loaded(), "adapterBytes":
                   runtime.adapters.bytes, **runtime.steps.as_json()}
    return web.json_response(answer)
