"""Contention-aware batching and offloading on the real pool: issue 5's benchmark.

    .venv/bin/python tests/benchmarks/bench_contention.py [--quick]

One run, one backbone server, four parts (containers on the real Docker engine):

1. The profiler, in this process: decode throughput at batch 1 and 8 (bench_batching's
   batched loop) and the prefill fit T(b) = T0 + α·(b−1) with its R²; the fit at the
   shortest prompt is the dispatcher's prefill model below.
2. One function, one container, under rising Poisson load in multiples of μ (the rate at
   which it serves lone requests one after the other, measured first): no batching, eager,
   fill-or-expire and continuous (requests join the running decode); throughput and TTFT
   p50/p99.
3. Four functions with SLOs of 2, 4, 8 and 16 lone-request service times contending for
   M = 2 batches on one backbone: SLO attainment against load, FIFO against deadline-margin.
4. A working set larger than the accelerator-memory budget, a Zipf-skewed mix: TTFT and
   bytes moved with value-density offloading, LRU, and none (a request waits until the
   keep-alive removes an idle container).

At each load every mode or order replays the same seeded arrivals. TTFT is the invoker's
`ttft` annotation (queue, container start, prefill, from the scheduled arrival). Writes
docs/benchmarks/contention.md and contention.png; `--quick` is a smoke test (~3 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_batching import PROMPTS, DecodeRun, batched_run, median_throughput
from harness import OUT_DIR, BenchParts, bench_parts, machine

from lorafaas.demo import DemoModels
from lorafaas.invoker.batching import PrefillModel
from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.invoker import ActivationRequest, Invoker
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.offloading import MB, AcceleratorMemory, Offloader, OffloadPolicy
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.names import QualifiedName
from lorafaas.runtime.profiler import PrefillProfile, load_model, profile_prefill

COMMAND = ".venv/bin/python tests/benchmarks/bench_contention.py"
MODES = ("off", "eager", "fill-or-expire", "continuous")
ORDERS = ("fifo", "deadline-margin")
POLICIES = (OffloadPolicy.VALUE_DENSITY, OffloadPolicy.LRU, OffloadPolicy.NONE)
MAX_TOKENS = 16  # per request, EOS ignored: every request decodes as much
DECODE_TOKENS = 64  # per request in the profiler's decode runs
SLO_FACTORS = (2, 4, 8, 16)  # the four contending functions' SLOs, × the lone service time
SINGLE_SLO_FACTOR = 4  # the SLO of parts 2 and 4, × the lone service time
TIMEOUT_MS = 180_000
WARM_ROUNDS = 3  # lone requests that settle a fresh container before it is measured
MAINTENANCE_PERIOD_S = 0.5
logger = logging.getLogger("bench_contention")


@dataclass(frozen=True)
class Scale:
    """How much of each part runs: the full report, or the quick smoke test."""

    decode_runs: int
    prefill_repeats: int
    prompt_lengths: tuple[int, ...]
    calibration_runs: int  # lone requests timed for the service time
    rising_loads: tuple[float, ...]  # × μ
    rising_requests: int  # per load level
    contention_loads: tuple[float, ...]  # × μ, all four functions together
    contention_requests: int
    offload_functions: int
    offload_slots: int  # adapters the budget holds
    offload_load: float  # × μ
    offload_requests: int
    keepalive_s: float


FULL = Scale(5, 3, (32, 128), 9, (0.5, 1, 2, 4, 8), 60, (1, 2, 4, 6, 8), 96, 6, 3, 1.5, 120,
             8.0)
QUICK = Scale(2, 1, (32,), 5, (1, 4), 16, (2, 6), 24, 4, 2, 3.0, 16, 4.0)


@dataclass(frozen=True)
class Outcome:
    """One request as the invoker annotated it; times in seconds from its replay's start."""

    function: int
    slo_ms: float
    arrived_s: float
    ended_s: float
    ttft_ms: float | None  # None: it failed
    batch_size: int
    start_kind: str

    @property
    def met(self) -> bool:
        """Whether its first token came within its SLO."""
        return self.ttft_ms is not None and self.ttft_ms <= self.slo_ms


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN when there is nothing)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Replay:
    """One replay of a workload: under one mode, order or policy, at one load."""

    label: str
    load: float  # × μ
    offered_rps: float
    outcomes: tuple[Outcome, ...]

    def served(self) -> list[Outcome]:
        """The requests that got their first token."""
        return [o for o in self.outcomes if o.ttft_ms is not None]

    def throughput_rps(self) -> float:
        """Requests served per second, from the first arrival to the last end."""
        served = self.served()
        if not served:
            return 0.0
        span = max(o.ended_s for o in served) - min(o.arrived_s for o in self.outcomes)
        return len(served) / span

    def ttft(self, q: float) -> float:
        """A TTFT percentile (ms) of the served requests."""
        return percentile([o.ttft_ms for o in self.served() if o.ttft_ms is not None], q)

    def attainment(self, function: int | None = None) -> float:
        """The share of requests (of one function) that met their SLO; failures miss."""
        chosen = [o for o in self.outcomes if function is None or o.function == function]
        return sum(o.met for o in chosen) / max(1, len(chosen))

    def mean_batch(self) -> float:
        """The mean batch size a request was served in."""
        return statistics.fmean(o.batch_size for o in self.served()) if self.served() else 0.0

    def summary(self) -> str:
        """One line for the console."""
        return (f"{self.label} at {self.load:g}×μ ({self.offered_rps:.1f}/s): "
                f"{self.throughput_rps():.2f} req/s, TTFT p50 {self.ttft(50):.0f} ms p99 "
                f"{self.ttft(99):.0f} ms, SLO attainment {100 * self.attainment():.0f}%, mean "
                f"batch {self.mean_batch():.1f}, {len(self.outcomes) - len(self.served())} failed")


