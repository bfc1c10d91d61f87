"""A discrete-event simulation of many invokers fed by one controller's placement, for
bench_placement.py: per-invoker slots, container memory, keep-alive and stem cells, and the
start each request finds (warm, stem cell, cold) decided by the invoker's own state."""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lorafaas.balancer.placement import Balancer
from lorafaas.balancer.reports import InvokerReport, Target

BACKBONE = "demo"
CONTAINER_MB = 1024  # what one container (or stem cell) takes of an invoker's memory


@dataclass(frozen=True)
class SimConfig:
    """The simulated platform; times in seconds of simulated time."""

    invokers: int = 100
    slots: int = 8  # activations an invoker runs at once
    containers: int = 16  # containers (stem cells included) its memory holds
    stem_cells: int = 2  # kept ready per invoker while memory allows
    keepalive_s: float = 30.0  # an idle container is removed after this
    cold_s: float = 4.0  # a new container: libraries, backbone attach, adapter, kernels
    stem_init_s: float = 0.3  # a stem cell taking a function: adapter, tokenizer, kernels
    stem_boot_s: float = 2.0  # a new stem cell becomes ready after this
    heartbeat_s: float = 1.0  # how often each invoker reports


@dataclass(frozen=True)
class SimRequest:
    """One request: its arrival, its function, its service time once started."""

    at: float
    function: int
    service_s: float


@dataclass
class Container:
    """A function's container on one invoker."""

    running: int = 0
    last_used: float = 0.0


@dataclass
class SimInvoker:
    """One invoker's slots, queue, containers and stem cells."""

    invoker_id: str
    config: SimConfig
    busy: int = 0
    queue: deque[tuple[SimRequest, float]] = field(default_factory=deque)
    containers: dict[int, Container] = field(default_factory=dict)
    stems: int = 0
    stems_booting: int = 0
    busy_s: float = 0.0  # slot-seconds of work it did: its load

    def used(self) -> int:
        """Containers and stem cells (ready or booting) in its memory."""
        return len(self.containers) + self.stems + self.stems_booting

    def report(self, now: float, names: Sequence[str]) -> InvokerReport:
        """Its heartbeat: idle containers count as free memory, as it evicts them."""
        running = sum(1 for c in self.containers.values() if c.running > 0)
        free = max(0, self.config.containers - running - self.stems - self.stems_booting)
        return InvokerReport(self.invoker_id, now, self.config.slots,
                             max(0, self.config.slots - self.busy), free * CONTAINER_MB,
                             queued=len(self.queue),
                             warm=frozenset(names[f] for f in self.containers),
                             stem_cells={BACKBONE: self.stems})

    def expire(self, now: float) -> None:
        """Remove containers idle past the keep-alive."""
        for function, container in list(self.containers.items()):
            if container.running == 0 and now - container.last_used > self.config.keepalive_s:
                del self.containers[function]

    def make_room(self) -> None:
        """Free memory for a new container: the least recently used idle one, else a stem."""
        if self.used() < self.config.containers:
            return
        idle = [(c.last_used, f) for f, c in self.containers.items() if c.running == 0]
        if idle:
            del self.containers[min(idle)[1]]
        elif self.stems > 0:
            self.stems -= 1


@dataclass
class SimResult:
    """What one policy's run measured."""

    policy: str
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("warm", "stem", "cold"), 0))
    waits_s: list[float] = field(default_factory=list)  # in an invoker's queue
    decision_ns: list[int] = field(default_factory=list)  # wall time
    decision_cpu_ns: list[int] = field(default_factory=list)  # this process's CPU time
    load_s: list[float] = field(default_factory=list)  # per invoker


Chooser = Callable[[int, float], str]  # function, now -> invoker id


