"""The evaluation: OpenWhisk-style, InstaInfer-style, this platform and a serverful reference,
replayed with the same requests from real traces on this machine. One command:

    .venv/bin/python tests/benchmarks/bench_evaluation.py [--quick]
        [--experiments headline,large,n8,n128,uniform,steady] [--rate 0.5] [--compress 5]

Systems (the same harness, the same requests, one after the other):

1. `openwhisk`: one container per function that loads the whole backbone (a private copy,
   `LORAFAAS_BACKBONE_SHARING=off`) and its adapter on a cold start; a fixed 10-minute
   keep-alive; no stem cells, no pre-loading, no batching.
2. `instainfer`: pre-loading of libraries, backbone and adapter into idle containers (stem
   cells that hold a private backbone copy, functions pre-loaded when predicted), the
   hybrid histogram keep-alive; no backbone sharing, no batching.
3. `full`: this platform: backbone sharing, the same pre-loading, contention-aware batching
   (`eager`, the default). Offloading is off: the CPU has no accelerator memory to save.
4. `serverful`: one always-on process with the backbone and all N adapters (peft), serving
   mixed-adapter batches (`serverful.py`).
5. `namespace`: `full` with namespace containers (`LORAFAAS_SHARED_CONTAINERS=namespace`,
   the platform's default): the N functions, of one namespace, decode together in its
   container until one has traffic enough of its own (`full` is the same with `off`).

`--reduced` is a side-by-side smoke of the last: the conv trace's steady window, N = 32,
at `--rate` (1 by default then), `namespace`, `full` and `serverful` in turn, printed and
not written to docs/evaluation.md (its figures are for ratios measured side by side).

Workload (bench_trace_policies' reading, windowing, thinning and token scaling): a window of
`--window-min` minutes of `AzureLLMInferenceTrace_conv.csv` or `_code.csv`, the bursty one
(highest coefficient of variation of inter-arrival times) or the steady one (lowest),
compressed `--compress`× and thinned to `--rate` requests per wall second, over N functions
by Zipf popularity (or uniform). Every keep-alive and pre-warm time constant is divided by
the compression. Measures per system: TTFT p50/p90/p99, end-to-end latency, SLO attainment
(TTFT ≤ `--slo-ms`), cold starts, peak and summed memory (PSS from /proc), memory-seconds,
and cost with the billing price sheet. Writes docs/evaluation.md and docs/evaluation/*.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import math
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from bench_trace_policies import (
    PROMPT_TEXT,
    SAMPLE_PERIOD_S,
    TraceRequest,
    Workload,
    build_workload,
    policies,
    policy_invoker,
    read_trace,
    trace_functions,
)
from evaluation_stats import Window, always_on_cost, bursty_and_steady, trace_windows
from harness import REPO_ROOT, BenchParts, bench_parts, lorafaas_home, pss_kb
from serverful import ServerfulProcess

from lorafaas.billing.ledger import ACTIVATION, meter_activation
from lorafaas.billing.prices import GB_MB, PriceSheet, price_sheet
from lorafaas.demo import DemoModels
from lorafaas.demo.evaluation import build_large_models
from lorafaas.invoker.containers import ContainerState
from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.invoker import ActivationRequest, Invoker
from lorafaas.invoker.placement import PlacementConfig, SharedContainers
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.sharing import SharingConfig
from lorafaas.settings import load_settings


def _traces_dir() -> Path:
    """`shared/traces` beside the main checkout (a worktree's parent need not hold it)."""
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    candidates = [REPO_ROOT.parent / "shared" / "traces"]
    if common:
        candidates.append((REPO_ROOT / common).resolve().parent.parent / "shared" / "traces")
    return next((c for c in candidates if c.is_dir()), candidates[0])


TRACES = {name: _traces_dir() / f"AzureLLMInferenceTrace_{name}.csv"
          for name in ("conv", "code")}
SYSTEMS = ("openwhisk", "instainfer", "full", "serverful")
POOL_MEMORY_MB = 16_384  # the platform's default pool size: what this machine can hold
# A container's memory limit when it maps the shared backbone, per backbone: its measured
# peak (cgroup max usage, a batch of 8 × 128 prompt + 32 new tokens: 370 MB with the demo
# backbone, 626 MB with the large one) with ≥ 20% to spare, in steps of 256 MB.
SHARED_MEMORY_MB = {"demo": 512, "large": 768}
# A namespace container's memory limit and adapter budget in the `namespace` system: a
# function container's limit, plus room for the rows of every function decoding together
# and for its adapters (the demo adapters take under 1 MB each).
NAMESPACE_MEMORY_MB = {"demo": 1024, "large": 1536}
NAMESPACE_ADAPTER_BUDGET_MB = 256
logger = logging.getLogger("bench_evaluation")


@dataclass(frozen=True)
class Experiment:
    """One cell of the grid: which requests, and which systems replay them."""

    name: str
    trace: str  # conv or code
    window: str  # bursty or steady
    functions: int
    popularity: str  # zipf or uniform
    backbone: str  # demo (112 MB) or large (≥ 500 MB)
    systems: tuple[str, ...]
    rate: float  # requests per wall second


@dataclass
class SystemRun:
    """What one system's replay of one experiment measured."""

    system: str
    experiment: Experiment
    workload: Workload
    ttft_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    memory_mb: list[tuple[float, float, int]] = field(default_factory=list)  # t, PSS, count
    limits_gb_s: float = 0.0  # containers' memory limits over their lifetime
    accelerator_usd: float = 0.0
    billed_usd: float = 0.0  # what the activations were billed (the billing model)
    always_on_usd: float | None = None  # the serverful reference: on for the whole window
    slo_ms: float = 2000.0
    measured: str = ""  # when and at which commit (kept with the run: --keep mixes runs)

    @property
    def served(self) -> int:
        """Requests answered."""
        return len(self.ttft_ms)

    def slo_attainment(self) -> float:
        """Share of the answered requests whose TTFT met the SLO (NaN when none was)."""
        if not self.ttft_ms:
            return math.nan
        return sum(t <= self.slo_ms for t in self.ttft_ms) / len(self.ttft_ms)

    def peak_gb(self) -> float:
        """Highest summed PSS sampled (GB)."""
        return self.peak_sample()[1] / GB_MB

    def peak_sample(self) -> tuple[float, float, int]:
        """The sample of the highest summed PSS: (s into the window, MB, containers)."""
        return max(self.memory_mb, key=lambda sample: sample[1], default=(0.0, 0.0, 0))

    def memory_gb_s(self) -> float:
        """Summed PSS integrated over the replay (GB·s of wall time)."""
        return sum(mb for _, mb, _ in self.memory_mb) * SAMPLE_PERIOD_S / GB_MB

    def total_usd(self, prices: PriceSheet) -> float:
        """What serving the window cost: containers' memory limits over their lifetime
        (idle, starting and busy) plus the activations' accelerator-seconds; for the
        serverful reference, keeping it on."""
        if self.always_on_usd is not None:
            return self.always_on_usd
        return self.accelerator_usd + self.limits_gb_s * prices.gb_second


@dataclass(frozen=True)
class SystemSetup:
    """How a pool system is configured."""

    sharing: bool
    policy_index: int  # into bench_trace_policies.policies: 0 fixed, 2 histogram + pre-load
    batching: BatchingConfig
    namespace_containers: bool = False  # LORAFAAS_SHARED_CONTAINERS=namespace


def system_setup(system: str, slo_ms: float) -> SystemSetup:
    """The pool configuration of a serverless system."""
    no_batching = BatchingConfig(enabled=False, default_slo_ms=slo_ms)
    if system == "openwhisk":
        return SystemSetup(False, 0, no_batching)
    if system == "instainfer":
        return SystemSetup(False, 2, no_batching)
    if system in ("full", "namespace"):
        return SystemSetup(True, 2, BatchingConfig(enabled=True, eager=True,
                                                   default_slo_ms=slo_ms),
                           namespace_containers=system == "namespace")
    raise ValueError(f"not a pool system: {system}")


def namespace_sharing(experiment: Experiment, compress: float) -> SharingConfig:
    """The `namespace` system's namespace containers: the platform's default thresholds
    (requests per wall second), its dwell and rate time constants divided by the
    compression as every other time constant."""
    placement = PlacementConfig(mode=SharedContainers.NAMESPACE, dwell_s=30.0 / compress,
                                rate_tau_s=30.0 / compress)
    return SharingConfig(placement, memory_mb=NAMESPACE_MEMORY_MB[experiment.backbone],
                         adapter_budget_mb=NAMESPACE_ADAPTER_BUDGET_MB)


def pool_memory_mb(experiment: Experiment, memory_mb: int, stem_cells: int) -> int:
    """The pool's size (the sum of its containers' limits): the platform's default, or
    for the large backbone room for every function and stem cell at the system's own
    container limit. The large cell compares memory, so both systems get the same number
    of containers: any difference at the peak is what each container holds, not how many
    containers a system was allowed (with the default's room, a sharing pool could hold
    three times as many containers as one without)."""
    if experiment.backbone != "large":
        return POOL_MEMORY_MB
    return (experiment.functions + stem_cells) * memory_mb


def container_torch_threads(batching: BatchingConfig) -> int:
    """Each container's torch threads, as the platform sets them (`Settings.
    container_torch_threads`): with batching, the cores shared by the M batches running at
    once; without, torch's default."""
    if not batching.enabled:
        return 0
    return max(1, (os.cpu_count() or 1) // batching.max_concurrent)


def function_memory_mb(sharing: bool, backbone_dir: Path, shared_mb: int) -> int:
    """A container's memory limit: `shared_mb` when it maps the shared backbone; without
    sharing it also holds the backbone (twice while the checkpoint's bytes become tensors),
    rounded up to 256 MB."""
    if sharing:
        return shared_mb
    backbone_mb = (backbone_dir / "model.safetensors").stat().st_size / 2**20
    return shared_mb + 256 * math.ceil(2 * backbone_mb / 256)


def grid(args: argparse.Namespace) -> list[Experiment]:
    """The experiments the issue's targets need (or the quick smoke run)."""
    if args.quick:
        return [Experiment("quick", "code", "bursty", 8, "zipf", "demo", SYSTEMS, args.rate)]
    if args.reduced:
        return [Experiment("reduced", "conv", "steady", 32, "zipf", "demo",
                           ("namespace", "full", "serverful"), args.rate)]
    # The code trace holds the burstiest window (inter-arrival CV 18 against the conv
    # trace's 1.1); the conv trace the steadiest (CV 0.99).
    serverless = SYSTEMS[:3]
    cells = {
        "headline": Experiment("headline", "code", "bursty", 32, "zipf", "demo", SYSTEMS,
                               args.rate),
        # Half the rate: a token of the large backbone costs ~10× the demo's on a CPU.
        "large": Experiment("large", "code", "bursty", 8, "zipf", "large",
                            ("instainfer", "full"), args.rate / 2),
        "n8": Experiment("n8", "code", "bursty", 8, "zipf", "demo", serverless, args.rate),
        "n128": Experiment("n128", "code", "bursty", 128, "zipf", "demo",
                           ("openwhisk", "full", "serverful"), args.rate),
        # The headline's requests spread evenly: no popular function to keep warm.
        "uniform": Experiment("uniform", "code", "bursty", 32, "uniform", "demo",
                              ("openwhisk", "full", "serverful"), args.rate),
    }
    for multiple in (1, 2, 4):
        rate = args.rate * multiple
        cells[f"steady{multiple}"] = Experiment(f"steady{multiple}", "conv", "steady", 32,
                                                "zipf", "demo", ("full", "serverful"), rate)
    chosen = args.experiments.split(",") if args.experiments else list(cells)
    return [cell for name, cell in cells.items()
            if name in chosen or (name.startswith("steady") and "steady" in chosen)]


def make_workload(experiment: Experiment, args: argparse.Namespace
                  ) -> tuple[Workload, Window]:
    """The experiment's requests: its trace's bursty or steady window, thinned and spread."""
    trace = TRACES[experiment.trace]
    rows = read_trace(trace)
    window = bursty_and_steady(trace_windows([t for t, _, _ in rows],
                                             args.window_min))[experiment.window]
    options = argparse.Namespace(
        window_start_min=window.start_min, window_min=args.window_min,
        compress=args.compress, rate=experiment.rate, functions=experiment.functions,
        warmup_min=args.warmup_min,
        zipf=args.zipf if experiment.popularity == "zipf" else 0.0, seed=args.seed)
    return build_workload(rows, options, trace), window


def prompt_of(request: TraceRequest) -> str:
    """The request's prompt: its scaled number of words."""
    words = PROMPT_TEXT.split()
    return " ".join(words[i % len(words)] for i in range(request.prompt_words))


async def replay_pool(parts: BenchParts, workload: Workload, experiment: Experiment,
                      system: str, args: argparse.Namespace, prices: PriceSheet) -> SystemRun:
    """Run the workload through a fresh pool configured as `system`."""
    setup = system_setup(system, args.slo_ms)
    policy = policies(args.compress, args.stem_cells)[setup.policy_index]
    memory_mb = function_memory_mb(setup.sharing, parts.models.backbone_dir,
                                   args.shared_memory_mb or SHARED_MEMORY_MB[experiment.backbone])
    pool = parts.pool({"memory_mb": pool_memory_mb(experiment, memory_mb, args.stem_cells),
                       "max_instances": 4,
                       "stem_memory_mb": memory_mb, "backbone_sharing": setup.sharing,
                       "cold_start_window_s": 60 / args.compress,
                       "torch_threads": container_torch_threads(setup.batching)})
    sharing = namespace_sharing(experiment, args.compress) \
        if setup.namespace_containers else None
    maintenance, invoker = policy_invoker(pool, policy, args.period, setup.batching,
                                          args.spare_share, sharing)
    functions = trace_functions(parts.models, "eval", experiment.functions, memory_mb)
    run = SystemRun(system, experiment, workload, slo_ms=args.slo_ms)
    extra_pids = [parts.server_pid] if setup.sharing and parts.server_pid else []
    published = parts.mounts.publish_dir / "model.safetensors"
    unmapped_mb = published.stat().st_size / 2**20 if setup.sharing else 0.0
    ticking = asyncio.create_task(maintenance.run())
    try:
        async with invoker.dispatcher.running_loop():
            await _settle(pool, policy.prewarm.min_count)
            started = time.time()
            window_start = started + workload.warmup_s
            sampling = asyncio.create_task(_sample(run, window_start, lambda: _pool_pids(
                pool, extra_pids), lambda: _limits_mb(pool), unmapped_mb))
            await asyncio.gather(*(_one_pool(invoker, functions[r.function], r, started, run,
                                             prices) for r in workload.requests))
            await asyncio.sleep(max(0.0, window_start + workload.duration_s - time.time()))
            sampling.cancel()
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await pool.shutdown()
    return run


def _pool_pids(pool: ContainerPool, extra: list[int]) -> tuple[list[int], int]:
    containers = pool.containers()
    return [c.info.pid for c in containers] + extra, len(containers)


def _limits_mb(pool: ContainerPool) -> float:
    return float(sum(c.memory_mb for c in pool.containers()))


async def _settle(pool: ContainerPool, stem_cells: int) -> None:
    """Wait until the stem cells a system keeps from the start are up ("on deploy")."""
    deadline = time.monotonic() + 600
    while sum(c.state is ContainerState.STEM for c in pool.containers()) < stem_cells:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{stem_cells} stem cells did not start within 600 s")
        await asyncio.sleep(0.5)


async def _one_pool(invoker: Invoker, function: FunctionRef, request: TraceRequest,
                    started: float, run: SystemRun, prices: PriceSheet) -> None:
    """Send one request at its time; record its latencies, start kind and cost."""
    arrival = started + request.at_s
    await asyncio.sleep(max(0.0, arrival - time.time()))
    activation = ActivationRequest(
        activation_id=uuid.uuid4().hex, namespace="eval", name=function.path,
        version="0.0.1", subject="eval", function=function,
        parameters={"prompt": prompt_of(request), "max_tokens": request.max_tokens},
        limits={"timeout": 300_000, "max_tokens": 64, "memory": function.memory_mb},
        received_at=arrival)
    result = await invoker.run(activation)
    if not request.measured:  # warm-up: it only teaches the policies the functions' habits
        return
    annotations = {a["key"]: a["value"] for a in result.annotations}
    if result.status_code != 0 or annotations.get("ttft") is None:
        run.errors += 1
        logger.warning("%s: request failed: %s", run.system, result.response)
        return
    run.ttft_ms.append(float(annotations["ttft"]))
    run.e2e_ms.append(result.end_ms - arrival * 1000)
    run.kinds[str(annotations["startKind"])] += 1
    for row in meter_activation(activation, result, prices).rows:
        if row.kind == ACTIVATION:
            run.billed_usd += row.cost_total
            run.accelerator_usd += row.cost_accelerator


async def replay_serverful(parts: BenchParts, workload: Workload, experiment: Experiment,
                           args: argparse.Namespace, prices: PriceSheet) -> SystemRun:
    """Run the workload through the always-on serverful reference."""
    adapters = sorted(parts.models.adapters.values())
    names = {f"f{i}": adapters[i % len(adapters)] for i in range(experiment.functions)}
    server = ServerfulProcess(parts.run_dir / f"sf-{uuid.uuid4().hex[:6]}.sock",
                              parts.models.backbone_dir, names)
    run = SystemRun("serverful", experiment, workload, slo_ms=args.slo_ms)
    async with server.running():
        started = time.time()
        window_start = started + workload.warmup_s
        sampling = asyncio.create_task(_sample(run, window_start, lambda: ([server.pid], 0),
                                               lambda: 0.0, 0.0))
        await asyncio.gather(*(_one_serverful(server, r, started, run)
                               for r in workload.requests))
        await asyncio.sleep(max(0.0, window_start + workload.duration_s - time.time()))
        sampling.cancel()
    window_s = max(workload.duration_s, time.time() - window_start)
    run.always_on_usd = always_on_cost(window_s, run.peak_gb(), prices.accelerator_second,
                                       prices.gb_second)
    return run


async def _one_serverful(server: ServerfulProcess, request: TraceRequest, started: float,
                         run: SystemRun) -> None:
    arrival = started + request.at_s
    await asyncio.sleep(max(0.0, arrival - time.time()))
    sent_late_ms = (time.time() - arrival) * 1000
    try:
        answer = await server.generate(f"f{request.function}", prompt_of(request),
                                       request.max_tokens)
    except aiohttp.ClientError as error:  # counted as failed, like the pool systems' failures
        if not request.measured:
            return
        run.errors += 1
        logger.warning("serverful: request failed: %s", error)
        return
    if not request.measured:
        return
    run.ttft_ms.append(sent_late_ms + answer["ttft_ms"])
    run.e2e_ms.append(sent_late_ms + answer["e2e_ms"])


async def _sample(run: SystemRun, started: float,
                  pids: Callable[[], tuple[list[int], int]], limits_mb: Callable[[], float],
                  unmapped_mb: float) -> None:
    """Sum the PSS of the system's processes every sample period from `started` (the
    window's start, after the warm-up) until cancelled.

    With sharing, the published weights sit in tmpfs: PSS charges them to the containers
    mapping them, and `unmapped_mb` is added while no container does."""
    await asyncio.sleep(max(0.0, started - time.time()))
    while True:
        ids, containers = pids()
        kb = await asyncio.to_thread(_summed_pss_kb, ids)
        mb = kb / 1024 + (unmapped_mb if containers == 0 else 0.0)
        run.memory_mb.append((time.time() - started, mb, containers))
        run.limits_gb_s += limits_mb() / GB_MB * SAMPLE_PERIOD_S
        await asyncio.sleep(SAMPLE_PERIOD_S)


def _summed_pss_kb(pids: list[int]) -> int:
    return sum(pss_kb(pid) for pid in pids)


async def run_experiment(experiment: Experiment, args: argparse.Namespace,
                         prices: PriceSheet) -> list[SystemRun]:
    """Replay one experiment's workload in each of its systems."""
    workload, window = make_workload(experiment, args)
    print(f"[{experiment.name}] {workload.description}; window CV {window.cv:.2f}", flush=True)
    models: DemoModels | None = None
    if experiment.backbone == "large":
        models = await asyncio.to_thread(build_large_models, lorafaas_home() / "models")
    runs = []
    async with bench_parts(models) as parts:
        wanted = args.systems.split(",") if args.systems else experiment.systems
        for system in (s for s in experiment.systems if s in wanted):
            run = (await replay_serverful(parts, workload, experiment, args, prices)
                   if system == "serverful"
                   else await replay_pool(parts, workload, experiment, system, args, prices))
            run.measured = measured_stamp()
            runs.append(run)
            print(f"[{experiment.name}] {system}: {run.served} served, {run.errors} failed, "
                  f"{dict(run.kinds)}, peak {run.peak_gb():.2f} GB, "
                  f"cost ${run.total_usd(prices):.6f}", flush=True)
    return runs


def measured_stamp() -> str:
    """Now, and the commit of the code measured (`-dirty` with uncommitted changes)."""
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=False).stdout.strip()
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y-%m-%d %H:%M} UTC, commit {described or 'unknown'}"