@dataclass(frozen=True)
class Profiled:
    """Part 1: decode runs at batch 1 and 8, and the prefill profiles."""

    decode: dict[int, list[DecodeRun]]
    profiles: list[PrefillProfile]
    threads: int

    def ratio(self) -> float:
        """Median decode throughput at batch 8 over batch 1."""
        return median_throughput(self.decode[8]) / median_throughput(self.decode[1])


@dataclass(frozen=True)
class OffloadRun:
    """Part 4 under one policy."""

    replay: Replay
    counters: dict[str, float]
    wall_s: float

    def moved_mb(self) -> float:
        """Bytes offloaded plus bytes restored, in MB."""
        return (self.counters["bytes_offloaded"] + self.counters["bytes_restored"]) / MB


@dataclass
class Results:
    """Everything the report shows."""

    profiled: Profiled
    service_s: float = 0.0  # a lone request's wall time on a warm container
    rising: tuple[Replay, ...] = ()
    contention: tuple[Replay, ...] = ()
    slos_ms: tuple[float, ...] = ()
    artifact_bytes: int = 0
    budget_bytes: int = 0
    offload: tuple[OffloadRun, ...] = ()


def profile(models: DemoModels, scale: Scale, threads: int) -> Profiled:
    """Decode at batch 1 and 8 (interleaved runs), then T(b) and its fit, in this process."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    model = load_model(models.backbone_dir, models.adapters["pirate"])
    tokenizer = AutoTokenizer.from_pretrained(str(models.backbone_dir))
    batched_run(model, tokenizer, 2, 4)  # warm-up
    decode: dict[int, list[DecodeRun]] = {1: [], 8: []}
    for _ in range(scale.decode_runs):
        for size, runs in decode.items():
            runs.append(batched_run(model, tokenizer, size, DECODE_TOKENS))
    profiles = [profile_prefill(model, length, repeats=scale.prefill_repeats)
                for length in scale.prompt_lengths]
    return Profiled(decode, profiles, threads)


def make_functions(parts: BenchParts, prefix: str, count: int) -> list[FunctionRef]:
    """`count` functions over the demo adapters, each with its own containers."""
    adapters = sorted(parts.models.adapters.values())
    return [FunctionRef(key=f"bench/{prefix}{i}@0.0.1:x", name=QualifiedName.from_path(f"bench/{prefix}{i}"),
                        adapter_dir=adapters[i % len(adapters)], memory_mb=1024)
            for i in range(count)]


def poisson(count: int, rate_per_s: float, weights: Sequence[float], seed: int
            ) -> list[tuple[float, int]]:
    """(arrival s, function index) of `count` Poisson arrivals, functions by weight."""
    chance = random.Random(seed)
    at, arrivals = 0.0, []
    for _ in range(count):
        at += chance.expovariate(rate_per_s)
        arrivals.append((at, chance.choices(range(len(weights)), weights)[0]))
    return arrivals


def make_invoker(pool: ContainerPool, batching: BatchingConfig,
                 tracker: FunctionTracker | None = None) -> Invoker:
    """An invoker on the pool with its own dispatcher."""
    return Invoker(pool, tracker or FunctionTracker(KeepAlivePolicy()), batching)


async def send(invoker: Invoker, functions: Sequence[FunctionRef], index: int, number: int,
               slo_ms: float, at_s: float, started: float) -> Outcome:
    """Send one request at its time; return what the invoker annotated."""
    await asyncio.sleep(max(0.0, started + at_s - time.time()))
    function = functions[index]
    result = await invoker.run(ActivationRequest(
        activation_id=uuid.uuid4().hex, namespace="bench", name=function.path.split("/")[1],
        version="0.0.1", subject="bench", function=function,
        parameters={"prompt": PROMPTS[number % len(PROMPTS)], "max_tokens": MAX_TOKENS,
                    "ignore_eos": True},
        limits={"timeout": TIMEOUT_MS, "max_tokens": 64, "memory": 1024,
                "slo_ttft_ms": slo_ms},
        received_at=started + at_s))
    notes = {a["key"]: a["value"] for a in result.annotations}
    ttft = notes.get("ttft") if result.status_code == 0 else None
    if ttft is None:
        logger.warning("request to %s failed: %s", function.path, result.response)
    return Outcome(index, slo_ms, at_s, result.end_ms / 1000 - started,
                   None if ttft is None else float(ttft), int(notes.get("batchSize") or 1),
                   str(notes.get("startKind")))


async def replay(invoker: Invoker, functions: Sequence[FunctionRef], slos_ms: Sequence[float],
                 arrivals: Sequence[tuple[float, int]]) -> list[Outcome]:
    """Send every arrival at its time, with the dispatcher's loop running."""
    async with invoker.dispatcher.running_loop():
        started = time.time()
        return list(await asyncio.gather(*(
            send(invoker, functions, index, number, slos_ms[index], at, started)
            for number, (at, index) in enumerate(arrivals))))


