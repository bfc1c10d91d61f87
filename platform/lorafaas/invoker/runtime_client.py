"""Talk to a function container's runtime over its Unix socket (OpenWhisk's /init and /run)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from lorafaas.invoking.activations import DeltaSink, StreamCancelled
from lorafaas.wire.runtime_protocol import ENVELOPE_HEADER, METRICS_HEADER

RUNTIME_URL = "http://runtime"  # the host part is ignored on a Unix socket


class RuntimeUnavailable(Exception):
    """The container's runtime did not answer (it died, or never came up)."""


@dataclass(frozen=True)
class TierMove:
    """What /offload or /restore answered: where the artifacts are now, bytes, ms."""

    moved: str  # "host" or "accelerator"
    bytes: int
    ms: float


@dataclass(frozen=True)
class InitOutcome:
    """What /init answered: per artifact loaded, its load time (ms) and host memory (bytes).

    `memory` lacks the artifacts the runtime could not size (and all of them from a runtime
    image older than the measurement).
    """

    breakdown: dict[str, float]
    memory: dict[str, int]


@dataclass(frozen=True)
class RunOutcome:
    """What /run answered: the result, the runtime's timings in ms, and the activation's
    log lines when the payload asked for them (`"logs": true`) and the runtime captures
    its log (None otherwise: the invoker reads them from the container engine)."""

    result: dict[str, Any]
    timings: dict[str, float]
    logs: list[str] | None = None
    # The owner's code returned no dictionary: OpenWhisk's action developer error.
    developer_error: bool = False


class RuntimeClient:
    """HTTP over the socket a container's runtime listens on."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(socket_path)))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    async def wait_ready(self, timeout_s: float, still_running: Any) -> None:
        """Poll /health until the runtime answers; fail early if the container exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.socket_path.exists():
                try:
                    async with self._session.get(f"{RUNTIME_URL}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
            if not await still_running():
                raise RuntimeUnavailable("the container exited before its runtime answered")
            await asyncio.sleep(0.05)
        raise RuntimeUnavailable(f"the runtime did not answer within {timeout_s:.0f}s")

    async def healthy(self, timeout_s: float = 5.0) -> bool:
        """Whether the runtime answers /health in time."""
        try:
            async with asyncio.timeout(timeout_s), self._session.get(
                    f"{RUNTIME_URL}/health") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def init(self, value: dict[str, Any]) -> dict[str, float]:
        """POST /init; return the per-artifact load times."""
        return (await self.init_measured(value)).breakdown

    async def init_measured(self, value: dict[str, Any]) -> InitOutcome:
        """POST /init; return the per-artifact load times and memory sizes."""
        body = await self._post("/init", {"value": value})
        memory = {str(k): int(v) for k, v in (body.get("initMemory") or {}).items()}
        return InitOutcome(dict(body.get("initBreakdown", {})), memory)

    async def health(self) -> dict[str, Any]:
        """GET /health: initialization, busy time, and where the artifacts are."""
        try:
            async with self._session.get(f"{RUNTIME_URL}/health") as response:
                return dict(await response.json(content_type=None))
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            raise RuntimeUnavailable(f"the container's runtime stopped answering: "
                                     f"{error.__class__.__name__}") from error

    async def load_adapter(self, slot: str) -> dict[str, Any]:
        """POST /load of a namespace container: its function's adapter loaded ahead."""
        return await self._post("/load", {"function": slot})

    async def move(self, to_host: bool) -> TierMove:
        """POST /offload (to host memory) or /restore (back to the accelerator)."""
        body = await self._post("/offload" if to_host else "/restore", {})
        return TierMove(str(body["moved"]), int(body["bytes"]), float(body["ms"]))

    async def run(self, payload: dict[str, Any]) -> RunOutcome:
        """POST /run; return the result and timings."""
        try:
            async with self._session.post(f"{RUNTIME_URL}/run", json=payload) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise RuntimeUnavailable(str(body.get("error", f"HTTP {response.status}")))
                if ENVELOPE_HEADER in response.headers:
                    return RunOutcome(body["result"], body["timings"], body["logs"],
                                      bool(body.get("developerError")))
                timings = json.loads(response.headers.get(METRICS_HEADER, "{}"))
                return RunOutcome(result=body, timings=timings)
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            raise RuntimeUnavailable(f"the container's runtime stopped answering: "
                                     f"{error.__class__.__name__}") from error

    async def run_stream(self, payload: dict[str, Any], on_delta: DeltaSink) -> RunOutcome:
        """POST /run with streaming: hand each text delta to `on_delta` as it comes.

        When `on_delta` raises StreamCancelled the runtime is told to stop (`/cancel`): the
        outcome is then the result up to the cut (finish_reason "cancelled")."""
        final: dict[str, Any] | None = None
        cancelled = False
        try:
            async with self._session.post(f"{RUNTIME_URL}/run",
                                          json={**payload, "stream": True}) as response:
                if response.content_type == "application/json":  # refused before streaming
                    body = await response.json()
                    if ENVELOPE_HEADER in response.headers:
                        return RunOutcome(body["result"], body["timings"], body["logs"],
                                          bool(body.get("developerError")))
                    return RunOutcome(result=body, timings={})
                async for line in response.content:
                    message = json.loads(line)
                    if "delta" not in message:
                        final = message
                    elif not cancelled:
                        try:
                            await on_delta(message["delta"])
                        except StreamCancelled:
                            cancelled = True
                            await self._post("/cancel",
                                             {"activation_id": payload.get("activation_id")})
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            raise RuntimeUnavailable(f"the container's runtime stopped answering: "
                                     f"{error.__class__.__name__}") from error
        if final is None:
            raise RuntimeUnavailable("the container's runtime ended the stream without a result")
        return RunOutcome(final["result"], final["timings"], final.get("logs"))

    async def run_batch(self, payloads: list[dict[str, Any]], max_tokens_limit: int,
                        on_result: Callable[[int, RunOutcome], Awaitable[None]]) -> None:
        """POST /run in its batch form: one batched generation; `on_result(index, outcome)`
        is awaited for each request as soon as it ends."""
        body = {"batch": payloads, "max_tokens_limit": max_tokens_limit,
                "logs": any(payload.get("logs") for payload in payloads)}
        received = 0
        try:
            async with self._session.post(f"{RUNTIME_URL}/run", json=body) as response:
                async for line in response.content:
                    message = json.loads(line)
                    await on_result(int(message["index"]),
                                    RunOutcome(message["result"], message["timings"],
                                               message.get("logs")))
                    received += 1
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            raise RuntimeUnavailable(f"the container's runtime stopped answering: "
                                     f"{error.__class__.__name__}") from error
        if received < len(payloads):
            raise RuntimeUnavailable("the container's runtime ended the batch early")

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(f"{RUNTIME_URL}{path}", json=payload) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            raise RuntimeUnavailable(f"the container's runtime stopped answering: "
                                     f"{error.__class__.__name__}") from error
        if response.status != 200:
            raise RuntimeUnavailable(str(body.get("error", f"HTTP {response.status}")))
        return dict(body)
