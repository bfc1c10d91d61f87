"""What the broker adds to an activation's latency, side by side with the in-process seam.

Run on demand: `PYTHONPATH=platform .venv/bin/python tests/benchmarks/bench_broker.py`
(needs Debian's `nats-server`). The same instant invoker (it answers at once, so what is
measured is the path alone) is called through the seam directly and through
`BrokerInvoker` -> NATS on loopback -> `InvokerService`, in alternating rounds; blocking,
streamed (8 deltas) and durable (the work stream, acked once the caller's task ended) runs.
It prints p50 and p90 per path and the added latency. The issue's target: added p50 under
2 ms for blocking invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.nats_fixtures import nats_server

from lorafaas.broker.client import BrokerInvoker
from lorafaas.broker.service import InvokerService
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
)
from lorafaas.invoking.client import FunctionView, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName


class InstantInvoker:
    """Answers at once (8 deltas when streamed): the path is all there is to time."""

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        if on_delta is not None:
            for index in range(8):
                await on_delta(f"t{index} ")
        now = int(time.time() * 1000)
        return ActivationResult(now, now, 0, {"status": "success", "statusCode": 0,
                                              "success": True, "result": {"text": "ok"}},
                                [], [{"key": "startKind", "value": "warm"}])

    async def retire(self, name: QualifiedName) -> None:
        pass

    def prepare(self, function: FunctionRef) -> None:
        pass

    def describe_function(self, function: FunctionRef) -> FunctionView:
        return FunctionView([], {}, {})

    def snapshot(self) -> InvokerSnapshot:
        return InvokerSnapshot([], None, [])

    def metrics(self) -> MetricsText:
        return MetricsText("", "text/plain")


def request(index: int, durable: bool = False) -> ActivationRequest:
    function = FunctionRef("guest/f@0.0.1:d", QualifiedName("guest", None, "f"), Path("."), 256)
    return ActivationRequest(f"b{index}", "guest", "f", "0.0.1", "guest", function,
                             {"prompt": "x"}, {"timeout": 60000}, time.time(), durable=durable)


Run = Callable[[Any, int], Awaitable[object]]


async def timed(run: Run, invoker: object, index: int) -> float:
    started = time.perf_counter()
    # In a task of its own, as the controller runs each activation: a durable one's result
    # is acknowledged when the task that awaited it ends.
    await asyncio.ensure_future(run(invoker, index))
    return (time.perf_counter() - started) * 1000


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


async def bench(url: str, rounds: int, only: list[str]) -> None:
    local = InstantInvoker()
    service_nc, client_nc = await nats.connect(url), await nats.connect(url)

    async def sink(text: str) -> None:
        pass

    try:
        async with InvokerService(service_nc, InstantInvoker(), "bench").serving(), \
                BrokerInvoker(client_nc).connected() as remote:
            while not remote.live.live():
                await asyncio.sleep(0.05)
            kinds: dict[str, Run] = {
                "blocking": lambda inv, i: inv.run(request(i)),
                "streamed": lambda inv, i: inv.run(request(i), sink),
                "durable": lambda inv, i: inv.run(request(i, durable=True)),
            }
            for kind, run in kinds.items():
                if only and kind not in only:
                    continue
                times: dict[str, list[float]] = {"in-process": [], "broker": []}
                for index in range(rounds):  # alternating: both see the same machine load
                    times["in-process"].append(await timed(run, local, index))
                    times["broker"].append(await timed(run, remote, index))
                report(kind, times)
    finally:
        await service_nc.close()
        await client_nc.close()


def report(kind: str, times: dict[str, list[float]]) -> None:
    medians = {path: statistics.median(values) for path, values in times.items()}
    for path, values in times.items():
        print(f"{kind:9} {path:10} p50 {medians[path]:7.3f} ms  "
              f"p90 {quantile(values, 0.9):7.3f} ms  (n={len(values)})")
    print(f"{kind:9} added p50 {medians['broker'] - medians['in-process']:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--only", nargs="*", default=[], help="blocking, streamed, durable")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with nats_server() as url:
        asyncio.run(bench(url, args.rounds, args.only))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