async def warm(pool: ContainerPool, functions: Sequence[FunctionRef], model: PrefillModel
               ) -> None:
    """Start a container for each function, then settle it with a few lone requests and a
    batch of eight: the first runs of a fresh container are slow, and not what is measured."""
    slos = [float(TIMEOUT_MS)] * len(functions)
    each = [(0.0, i) for i in range(len(functions))]
    lone = make_invoker(pool, BatchingConfig(enabled=False, default_model=model))
    for _ in range(WARM_ROUNDS):
        await replay(lone, functions, slos, each)
    # With an SLO this long a batch closes when eight fill it.
    full = batching("fill-or-expire", float(TIMEOUT_MS), model, len(functions))
    await replay(make_invoker(pool, full), functions, slos, each * 8)


async def service_time(pool: ContainerPool, function: FunctionRef, runs: int,
                       model: PrefillModel) -> float:
    """Median wall time (s) of a lone request on the function's warm container."""
    invoker = make_invoker(pool, BatchingConfig(enabled=False, default_model=model))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await replay(invoker, [function], [float(TIMEOUT_MS)], [(0.0, 0)])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def batching(mode: str, slo_ms: float, model: PrefillModel, max_concurrent: int,
             order: str = "deadline-margin") -> BatchingConfig:
    """The dispatcher's configuration for a mode (one of MODES) and order."""
    return BatchingConfig(enabled=mode != "off", eager=mode == "eager",
                          continuous=mode == "continuous", max_batch_size=8,
                          max_concurrent=max_concurrent, default_slo_ms=slo_ms,
                          default_model=model, order=order)  # type: ignore[arg-type]