async def measure(args: argparse.Namespace) -> list[SystemRun]:
    """Every experiment of the grid, one after the other."""
    prices = price_sheet(load_settings())
    runs = []
    for experiment in grid(args):
        runs += await run_experiment(experiment, args, prices)
    return runs


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: N = 8, a 3-minute window, compressed 6×")
    parser.add_argument("--reduced", action="store_true",
                        help="namespace vs full (off) vs serverful on the steady window, "
                             "N = 32, a 2-minute warm-up, at --rate (default then 1); "
                             "printed only")
    parser.add_argument("--experiments", default="",
                        help="comma-separated: headline, large, n8, n128, steady (all)")
    parser.add_argument("--window-min", type=int, default=10)
    parser.add_argument("--warmup-min", type=int, default=10,
                        help="trace minutes replayed before the window, not measured: the "
                             "policies learn the functions' habits, as a running platform has")
    parser.add_argument("--systems", default="",
                        help="comma-separated subset of openwhisk, instainfer, full, "
                             "serverful (default: each experiment's own)")
    parser.add_argument("--compress", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=None,
                        help="requests per wall second (default 0.5; 1 with --reduced)")
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--stem-cells", type=int, default=3)
    parser.add_argument("--slo-ms", type=float, default=2000.0)
    parser.add_argument("--spare-share", type=float, default=0.5,
                        help="share of the pool's memory the pre-loading systems fill with "
                             "the most valuable functions (LORAFAAS_PRELOAD_SPARE_SHARE)")
    parser.add_argument("--shared-memory-mb", type=int, default=0,
                        help="a container's memory limit when it maps the shared backbone "
                             "(default: measured per backbone, SHARED_MEMORY_MB)")
    parser.add_argument("--period", type=float, default=0.5, help="maintenance period (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the report from docs/evaluation/"
                             "runs.json")
    parser.add_argument("--keep", action="store_true",
                        help="report with the experiments measured before (docs/evaluation/"
                             "runs.json) that this run does not measure again")
    args = parser.parse_args()
    if args.rate is None:
        args.rate = 1.0 if args.reduced else 0.5
    if args.quick:
        args.window_min, args.compress = 3, 6.0
    if args.reduced:
        args.warmup_min = 2
    return args