class Simulation:
    """One policy's replay of the requests over the simulated invokers."""

    def __init__(self, config: SimConfig, targets: Sequence[Target], policy: str,
                 balancer: Balancer | None, seed: int) -> None:
        self.config = config
        self.targets = targets
        self.names = [t.action for t in targets]
        self.invokers = {f"invoker{i:03d}": SimInvoker(f"invoker{i:03d}", config)
                         for i in range(config.invokers)}
        self.balancer = balancer
        self.random = random.Random(seed)
        self.result = SimResult(policy)
        self._ids = list(self.invokers)
        self._events: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._work = 0  # arrivals and completions still to come: heartbeats stop at 0

    def run(self, requests: Sequence[SimRequest]) -> SimResult:
        """Replay every request; the load of each invoker, its start kinds and waits."""
        for i, invoker in enumerate(self.invokers.values()):
            self._at(i * self.config.heartbeat_s / len(self.invokers), "beat", invoker)
            self._top_up(invoker, 0.0)
        for request in requests:
            self._at(request.at, "arrive", request)
        while self._events:
            now, _, kind, payload = heapq.heappop(self._events)
            self._work -= kind in ("arrive", "done")
            if kind == "arrive":
                self._arrive(payload, now)  # type: ignore[arg-type]
            elif kind == "done":
                self._done(payload, now)  # type: ignore[arg-type]
            elif kind == "beat":
                self._beat(payload, now)  # type: ignore[arg-type]
            else:
                self._stem_ready(payload)  # type: ignore[arg-type]
        self.result.load_s = [i.busy_s for i in self.invokers.values()]
        return self.result

    def _at(self, at: float, kind: str, payload: object) -> None:
        self._work += kind in ("arrive", "done")
        heapq.heappush(self._events, (at, next(self._seq), kind, payload))

    def _choose(self, request: SimRequest, now: float) -> SimInvoker:
        """Where the policy sends the request, timed."""
        started, started_cpu = time.perf_counter_ns(), time.process_time_ns()
        if self.balancer is None:
            chosen = self.random.choice(self._ids)
        else:
            placement = self.balancer.place(self.targets[request.function], now)
            assert placement is not None, "every simulated invoker heartbeats"
            chosen = placement.invoker_id
        self.result.decision_cpu_ns.append(time.process_time_ns() - started_cpu)
        self.result.decision_ns.append(time.perf_counter_ns() - started)
        return self.invokers[chosen]

    def _arrive(self, request: SimRequest, now: float) -> None:
        invoker = self._choose(request, now)
        if invoker.busy < self.config.slots:
            self._start(invoker, request, now, now)
        else:
            invoker.queue.append((request, now))

    def _start(self, invoker: SimInvoker, request: SimRequest, arrived: float,
               now: float) -> None:
        """Run the request on a container of its function: warm, a stem cell, or new."""
        container = invoker.containers.get(request.function)
        if container is not None:
            kind, init_s = "warm", 0.0
        elif invoker.stems > 0:
            invoker.stems -= 1
            kind, init_s = "stem", self.config.stem_init_s
            self._top_up(invoker, now)
        else:
            invoker.make_room()
            kind, init_s = "cold", self.config.cold_s
        if container is None:
            container = invoker.containers[request.function] = Container()
        container.running += 1
        invoker.busy += 1
        duration = init_s + request.service_s
        invoker.busy_s += duration
        self.result.kinds[kind] += 1
        self.result.waits_s.append(now - arrived)
        self._at(now + duration, "done", (invoker, request.function))

    def _done(self, payload: tuple[SimInvoker, int], now: float) -> None:
        invoker, function = payload
        container = invoker.containers[function]
        container.running -= 1
        container.last_used = now
        invoker.busy -= 1
        if self.balancer is not None:
            self.balancer.release(invoker.invoker_id)
        if invoker.queue:
            request, arrived = invoker.queue.popleft()
            self._start(invoker, request, arrived, now)

    def _beat(self, invoker: SimInvoker, now: float) -> None:
        invoker.expire(now)
        self._top_up(invoker, now)
        if self.balancer is not None:
            self.balancer.update(invoker.report(now, self.names))
        if self._work > 0:  # the run ends when only heartbeats are left
            self._at(now + self.config.heartbeat_s, "beat", invoker)

    def _top_up(self, invoker: SimInvoker, now: float) -> None:
        """Boot stem cells up to the target while memory allows."""
        while invoker.stems + invoker.stems_booting < self.config.stem_cells and \
                invoker.used() < self.config.containers:
            invoker.stems_booting += 1
            self._at(now + self.config.stem_boot_s, "stem", invoker)

    def _stem_ready(self, invoker: SimInvoker) -> None:
        invoker.stems_booting -= 1
        invoker.stems += 1
