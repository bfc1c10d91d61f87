"""Time the pre-loading planner and compare it with the optimum; run on demand, not by pytest.

    .venv/bin/python tests/benchmarks/bench_preloading.py

Writes docs/benchmarks/preloading.md (the tables, the machine, the command) and
docs/benchmarks/preloading.png (planning time against functions, log-log). The functions come
from the unit tests' generator, so the quality figures are those the tests check.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from random import Random
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "platform"), str(REPO_ROOT)]  # run as a script from anywhere

from tests.unit.test_preloading import random_function, random_instance

from lorafaas.invoker.preloading import (
    Capacity,
    FunctionProfile,
    Tier,
    plan_preloading,
    plan_preloading_exact,
)

SIZES = (10, 100, 1_000, 5_000)
RUNS = 50
INSTANCES = 1_000
OUT_DIR = REPO_ROOT / "docs" / "benchmarks"
COMMAND = ".venv/bin/python tests/benchmarks/bench_preloading.py"


class Row(NamedTuple):
    """The timings of one workload size, in milliseconds."""

    functions: int
    median: float
    low: float
    p90: float
    cpu_median: float
    containers: int


def workload(count: int) -> tuple[list[FunctionProfile], Capacity]:
    """Functions on two accelerators, with 40% of the host memory and half the accelerator
    memory they could take, so that the planner has to choose."""
    rng = Random(count)
    functions = [random_function(rng, f"f{i}", ["gpu0", "gpu1"]) for i in range(count)]

    def demand(tier: Tier, device: str | None = None) -> int:
        return sum(a.memory_bytes.get(tier, 0) for p in functions for a in p.artifacts
                   if device is None or p.accelerator == device)

    devices = {name: demand(Tier.ACCELERATOR, name) // 2 for name in ("gpu0", "gpu1")}
    return functions, Capacity(int(0.4 * demand(Tier.HOST)), devices)


def timings_ms(call: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each run, after one warm-up run."""
    call()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def timing_rows() -> list[Row]:
    """The timings of each workload size."""
    rows = []
    for count in SIZES:
        functions, capacity = workload(count)
        wall, cpu = timings_ms(partial(plan_preloading, functions, capacity), RUNS)
        containers = plan_preloading(functions, capacity).containers
        p90 = statistics.quantiles(wall, n=10)[-1]
        rows.append(Row(count, statistics.median(wall), min(wall), p90, statistics.median(cpu),
                        containers))
        print(f"{count:>6} functions: median {rows[-1].median:.2f} ms", flush=True)
    return rows


def interpreter_speed_ms() -> float:
    """CPU milliseconds of a plain loop of a million additions, to scale the figures by."""
    def loop() -> int:
        total = 0
        for i in range(1_000_000):
            total += i
        return total

    return min(timings_ms(loop, 5)[1])


def ratios(seed: int, count: int) -> list[float]:
    """Greedy over optimal value on random small instances (the unit test's seed is 2024)."""
    rng = Random(seed)
    result = []
    for _ in range(count):
        functions, capacity = random_instance(rng)
        optimum = plan_preloading_exact(functions, capacity).value
        result.append(plan_preloading(functions, capacity).value / optimum if optimum else 1.0)
    return result


def quality_row(label: str, values: list[float]) -> str:
    """One Markdown row of the ratio distribution."""
    cuts = statistics.quantiles(values, n=20)  # every 5th percentile
    within = sum(r >= 0.9 for r in values) / len(values)
    optimal = sum(r >= 1 - 1e-9 for r in values) / len(values)
    return (f"| {label} | {len(values)} | {within:.1%} | {optimal:.1%} | {min(values):.3f} |"
            f" {cuts[0]:.3f} | {cuts[4]:.3f} | {statistics.median(values):.3f} |"
            f" {statistics.mean(values):.4f} |")


def machine() -> str:
    """The processor, cores, Python and the load while the benchmark ran."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()},"
            f" {platform.python_implementation()} {platform.python_version()};"
            f" load average (1, 5, 15 min) at the end of the run {load}")


def markdown(rows: list[Row], quality: list[str], speed_ms: float) -> str:
    """The report."""
    lines = [
        "# Pre-loading planner: time and quality", "",
        f"Command: `{COMMAND}`  ", f"Machine: {machine()}  ",
        f"Interpreter speed: a loop of a million additions takes {speed_ms:.0f} ms of CPU.", "",
        f"## Time of `plan_preloading` ({RUNS} runs after a warm-up)", "",
        ("Functions from the unit tests' generator on two accelerators; the host budget is 40%"
         " and each accelerator's half of what they could take. Wall clock, and the CPU time"
         " of the process, which other work on the machine disturbs less."), "",
        "| functions | median ms | min ms | p90 ms | CPU median ms | containers planned |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r.functions:,} | {r.median:.2f} | {r.low:.2f} | {r.p90:.2f} | {r.cpu_median:.2f}"
          f" | {r.containers:,} |" for r in rows),
        "", "## Greedy value over the optimum (exhaustive search)", "",
        ("Random instances of 3-5 functions, 0-2 accelerators, budgets of 15-80% of the demand,"
         " a container limit on a quarter of them."), "",
        "| instances | count | within 10% | optimal | worst | p5 | p25 | median | mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *quality, "",
        "![planning time against functions](preloading.png)", "",
    ]
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Planning time against functions, log-log, the wall clock's min-p90 range shaded."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    counts = [r.functions for r in rows]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.fill_between(counts, [r.low for r in rows], [r.p90 for r in rows], alpha=0.25,
                      label="wall clock, min to p90")
    axes.plot(counts, [r.median for r in rows], marker="o", label="wall clock, median")
    axes.plot(counts, [r.cpu_median for r in rows], marker="s", linestyle=":",
              label="CPU time, median")
    axes.axhline(10, color="grey", linestyle="--", label="10 ms target at 1,000")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("functions")
    axes.set_ylabel("plan_preloading time (ms)")
    axes.set_title("Pre-loading planner")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    """Run the timings and the comparison, write the report and the plot."""
    speed_ms = interpreter_speed_ms()
    rows = timing_rows()
    quality = [quality_row("unit test's (seed 2024)", ratios(2024, 200)),
               quality_row("more (seed 7)", ratios(7, INSTANCES))]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "preloading.md").write_text(markdown(rows, quality, speed_ms))
    plot(rows, OUT_DIR / "preloading.png")
    print(*quality, sep="\n")
    print(f"wrote {OUT_DIR / 'preloading.md'} and {OUT_DIR / 'preloading.png'}")


if __name__ == "__main__":
    main()