def summary(runs: list[SystemRun], prices: PriceSheet) -> str:
    """One line per run: TTFT percentiles, SLO attainment, starts, peak memory, cost."""
    lines = []
    for run in runs:
        ttft = sorted(run.ttft_ms)

        def pct(q: float, ttft: list[float] = ttft) -> float:
            return ttft[min(len(ttft) - 1, int(q * len(ttft)))] if ttft else math.nan

        per_1k = run.total_usd(prices) / max(1, run.served) * 1000
        lines.append(f"{run.experiment.name} {run.system}: {run.served} served, {run.errors} "
                     f"failed; TTFT p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms; SLO "
                     f"{100 * run.slo_attainment():.1f}%; kinds {dict(run.kinds)}; peak "
                     f"{run.peak_gb():.2f} GB; ${per_1k:.6f} per 1,000 requests")
    return "\n".join(lines)


def main() -> None:
    """Measure, then write docs/evaluation.md and its plots."""
    from evaluation_report import RUNS, write_report
    from evaluation_results import load_runs, merged

    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.report_only:
        runs = load_runs(RUNS)
    else:
        runs = asyncio.run(measure(args))
        if args.reduced:
            print(summary(runs, price_sheet(load_settings())))
            return
        if args.keep:
            runs = merged(load_runs(RUNS), runs)
    print(write_report(runs, args, price_sheet(load_settings())))


if __name__ == "__main__":
    main()
