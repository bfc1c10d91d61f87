"""The runtime of a code action (`python:3`): OpenWhisk's action protocol, no backbone.

Started as `python3 -m lorafaas.runtime.code_action` in the same hardened runtime image as
LoRA functions (read-only root, no network, an unprivileged user, the action's memory
limit), with the action's code mounted read-only at `LORAFAAS_CODE_DIR` (its `__main__.py`
and `exec.json`, see `registry.code_artifacts`). It imports no torch: the container holds
the interpreter, aiohttp and the owner's code.

- `POST /init` `{"value": {"name", "main", "env"}}`: import the code once (a second init is
  refused with 403); `main` names the entry point (default `main`). Answers `{"ok": true,
  "initBreakdown": {"code": ms}, "initMemory": {}}`, or 502 `{"error"}` when the code
  cannot be loaded (see `runtime.user_code`).
- `POST /run` `{"value": {parameters}, "activation_id", ...}`: one activation at a time
  (OpenWhisk's concurrency of one per container); the other fields become `__OW_*`
  variables. With `"logs": true` the answer is the envelope `{"result", "timings",
  "logs", "developerError"}` (header `X-LoRAFaaS-Envelope`), else the bare result; the
  timings (ms) are `total`, the time `main` ran, which billing charges by memory.
- `GET /health`: `{"ok", "initialized", "busyMs", "generations", "tier": null,
  "artifactBytes": 0, "acceleratorBytes": 0}` (the fields a LoRA runtime answers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from lorafaas.runtime.log_capture import LogCapture, capture_process_output
from lorafaas.runtime.user_code import (
    Outcome,
    UserCodeError,
    apply_run_env,
    call_entry,
    load_entry,
)
from lorafaas.wire.runtime_protocol import ENVELOPE_HEADER, METRICS_HEADER, SENTINEL

logger = logging.getLogger(__name__)
state_key = web.AppKey("code_action", dict)


def create_code_app(code_dir: Path, capture: LogCapture | None = None) -> web.Application:
    """The runtime application of one code action's container."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[state_key] = {"code_dir": code_dir, "entry": None, "capture": capture,
                      "lock": asyncio.Lock(), "busy_ms": 0.0, "runs": 0}
    app.add_routes([web.post("/init", handle_init), web.post("/run", handle_run),
                    web.get("/health", handle_health)])
    return app


async def handle_init(request: web.Request) -> web.Response:
    """Import the action's code and find its entry point (once)."""
    state = request.app[state_key]
    value = (await request.json()).get("value") or {}
    async with state["lock"]:
        if state["entry"] is not None:
            return web.json_response({"error": "Cannot initialize the action more than once."},
                                     status=403)
        for key, env_value in (value.get("env") or {}).items():
            os.environ[str(key)] = str(env_value)
        started = time.monotonic()
        try:
            state["entry"] = await asyncio.to_thread(load_entry, state["code_dir"],
                                                     str(value.get("main") or "main"))
        except UserCodeError as error:
            logger.warning("init failed: %s", error)
            return web.json_response({"error": str(error)}, status=502)
    elapsed = round((time.monotonic() - started) * 1000, 3)
    return web.json_response({"ok": True, "initBreakdown": {"code": elapsed},
                              "initMemory": {}})


async def handle_run(request: web.Request) -> web.Response:
    """Run one activation of the entry point (see the module doc)."""
    state = request.app[state_key]
    entry: Callable[..., Any] | None = state["entry"]
    if entry is None:
        return web.json_response({"error": "the action was not initialized"}, status=502)
    body = await request.json()
    value = body.get("value")
    args = value if isinstance(value, dict) else {}
    capture: LogCapture | None = state["capture"] if body.get("logs") else None
    async with state["lock"]:
        mark = capture.begin() if capture is not None else 0
        apply_run_env(body)
        started = time.monotonic()
        try:
            outcome = await asyncio.to_thread(call_entry, entry, args)
        finally:
            run_ms = (time.monotonic() - started) * 1000
            state["busy_ms"] += run_ms
            state["runs"] += 1
            lines = capture.end(mark) if capture is not None else None
            print(SENTINEL, flush=True)  # OpenWhisk's end of an activation's log
    return _answer(outcome, {"total": round(run_ms, 3)}, lines)


def _answer(outcome: Outcome, timings: dict[str, float],
            lines: list[str] | None) -> web.Response:
    headers = {METRICS_HEADER: json.dumps(timings)}
    if lines is None:
        return web.json_response(outcome.result, headers=headers)
    return web.json_response({"result": outcome.result, "timings": timings, "logs": lines,
                              "developerError": outcome.developer_error},
                             headers={**headers, ENVELOPE_HEADER: "1"})


async def handle_health(request: web.Request) -> web.Response:
    """Liveness and whether /init has run."""
    state = request.app[state_key]
    return web.json_response({"ok": True, "initialized": state["entry"] is not None,
                              "busyMs": state["busy_ms"], "generations": state["runs"],
                              "tier": None, "artifactBytes": 0, "acceleratorBytes": 0})


async def serve(capture: LogCapture) -> None:
    """Serve the socket until the container is stopped."""
    socket_path = Path(os.environ.get("LORAFAAS_RUNTIME_SOCKET", "/lorafaas/io/runtime.sock"))
    code_dir = Path(os.environ.get("LORAFAAS_CODE_DIR", "/code"))
    os.chdir(code_dir)  # OpenWhisk runs an action in its code's folder
    runner = web.AppRunner(create_code_app(code_dir, capture), access_log=None)
    await runner.setup()
    socket_path.unlink(missing_ok=True)
    await web.UnixSite(runner, str(socket_path)).start()
    logger.info("code-action runtime listening on %s", socket_path)
    await asyncio.Event().wait()


def main() -> None:
    """Run the code-action runtime."""
    capture = capture_process_output()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s runtime %(levelname)s %(message)s")
    asyncio.run(serve(capture))


if __name__ == "__main__":
    main()