async def sweep(pool: ContainerPool, functions: Sequence[FunctionRef],
                slos_ms: Sequence[float], loads: Sequence[float], count: int, seed: int,
                labels: Sequence[str], config_of: Callable[[str], BatchingConfig],
                service_s: float) -> tuple[Replay, ...]:
    """At each load (× μ), every label's configuration on the same seeded arrivals, spread
    evenly over the functions; the labels take turns at running first."""
    replays = []
    for level, load in enumerate(loads):
        rate = load / service_s
        arrivals = poisson(count, rate, [1.0] * len(functions), seed + level)
        shift = level % len(labels)
        for label in [*labels[shift:], *labels[:shift]]:
            outcomes = await replay(make_invoker(pool, config_of(label)), functions, slos_ms,
                                    arrivals)
            replays.append(Replay(label, load, rate, tuple(outcomes)))
            print(replays[-1].summary(), flush=True)
    return tuple(sorted(replays, key=lambda r: (r.load, labels.index(r.label))))


async def offload_policy(parts: BenchParts, policy: OffloadPolicy, results: Results,
                         model: PrefillModel, scale: Scale, seed: int, threads: int
                         ) -> OffloadRun:
    """Part 4 under one policy: a fresh pool with maintenance and a fixed keep-alive."""
    functions = make_functions(parts, f"o{policy.name[0].lower()}", scale.offload_functions)
    slo_ms = SINGLE_SLO_FACTOR * results.service_s * 1000
    rate = scale.offload_load / results.service_s
    weights = [1 / (rank + 1) for rank in range(len(functions))]
    arrivals = poisson(scale.offload_requests, rate, weights, seed + 200)
    pool = parts.pool({"max_instances": 1, "torch_threads": threads})
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(
        policy="fixed", fixed_keepalive_s=scale.keepalive_s)))

    def rate_of(function_key: str) -> float:  # as the controller's offloader
        stats = tracker.stats.get(function_key)
        return stats.rate_per_s(time.time()) if stats is not None else 0.0

    offloader = pool.offloader = Offloader(policy, AcceleratorMemory(results.budget_bytes),
                                           rate_of)
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),
                              MAINTENANCE_PERIOD_S, preloading=False)
    invoker = make_invoker(pool, batching("eager", slo_ms, model, 2), tracker)
    ticking = asyncio.create_task(maintenance.run())
    try:
        # Every function is started ahead when artifacts can move out of the budget; with
        # no offloading only as many as it holds (the most popular): the others wait.
        ahead = functions if policy is not OffloadPolicy.NONE else functions[:scale.offload_slots]
        await warm(pool, ahead, model)
        started = time.perf_counter()
        outcomes = await replay(invoker, functions, [slo_ms] * len(functions), arrivals)
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await pool.shutdown()
    run = OffloadRun(Replay(policy.value, scale.offload_load, rate, tuple(outcomes)),
                     offloader.counters.as_dict(), time.perf_counter() - started)
    print(f"{run.replay.summary()}; moved {run.moved_mb():.1f} MB, "
          f"{run.counters['waits']:.0f} waits for memory", flush=True)
    return run


