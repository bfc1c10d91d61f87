"""Split the CPU time a container used over one run (a batch, or a session) among its requests.

The counter (the container's cgroup, lorafaas.invoker.cgroup_cpu) is read when the run
starts, when each request is sent and when each one ends. A request that ran alone is billed
the whole difference. In a batch, a request is billed the CPU the container used while it
was in it, times its share of that time: the runtime's `compute` (its part of every step it
was in, split by the tokens each sequence processed) over the time it was in. The runtime
says only how the steps split among its own function's requests; the amount is the host's.
The request that ends the run is billed what is left, so the requests of a run are billed
exactly the CPU their container used from the run's start to its end, however the shares
were estimated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lorafaas.billing.metering import BUSY_KEY, CPU_KEY


@dataclass(frozen=True)
class Mark:
    """When a request was sent, and the counter then."""

    at_s: float
    cpu_s: float | None


class RunCpu:
    """The CPU counter of one container over one run, and what was billed of it."""

    def __init__(self, read: Callable[[], float | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self.start = self.mark()
        self.billed_s = 0.0

    def mark(self) -> Mark:
        """Read the counter as a request is sent."""
        return Mark(self._clock(), self._read())

    def ended(self, sent: Mark, compute_ms: float | None, last: bool) -> float | None:
        """CPU seconds to bill a request that just ended (None: the counter cannot be read)."""
        now, cpu = self._clock(), self._read()
        if cpu is None or sent.cpu_s is None or self.start.cpu_s is None:
            return None
        left = max(0.0, cpu - self.start.cpu_s - self.billed_s)
        used = max(0.0, cpu - sent.cpu_s)
        span_s = now - sent.at_s
        if last:
            share = left
        elif compute_ms is not None and span_s > 0:
            share = min(left, used * min(1.0, compute_ms / 1000 / span_s))
        else:
            share = min(left, used)
        self.billed_s += share
        return share


def with_cpu(timings: dict[str, float], cpu_s: float | None,
             cores: float) -> dict[str, float]:
    """The runtime's timings with the host's measure in place of anything it claimed."""
    own = {k: v for k, v in timings.items() if k not in (CPU_KEY, BUSY_KEY)}
    if cpu_s is None:
        return own
    return {**own, CPU_KEY: cpu_s * 1000, BUSY_KEY: cpu_s * 1000 / max(1.0, cores)}
