"""Run one activation: get a container, send /run, time it, and build the record."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lorafaas.invoker.maintenance import FunctionTracker
from lorafaas.invoker.pool import ContainerPool, FunctionRef, Lease
from lorafaas.invoker.records import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    SUCCESS,
    WHISK_ERROR,
    annotation_list,
    response,
)
from lorafaas.invoker.runtime_client import DeltaSink, RuntimeUnavailable
from lorafaas.wire.runtime_protocol import SENTINEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationRequest:
    """One invocation as the controller hands it to the invoker."""

    activation_id: str
    namespace: str
    name: str
    version: str
    subject: str
    function: FunctionRef
    parameters: dict[str, Any]
    limits: dict[str, Any]
    received_at: float  # epoch seconds when the controller accepted it


@dataclass(frozen=True)
class ActivationResult:
    """The finished activation, ready to be stored as OpenWhisk's record."""

    start_ms: int
    end_ms: int
    status_code: int
    response: dict[str, Any]
    logs: list[str]
    annotations: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)  # the runtime's, ms (metering)


class Invoker:
    """Runs activations in the container pool."""

    def __init__(self, pool: ContainerPool, tracker: FunctionTracker) -> None:
        self.pool = pool
        self.tracker = tracker

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        """Run the activation to its end; never raises for a failed action.

        With `on_delta`, the runtime streams and each text delta is handed over as it comes.
        """
        timeout_s = request.limits["timeout"] / 1000
        started = time.time()
        self.tracker.arrived(request.function, request.received_at)
        lease: Lease | None = None
        try:
            async with asyncio.timeout(timeout_s):
                lease = await self.pool.acquire(request.function)
                acquired = time.time()
                payload = {"value": request.parameters, "activation_id": request.activation_id,
                           "max_tokens_limit": request.limits["max_tokens"]}
                client = lease.container.client
                outcome = await (client.run(payload) if on_delta is None
                                 else client.run_stream(payload, on_delta))
        except TimeoutError:
            return await self._failed(request, started, lease, DEVELOPER_ERROR,
                                      f"The action exceeded its time limits of "
                                      f"{request.limits['timeout']} milliseconds.",
                                      timed_out=True)
        except RuntimeUnavailable as error:
            return await self._failed(request, started, lease, DEVELOPER_ERROR,
                                      await self._crash_message(lease, str(error)))
        except Exception as error:
            logger.exception("activation %s failed in the invoker", request.activation_id)
            return await self._failed(request, started, lease, WHISK_ERROR,
                                      f"The invoker could not run the action: {error}")
        ended = time.time()
        await self.pool.release(lease.container)
        self.tracker.ended(request.function, ended, lease.init_breakdown)
        status = APPLICATION_ERROR if "error" in outcome.result else SUCCESS
        logs = await self._logs(lease, started, ended)
        return ActivationResult(_ms(started), _ms(ended), status, response(status, outcome.result),
                                logs, self._annotations(request, acquired, lease, outcome.timings),
                                outcome.timings)

    async def _failed(self, request: ActivationRequest, started: float, lease: Lease | None,
                      status: int, message: str, timed_out: bool = False) -> ActivationResult:
        ended = time.time()
        logs: list[str] = []
        if lease is not None:
            logs = await self._logs(lease, started, ended)
            # A container that failed mid-activation is never reused.
            await self.pool.discard(lease.container, message)
        logger.warning("activation %s ended with status %d: %s", request.activation_id, status,
                       message)
        annotations = self._annotations(request, ended, lease, {})
        if timed_out:
            annotations.append({"key": "timeout", "value": True})  # OpenWhisk's marker
        return ActivationResult(_ms(started), _ms(ended), status,
                                response(status, {"error": message}), logs, annotations)

    async def _crash_message(self, lease: Lease | None, detail: str) -> str:
        if lease is None:
            return f"The action's container could not start: {detail}"
        exit_code, oom = await self.pool.check_alive(lease.container)
        if oom:
            return "The action's container ran out of memory and was stopped."
        if exit_code is not None:
            return f"The action's container stopped (exit code {exit_code}) during the activation."
        return f"The action's container failed: {detail}"

    async def _logs(self, lease: Lease, started: float, ended: float) -> list[str]:
        lines = await asyncio.to_thread(self.pool.backend.logs, lease.container.info.id,
                                        started - 1, ended + 1)
        return [line for line in lines if SENTINEL not in line]

    def _annotations(self, request: ActivationRequest, ready_at: float, lease: Lease | None,
                     timings: dict[str, float]) -> list[dict[str, Any]]:
        # Between arrival and the container being ready: queueing, then initialization.
        before_run_ms = max(0.0, (ready_at - request.received_at) * 1000)
        init_ms = lease.init_ms if lease is not None and lease.start_kind != "warm" else None
        wait_ms = max(0.0, before_run_ms - (init_ms or 0.0))
        return annotation_list({
            "path": f"{request.namespace}/{request.name}",
            "kind": "lora",
            "limits": request.limits,
            "waitTime": round(wait_ms),
            "initTime": round(init_ms) if init_ms is not None else None,
            "startKind": lease.start_kind if lease is not None else None,
            "initBreakdown": lease.init_breakdown if lease is not None else None,
            # What the caller waited for its first token: queue, initialization, prefill.
            "ttft": round(before_run_ms + timings["ttft"], 3)
            if "ttft" in timings else None,
            "batchSize": 1,
        })


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