async def measure(args: argparse.Namespace, scale: Scale) -> Results:
    """Every part, with one backbone server."""
    async with bench_parts() as parts:
        profiled = await asyncio.to_thread(profile, parts.models, scale, args.threads)
        print(f"decode batch 8 / batch 1: {profiled.ratio():.2f}×; " + "; ".join(
            f"{p.prompt_length} tokens: T0 {p.model.t0_ms:.1f} ms, α {p.model.alpha_ms:.2f} ms, "
            f"R² {p.r2:.4f}" for p in profiled.profiles), flush=True)
        results = Results(profiled)
        model = profiled.profiles[0].model
        # Every container runs the profiler's thread count: M = 2 batches of one thread each
        # fill the two cores; more threads than cores make OpenMP wait on descheduled ones.
        pool = parts.pool({"max_instances": 1, "torch_threads": args.threads})
        try:
            functions = make_functions(parts, "c", len(SLO_FACTORS))
            await warm(pool, functions[:1], model)
            results.service_s = (args.service_ms / 1000 if args.service_ms else await
                                 service_time(pool, functions[0], scale.calibration_runs, model))
            print(f"lone-request service time {1000 * results.service_s:.0f} ms "
                  f"(μ = {1 / results.service_s:.2f} req/s)", flush=True)
            # Part 2: one container, M = 1, one SLO.
            slo_ms = SINGLE_SLO_FACTOR * results.service_s * 1000
            results.rising = await sweep(
                pool, functions[:1], [slo_ms], scale.rising_loads, scale.rising_requests,
                args.seed, MODES, lambda mode: batching(mode, slo_ms, model, 1),
                results.service_s)
            # Part 3: four functions and SLOs, eager batching, M = 2.
            await warm(pool, functions[1:], model)
            slos = results.slos_ms = tuple(round(f * results.service_s * 1000, -1)
                                           for f in SLO_FACTORS)
            results.contention = await sweep(
                pool, functions, slos, scale.contention_loads, scale.contention_requests,
                args.seed + 100, ORDERS,
                lambda order: batching("eager", max(slos), model, 2, order), results.service_s)
            results.artifact_bytes = max([int((await c.client.health())["artifactBytes"])
                                          for c in pool.containers()])
        finally:
            await pool.shutdown()
        results.budget_bytes = (scale.offload_slots * results.artifact_bytes
                                + results.artifact_bytes // 2)
        results.offload = tuple([await offload_policy(parts, policy, results, model, scale,
                                                      args.seed, args.threads)
                                 for policy in POLICIES])
    return results


def report(results: Results, args: argparse.Namespace, scale: Scale) -> str:
    """The Markdown report."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    options = [*(["--quick"] if args.quick else []),
               *([f"--service-ms {args.service_ms:g}"] if args.service_ms else [])]
    command = " ".join([COMMAND, *options])
    lines = ["# Contention-aware batching and offloading", "",
             f"Command: `{command}`  ",
             f"Machine: {machine()}; load average (1, 5, 15 min) at the end {load}  ",
             ("Model: demo backbone (Llama, 30M parameters, float32) shared by every "
              f"container, the two demo adapters; each request decodes {MAX_TOKENS} tokens "
              "(EOS ignored) from one of eight prompts of mixed lengths."), ""]
    if args.quick:
        lines += [("**A `--quick` smoke run: fewer load levels and requests than the "
                   "report's; run the full command on a quiet machine for the figures.**"), ""]
    return "\n".join(lines + profiler_section(results.profiled) + rising_section(results)
                     + contention_section(results) + offload_section(results, scale)
                     + ["![rising load, SLO attainment, offloading and T(b)](contention.png)",
                        ""])


def profiler_section(profiled: Profiled) -> list[str]:
    """Decode throughput at batch 1 and 8, and the prefill fits."""
    lines = ["## The profiler", "",
             (f"In this process, {profiled.threads} torch thread(s), the `pirate` adapter "
              f"unmerged; {len(profiled.decode[1])} interleaved decode runs of "
              f"{DECODE_TOKENS} tokens per request."), "",
             "| batch | decode tok/s (median) | min | max |", "| ---: | ---: | ---: | ---: |"]
    for size, runs in profiled.decode.items():
        values = [r.throughput for r in runs]
        lines.append(f"| {size} | {median_throughput(runs):.0f} | {min(values):.0f} | "
                     f"{max(values):.0f} |")
    lines += ["", f"**Batch 8 / batch 1: {profiled.ratio():.2f}×** (target ≥ 3×).", "",
              "| prompt tokens | T0 ms | α ms | R² | T(1) ms measured | T(8) ms measured |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in profiled.profiles:
        measured = dict(p.samples)
        lines.append(f"| {p.prompt_length} | {p.model.t0_ms:.1f} | {p.model.alpha_ms:.2f} | "
                     f"{p.r2:.4f} | {measured[1]:.1f} | {measured[8]:.1f} |")
    first = profiled.profiles[0]
    lines += ["", (f"The dispatcher below uses the {first.prompt_length}-token fit: T(b) = "
                   f"{first.model.t0_ms:.1f} + {first.model.alpha_ms:.2f}·(b−1) ms."), ""]
    return lines


def rising_section(results: Results) -> list[str]:
    """Throughput and TTFT per mode and load."""
    service_ms = 1000 * results.service_s
    lines = ["## One function under rising load", "",
             (f"One container (M = 1). μ = {1 / results.service_s:.2f} req/s: a lone request "
              f"takes {service_ms:.0f} ms on the warm container. Fill-or-expire SLO "
              f"{SINGLE_SLO_FACTOR * service_ms:.0f} ms ({SINGLE_SLO_FACTOR}× that); at most 8 "
              "requests in a batch (continuous: in the running decode). Throughput: requests "
              "served from the first arrival to the last end."), "",
             ("| load | offered req/s | mode | served | req/s | tok/s | mean batch | "
              "TTFT p50 ms | TTFT p99 ms |"),
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in results.rising:
        lines.append(f"| {run.load:g}×μ | {run.offered_rps:.1f} | {run.label} | "
                     f"{len(run.served())}/{len(run.outcomes)} | {run.throughput_rps():.2f} | "
                     f"{MAX_TOKENS * run.throughput_rps():.0f} | {run.mean_batch():.1f} | "
                     f"{run.ttft(50):.0f} | {run.ttft(99):.0f} |")
    top = max(r.load for r in results.rising)
    rps = {r.label: r.throughput_rps() for r in results.rising if r.load == top}
    return lines + ["", (f"At {top:g}×μ, served req/s: " + ", ".join(
        f"{mode} {rps[mode]:.2f}" for mode in MODES) + " (" + ", ".join(
        f"{mode} {rps[mode] / rps['off']:.2f}×" for mode in MODES[1:]) + " no batching)."), ""]


def contention_section(results: Results) -> list[str]:
    """SLO attainment per order and load, overall and per function."""
    slos = ", ".join(f"{s:.0f}" for s in results.slos_ms)
    lines = ["## Four functions contending on one backbone", "",
             (f"One container each, eager batching, at most M = 2 batches at once; SLOs {slos} "
              f"ms ({'/'.join(str(f) for f in SLO_FACTORS)}× the lone service time), requests "
              "spread evenly. Attainment: the share of requests whose TTFT met the SLO."), "",
             ("| load | offered req/s | order | attainment | per function (tightest first) "
              "| TTFT p50 ms | TTFT p99 ms |"),
             "| ---: | ---: | --- | ---: | --- | ---: | ---: |"]
    for run in results.contention:
        shares = " / ".join(f"{100 * run.attainment(i):.0f}%" for i in range(len(SLO_FACTORS)))
        lines.append(f"| {run.load:g}×μ | {run.offered_rps:.1f} | {run.label} | "
                     f"{100 * run.attainment():.1f}% | {shares} | {run.ttft(50):.0f} | "
                     f"{run.ttft(99):.0f} |")
    return lines + [""]


def offload_section(results: Results, scale: Scale) -> list[str]:
    """TTFT and bytes moved per offloading policy."""
    first = results.offload[0].replay
    lines = ["## A working set larger than the memory budget", "",
             (f"{scale.offload_functions} functions, one container each, each holding "
              f"{results.artifact_bytes / MB:.2f} MB of artifacts; a budget of "
              f"{results.budget_bytes / MB:.2f} MB holds {scale.offload_slots}. "
              f"{len(first.outcomes)} requests at {first.offered_rps:.1f}/s "
              f"({scale.offload_load:g}×μ), function i with weight 1/(i+1); eager batching, "
              f"M = 2; fixed keep-alive {scale.keepalive_s:g} s, no stem cells, no "
              "pre-loading. With offloading every function is started (and settled) ahead;"
              f" with none only the {scale.offload_slots} most popular, as the budget holds:"
              " the others wait for memory, then start cold."), "",
             ("| policy | served | TTFT p50 ms | TTFT p99 ms | moved MB | offloads | restores "
              "| waits for memory | waited s | requests started cold | wall s |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in results.offload:
        r, c = run.replay, run.counters
        colds = sum(o.start_kind == "cold" for o in r.outcomes)
        lines.append(f"| {r.label} | {len(r.served())}/{len(r.outcomes)} | {r.ttft(50):.0f} | "
                     f"{r.ttft(99):.0f} | {run.moved_mb():.1f} | {c['offloads']:.0f} | "
                     f"{c['restores']:.0f} | {c['waits']:.0f} | {c['wait_ms'] / 1000:.1f} | "
                     f"{colds} | {run.wall_s:.0f} |")
    return lines + ["", ("With `none` a request whose function is not in accelerator memory "
                         "waits until the keep-alive removes an idle container."), ""]


def plot(results: Results, path: Path) -> None:
    """One figure: rising load (throughput, TTFT), T(b), attainment, offloading."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    (throughput, latency, prefill), (attainment, offload_ttft, moved) = axes
    for mode in MODES:
        runs = [r for r in results.rising if r.label == mode]
        line = throughput.plot([r.offered_rps for r in runs], [r.throughput_rps() for r in runs],
                               "o-", label=mode)[0]
        latency.plot([r.offered_rps for r in runs], [r.ttft(50) for r in runs], "o-",
                     color=line.get_color(), label=f"{mode} p50")
        latency.plot([r.offered_rps for r in runs], [r.ttft(99) for r in runs], "s--",
                     color=line.get_color(), label=f"{mode} p99")
    throughput.set(xlabel="offered req/s", ylabel="served req/s",
                   title="One function: throughput")
    latency.set(xlabel="offered req/s", ylabel="TTFT ms", yscale="log",
                title="One function: TTFT")
    for profile in results.profiled.profiles:
        sizes = [b for b, _ in profile.samples]
        dots = prefill.plot(sizes, [ms for _, ms in profile.samples], "o", markersize=4)[0]
        prefill.plot(sizes, [profile.model.time(b) for b in sizes], "-",
                     color=dots.get_color(),
                     label=f"{profile.prompt_length} tok: {profile.model.t0_ms:.0f} + "
                           f"{profile.model.alpha_ms:.1f}·(b−1), R² {profile.r2:.3f}")
    prefill.set(xlabel="batch size b", ylabel="prefill ms",
                title=f"Profiler: T(b); decode b8/b1 {results.profiled.ratio():.2f}×")
    for order in ORDERS:
        runs = [r for r in results.contention if r.label == order]
        attainment.plot([r.offered_rps for r in runs], [100 * r.attainment() for r in runs],
                        "o-", label=order)
    attainment.set(xlabel="offered req/s (four functions)", ylabel="SLO attainment %",
                   ylim=(0, 105), title="Four functions: SLO attainment")
    labels = [run.replay.label for run in results.offload]
    positions = range(len(labels))
    for shift, q in ((-0.2, 50), (0.2, 99)):
        offload_ttft.bar([p + shift for p in positions],
                         [r.replay.ttft(q) for r in results.offload], 0.4, label=f"p{q}")
    offload_ttft.set(xticks=list(positions), xticklabels=labels, ylabel="TTFT ms",
                     yscale="log", title="Working set > budget: TTFT")
    moved.bar(list(positions), [r.moved_mb() for r in results.offload])
    moved.set(xticks=list(positions), xticklabels=labels, ylabel="MB offloaded + restored",
              title="Working set > budget: bytes moved")
    for axis in (throughput, latency, prefill, attainment, offload_ttft):
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Measure, then write the report and the plot."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test, about 3 minutes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the in-process profiler and of every container")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--service-ms", type=float,
                        help="the lone-request service time that scales loads and SLOs "
                             "(default: measured at the start)")
    parser.add_argument("--output-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scale = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = asyncio.run(measure(args, scale))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "contention.md").write_text(report(results, args, scale))
    plot(results, args.output_dir / "contention.png")
    print((args.output_dir / "contention.md").read_text())
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
