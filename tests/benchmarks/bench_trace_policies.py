"""Keep-alive and pre-loading policies replayed on a window of a real trace, on the real pool.

    .venv/bin/python tests/benchmarks/bench_trace_policies.py [--window-start-min 0]
        [--window-min 30] [--compress 5] [--rate 0.5] [--functions 20] [--zipf 1.0]

The arrivals of `AzureLLMInferenceTrace_conv.csv` in the window are thinned at random to
`--rate` requests per second of wall time after compressing time by `--compress`, and each
is given to one of `--functions` functions by Zipf popularity. Every time constant of the
policies (keep-alive, histogram bins and range, stem-cell ttl, the cold-start window) is
divided by the same factor, so each policy sees the trace as it would uncompressed.
Token counts are divided by 16 (prompt 8–128 words, 1–32 new tokens). The same requests
are replayed, one policy after the other, through the invoker, the pool and its
maintenance on the real Docker engine with the demo backbone:

(a) OpenWhisk's fixed 10-minute keep-alive, no stem cells, no pre-loading;
(b) the hybrid histogram policy, no stem cells, no pre-loading;
(c) the histogram policy with full pre-loading: stem cells (libraries and backbone) kept
    ahead of demand, and functions pre-loaded when their next request is predicted.

Per policy: the share of each start kind, TTFT p50/p99 (from the invoker's `ttft`
annotation: queue, initialization and prefill, from the scheduled arrival), and container
memory-seconds, the PSS of every container's process sampled every half second. Writes
docs/benchmarks/trace_policies.md and trace_policies.png.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import OUT_DIR, REPO_ROOT, BenchParts, bench_parts, machine, pss_kb

from lorafaas.demo import DemoModels
from lorafaas.invoker.containers import ContainerState
from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.invoker import ActivationRequest, Invoker
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.invoker.sharing import SharingConfig
from lorafaas.names import QualifiedName

TRACE = REPO_ROOT.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"
COMMAND = ".venv/bin/python tests/benchmarks/bench_trace_policies.py"
KINDS = ("cold", "prewarm", "preloaded", "warm")
TOKEN_SCALE = 16
SAMPLE_PERIOD_S = 0.5
PROMPT_TEXT = ("tell me about the weather today and what we should do this weekend in the "
               "city with friends who like music food and long walks by the river")
logger = logging.getLogger("bench_trace_policies")
# The platform's default batching for every policy (eager, at most 2 batches at once): it
# also keeps a function from starting a second container while its first one starts.
BATCHING = BatchingConfig(enabled=True, eager=True, max_batch_size=8, max_concurrent=2)


@dataclass(frozen=True)
class TraceRequest:
    """One replayed request: when (wall seconds from the start), which function, how big."""

    at_s: float
    function: int
    prompt_words: int
    max_tokens: int
    measured: bool  # False in the warm-up before the window


@dataclass(frozen=True)
class Workload:
    """The replayed requests and how they were derived from the trace."""

    requests: tuple[TraceRequest, ...]
    warmup_s: float  # wall seconds of warm-up before the window
    duration_s: float  # wall seconds of the window
    trace_requests: int  # in the window, before thinning
    description: str


@dataclass(frozen=True)
class Policy:
    """One configuration of keep-alive, stem cells and pre-loading."""

    name: str
    label: str
    keepalive: KeepAliveConfig
    prewarm: PrewarmConfig
    preloading: bool


@dataclass
class PolicyRun:
    """What one policy's replay measured."""

    policy: Policy
    ttft_ms: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    # per measured request: arrival (wall s), function, start kind, ttft, wait, init, batch
    rows: list[tuple[float, int, str, float, float, float, int]] = field(default_factory=list)
    errors: int = 0
    memory_mb: list[tuple[float, float, int]] = field(default_factory=list)  # t, MB, count

    def memory_gb_s(self) -> float:
        """Container memory integrated over the window (GB·s of wall time)."""
        return sum(mb for _, mb, _ in self.memory_mb) * SAMPLE_PERIOD_S / 1024

    def container_s(self) -> float:
        """Containers alive integrated over the window (container-seconds of wall time)."""
        return sum(count for _, _, count in self.memory_mb) * SAMPLE_PERIOD_S

    def percentile(self, q: float) -> float:
        """A TTFT percentile (ms), nearest rank."""
        ordered = sorted(self.ttft_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def read_trace(path: Path) -> list[tuple[float, int, int]]:
    """(seconds from the first arrival, context tokens, generated tokens) per row."""
    with path.open() as file:
        rows = [(datetime.datetime.fromisoformat(r["TIMESTAMP"][:26]), int(r["ContextTokens"]),
                 int(r["GeneratedTokens"])) for r in csv.DictReader(file)]
    first = rows[0][0]
    return [((at - first).total_seconds(), ctx, gen) for at, ctx, gen in rows]


def build_workload(rows: Sequence[tuple[float, int, int]], args: argparse.Namespace,
                   trace: Path = TRACE) -> Workload:
    """Cut the window, thin it to the wall rate, assign functions by Zipf (exponent 0:
    uniform), scale tokens; `trace` names the file the rows came from."""
    start, length = args.window_start_min * 60, args.window_min * 60
    warmup = min(start, getattr(args, "warmup_min", 0) * 60)
    span = [(t - start + warmup, c, g) for t, c, g in rows
            if start - warmup <= t < start + length]
    in_window = sum(t >= warmup for t, _, _ in span)
    # the window compressed runs at len/length × compress per wall second: keep `rate` of it
    keep = min(1.0, args.rate * length / (in_window * args.compress))
    chance = random.Random(args.seed)
    weights = [1 / (rank + 1) ** args.zipf for rank in range(args.functions)]
    requests = []
    for offset, context, generated in span:
        if chance.random() >= keep:
            continue
        function = chance.choices(range(args.functions), weights)[0]
        requests.append(TraceRequest(offset / args.compress, function,
                                     min(128, max(8, context // TOKEN_SCALE)),
                                     min(32, max(1, generated // TOKEN_SCALE)),
                                     measured=offset >= warmup))
    measured = sum(r.measured for r in requests)
    description = (
        f"`{trace.name}`, minutes {args.window_start_min}–{args.window_min + args.window_start_min}"
        f" of the trace ({in_window} requests) after {warmup / 60:g} minutes of warm-up (replayed,"
        f" not measured), time compressed {args.compress:g}×, thinned at random to {measured} "
        f"requests in the window ({args.rate:g}/s of wall time, seed {args.seed}), "
        f"{args.functions} functions {popularity_text(args.zipf)}, token counts "
        f"÷{TOKEN_SCALE} (prompt 8–128 words, 1–32 new tokens)")
    return Workload(tuple(requests), warmup / args.compress, length / args.compress, in_window,
                    description)


def popularity_text(zipf: float) -> str:
    """How requests are spread over the functions, for the reports."""
    return (f"by Zipf popularity (exponent {zipf:g})" if zipf > 0
            else "uniformly (each equally popular)")


def policies(compress: float, stem_cells: int) -> list[Policy]:
    """(a), (b), (c) with every time constant divided by the compression."""
    def keepalive(policy: str, fixed_s: float) -> KeepAliveConfig:
        return KeepAliveConfig(bin_s=60 / compress, range_s=4 * 3600 / compress,
                               fixed_keepalive_s=fixed_s / compress,
                               policy=policy)  # type: ignore[arg-type]

    no_stems = PrewarmConfig(min_count=0, max_count=0, ttl_s=600 / compress)
    stems = PrewarmConfig(min_count=stem_cells, max_count=stem_cells + 3, ttl_s=600 / compress)
    fallback_s = KeepAliveConfig().fixed_keepalive_s
    return [
        Policy("a", "(a) fixed 10-min keep-alive, no pre-loading", keepalive("fixed", 600),
               no_stems, False),
        Policy("b", "(b) histogram, no pre-loading", keepalive("histogram", fallback_s),
               no_stems, False),
        Policy("c", "(c) histogram + full pre-loading", keepalive("histogram", fallback_s),
               stems, True),
    ]


def policy_invoker(pool: ContainerPool, policy: Policy, period_s: float,
                   batching: BatchingConfig, spare_share: float = 0.0,
                   sharing: SharingConfig | None = None) -> tuple[Maintenance, Invoker]:
    """The pool's maintenance under `policy` (with `spare_share` of the pool's memory kept
    loaded when it pre-loads), and an invoker sharing its function tracker (and, with
    `sharing`, namespace containers)."""
    tracker = FunctionTracker(KeepAlivePolicy(policy.keepalive))
    invoker = Invoker(pool, tracker, batching, sharing)
    return (Maintenance(pool, tracker, policy.prewarm, period_s, policy.preloading,
                        spare_share if policy.preloading else 0.0, sharing=invoker.sharing),
            invoker)


def trace_functions(models: DemoModels, namespace: str, count: int, memory_mb: int
                    ) -> list[FunctionRef]:
    """`count` functions `<namespace>/f<i>`, given the demo adapters in turn."""
    adapters = sorted(models.adapters.values())
    return [FunctionRef(key=f"{namespace}/f{i}", name=QualifiedName.from_path(f"{namespace}/f{i}"),
                        adapter_dir=adapters[i % len(adapters)], memory_mb=memory_mb)
            for i in range(count)]


async def replay(parts: BenchParts, workload: Workload, policy: Policy, args: argparse.Namespace
                 ) -> PolicyRun:
    """Run the workload through a fresh pool under one policy."""
    pool = parts.pool({"memory_mb": 64 * 1024, "max_instances": 2,
                       "cold_start_window_s": 60 / args.compress,
                       "torch_threads": max(1, (os.cpu_count() or 1)
                                            // BATCHING.max_concurrent)})
    maintenance, invoker = policy_invoker(pool, policy, args.period, BATCHING)
    functions = trace_functions(parts.models, "bench", args.functions, memory_mb=1024)
    run = PolicyRun(policy)
    ticking = asyncio.create_task(maintenance.run())
    try:
        await _settle(pool, policy.prewarm.min_count)
        started = time.time()
        measuring = started + workload.warmup_s
        sampling = asyncio.create_task(_sample_memory(pool, run, measuring))
        async with invoker.dispatcher.running_loop():
            await asyncio.gather(*(_one(invoker, functions[r.function], r, started, run)
                                   for r in workload.requests))
        await asyncio.sleep(max(0.0, measuring + workload.duration_s - time.time()))
        sampling.cancel()
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await pool.shutdown()
    return run


async def _settle(pool: ContainerPool, stem_cells: int) -> None:
    """Wait until the stem cells a policy keeps from the start are up ("on deploy")."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready = sum(c.state is ContainerState.STEM for c in pool.containers())
        if ready >= stem_cells:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{stem_cells} stem cells did not start within 300 s")


async def _one(invoker: Invoker, function: FunctionRef, request: TraceRequest, started: float,
               run: PolicyRun) -> None:
    """Send one request at its time and record its TTFT and start kind."""
    await asyncio.sleep(max(0.0, started + request.at_s - time.time()))
    words = PROMPT_TEXT.split()
    prompt = " ".join(words[i % len(words)] for i in range(request.prompt_words))
    result = await invoker.run(ActivationRequest(
        activation_id=uuid.uuid4().hex, namespace="bench", name=function.path, version="0.0.1",
        subject="bench", function=function,
        parameters={"prompt": prompt, "max_tokens": request.max_tokens},
        limits={"timeout": 300_000, "max_tokens": 64, "memory": 1024},
        received_at=started + request.at_s))
    annotations = {a["key"]: a["value"] for a in result.annotations}
    if result.status_code != 0 or annotations.get("ttft") is None:
        run.errors += 1
        logger.warning("request failed: %s", result.response)
        return
    if request.measured:
        run.ttft_ms.append(float(annotations["ttft"]))
        run.kinds[str(annotations["startKind"])] += 1
        run.rows.append((request.at_s, request.function, str(annotations["startKind"]),
                         float(annotations["ttft"]), float(annotations.get("waitTime") or 0),
                         float(annotations.get("initTime") or 0),
                         int(annotations.get("batchSize") or 1)))


async def _sample_memory(pool: ContainerPool, run: PolicyRun, started: float) -> None:
    """Sum the PSS of every container's process, every sample period from `started` (epoch
    s), until cancelled."""
    await asyncio.sleep(max(0.0, started - time.time()))
    while True:
        containers = pool.containers()
        kb = await asyncio.to_thread(_summed_pss_kb, [c.info.pid for c in containers])
        run.memory_mb.append((time.time() - started, kb / 1024, len(containers)))
        await asyncio.sleep(SAMPLE_PERIOD_S)


def _summed_pss_kb(pids: list[int]) -> int:
    return sum(pss_kb(pid) for pid in pids)


def report(workload: Workload, runs: list[PolicyRun], args: argparse.Namespace) -> str:
    """The Markdown report."""
    a, c = runs[0], runs[-1]
    lines = [
        "# Keep-alive and pre-loading policies on a real trace", "",
        f"Command: `{COMMAND} {_arguments(args)}`  ",
        (f"Machine: {machine()}; demo backbone (Llama, 30M parameters, float32, shared by "
         "every container), two demo adapters over the functions.  "),
        (f"Workload: {workload.description}. Wall time per policy: "
         f"{workload.duration_s:.0f} s. Batching as the platform's default (eager, M ≤ 2) in "
         "every policy, so that only keep-alive and pre-loading differ."),
        "", ("Memory-seconds: the PSS of each container's runtime process summed over the "
             f"containers, sampled every {SAMPLE_PERIOD_S} s over the window (wall time; "
             f"×{args.compress:g} for trace time). (c) keeps {args.stem_cells} stem cells from "
             "the start."),
        "", ("| policy | requests | cold | stem cell | pre-loaded | warm | TTFT p50 ms | "
             "TTFT p99 ms | memory GB·s | container·s | peak GB |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs:
        served = len(run.ttft_ms)
        shares = " | ".join(f"{100 * run.kinds[k] / max(1, served):.1f}%" for k in KINDS)
        peak = max((mb for _, mb, _ in run.memory_mb), default=0.0) / 1024
        lines.append(f"| {run.policy.label} | {served} | {shares} | "
                     f"{run.percentile(50):.0f} | {run.percentile(99):.0f} | "
                     f"{run.memory_gb_s():.1f} | {run.container_s():.0f} | {peak:.2f} |")
    cut = 1 - c.percentile(99) / a.percentile(99)
    ratio = c.memory_gb_s() / a.memory_gb_s()
    lines += ["", (f"(c) against (a): TTFT p99 {100 * cut:.0f}% lower (target ≥ 80%), "
                   f"memory-seconds {ratio:.2f}× (target ≤ 1.00×)."),
              f"Failed requests: {', '.join(f'{r.policy.name} {r.errors}' for r in runs)}.",
              ("Every measured request (start kind, TTFT, wait, initialization, batch size): "
               "[trace_policies_requests.csv](trace_policies_requests.csv)."),
              "", "![TTFT CDF and container memory per policy](trace_policies.png)", ""]
    return "\n".join(lines)


def _arguments(args: argparse.Namespace) -> str:
    return (f"--window-start-min {args.window_start_min} --window-min {args.window_min} "
            f"--warmup-min {args.warmup_min} "
            f"--compress {args.compress:g} --rate {args.rate:g} --functions {args.functions} "
            f"--zipf {args.zipf:g} --stem-cells {args.stem_cells} --seed {args.seed}")


def write_requests(runs: list[PolicyRun]) -> None:
    """Every measured request of every policy, to see where the time went."""
    with (OUT_DIR / "trace_policies_requests.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["policy", "arrival_s", "function", "start_kind", "ttft_ms", "wait_ms",
                         "init_ms", "batch_size"])
        for run in runs:
            writer.writerows((run.policy.name, *row) for row in sorted(run.rows))


def plot(runs: list[PolicyRun]) -> None:
    """TTFT CDF (log scale) and container memory over time, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        ordered = sorted(run.ttft_ms)
        cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))],
                 label=run.policy.label)
        memory.plot([t for t, _, _ in run.memory_mb], [mb / 1024 for _, mb, _ in run.memory_mb],
                    label=run.policy.label)
    cdf.set_xscale("log")
    cdf.set_xlabel("TTFT (ms)")
    cdf.set_ylabel("share of requests")
    cdf.set_title("Time to first token")
    memory.set_xlabel("wall time (s)")
    memory.set_ylabel("container PSS (GB)")
    memory.set_title("Container memory")
    cdf.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(OUT_DIR / "trace_policies.png", dpi=120)


async def measure(args: argparse.Namespace) -> tuple[Workload, list[PolicyRun]]:
    """Replay the workload under each policy, with one backbone server."""
    workload = build_workload(read_trace(TRACE), args)
    print(workload.description, flush=True)
    runs = []
    async with bench_parts() as parts:
        for policy in policies(args.compress, args.stem_cells):
            run = await replay(parts, workload, policy, args)
            runs.append(run)
            print(f"{policy.label}: {dict(run.kinds)}, TTFT p50 {run.percentile(50):.0f} ms, "
                  f"p99 {run.percentile(99):.0f} ms, {run.memory_gb_s():.1f} GB·s, "
                  f"{run.errors} failed", flush=True)
    return workload, runs


def main() -> None:
    """Measure, then write the report and the plot."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window-start-min", type=int, default=10)
    parser.add_argument("--window-min", type=int, default=30)
    parser.add_argument("--warmup-min", type=int, default=10,
                        help="trace minutes replayed before the window, not measured")
    parser.add_argument("--compress", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.25, help="requests per wall second")
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--stem-cells", type=int, default=4)
    parser.add_argument("--period", type=float, default=0.5, help="maintenance period (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workload, runs = asyncio.run(measure(args))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "trace_policies.md").write_text(report(workload, runs, args))
    write_requests(runs)
    plot(runs)
    print((OUT_DIR / "trace_policies.md").read_text())


if __name__ == "__main__":
    main()
