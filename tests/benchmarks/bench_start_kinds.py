"""Time to first token by start kind: cold, stem cell (pre-warmed), pre-loaded, warm.

    .venv/bin/python tests/benchmarks/bench_start_kinds.py [--rounds N]

Runs the real pool on the real Docker engine with the demo backbone and adapter. Each round
measures the four kinds side by side; TTFT = the time to get a container ready (acquire)
plus the runtime's time to the first token. Writes docs/benchmarks/start_kinds.md (medians,
each artifact's share of the cold start, the machine, the command) and start_kinds.png.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from harness import OUT_DIR, bench_parts, machine

from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.names import QualifiedName

KINDS = ("cold", "prewarm", "preloaded", "warm")
ARTIFACTS = ("libraries", "backbone", "adapter", "tokenizer", "kernels")
COMMAND = ".venv/bin/python tests/benchmarks/bench_start_kinds.py"
PAYLOAD = {"value": {"prompt": "Tell me about the weather today.", "max_tokens": 8},
           "max_tokens_limit": 64}


async def one_round(pool: ContainerPool, adapter_dir: Path, round_no: int
                    ) -> dict[str, tuple[float, dict[str, float]]]:
    """TTFT (ms) and the init breakdown of each start kind, for fresh functions."""
    def fresh(kind: str) -> FunctionRef:
        return FunctionRef(key=f"bench/{kind}{round_no}", name=QualifiedName.from_path(f"bench/{kind}{round_no}"),
                           adapter_dir=adapter_dir, memory_mb=1024)

    results: dict[str, tuple[float, dict[str, float]]] = {}
    preloaded, prewarmed, cold = fresh("preloaded"), fresh("prewarm"), fresh("cold")
    results["cold"] = await timed(pool, cold, "cold")
    await pool.preload(preloaded)
    await pool.add_stem_cell()
    for kind, function in (("prewarm", prewarmed), ("preloaded", preloaded), ("warm", cold)):
        results[kind] = await timed(pool, function, kind)
    await pool.shutdown()
    return results


async def timed(pool: ContainerPool, function: FunctionRef, kind: str
                ) -> tuple[float, dict[str, float]]:
    """TTFT (ms) of one request that must get a container of the given start kind."""
    started = time.monotonic()
    lease = await pool.acquire(function)
    if lease.start_kind != kind:
        raise RuntimeError(f"expected a {kind} start, got {lease.start_kind}")
    outcome = await lease.container.client.run(PAYLOAD)
    ready_ms = (time.monotonic() - started) * 1000 - outcome.timings["total"]
    await pool.release(lease.container)
    return ready_ms + outcome.timings["ttft"], lease.init_breakdown


async def measure(rounds: int) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """Run the rounds with one backbone server and one pool per round."""
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {k: [] for k in KINDS}
    async with bench_parts() as parts:
        for round_no in range(rounds):
            pool = parts.pool()
            for kind, sample in (await one_round(pool, parts.models.adapters["pirate"],
                                                 round_no)).items():
                samples[kind].append(sample)
            print(f"round {round_no + 1}/{rounds}: " + ", ".join(
                f"{k} {samples[k][-1][0]:.0f} ms" for k in KINDS), flush=True)
    return samples


def report(samples: dict[str, list[tuple[float, dict[str, float]]]], rounds: int) -> str:
    """The Markdown report."""
    medians = {k: statistics.median(t for t, _ in samples[k]) for k in KINDS}
    lines = ["# Time to first token by start kind", "",
             f"Command: `{COMMAND} --rounds {rounds}`  ",
             (f"Machine: {machine()}; demo backbone (Llama, 30M parameters, float32), demo "
              f"adapter `pirate`, 8 new tokens."), "",
             "| start kind | TTFT p50 ms | × warm | " + " | ".join(
                 f"{a} ms" for a in ARTIFACTS) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in ARTIFACTS) + " |"]
    for kind in KINDS:
        parts = [statistics.median(b.get(a, 0.0) for _, b in samples[kind]) for a in ARTIFACTS]
        lines.append(f"| {kind} | {medians[kind]:.0f} | {medians[kind] / medians['warm']:.2f} | "
                     + " | ".join(f"{p:.0f}" for p in parts) + " |")
    cold_parts = {a: statistics.median(b.get(a, 0.0) for _, b in samples["cold"])
                  for a in ARTIFACTS}
    total = sum(cold_parts.values()) or 1.0
    lines += ["", "Where a cold start's initialization goes: " + ", ".join(
        f"{a} {100 * v / total:.0f}%" for a, v in cold_parts.items()) + ".", "",
        f"Pre-loaded vs warm: {medians['preloaded'] / medians['warm']:.2f}× (target ≤ 1.25×).",
        "", "![TTFT by start kind](start_kinds.png)", ""]
    return "\n".join(lines)


def plot(samples: dict[str, list[tuple[float, dict[str, float]]]]) -> None:
    """Stacked bars: per start kind, the init artifacts and the rest of the TTFT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for index, kind in enumerate(KINDS):
        bottom = 0.0
        for artifact in ARTIFACTS:
            value = statistics.median(b.get(artifact, 0.0) for _, b in samples[kind])
            axis.bar(index, value, bottom=bottom, label=artifact if index == 0 else None)
            bottom += value
        rest = statistics.median(t for t, _ in samples[kind]) - bottom
        axis.bar(index, max(rest, 0.0), bottom=bottom, color="grey",
                 label="queue + prefill" if index == 0 else None)
    axis.set_xticks(range(len(KINDS)), KINDS)
    axis.set_ylabel("TTFT p50 (ms)")
    axis.set_title("Time to first token by start kind")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(OUT_DIR / "start_kinds.png", dpi=120)


def main() -> None:
    """Measure, then write the report and the plot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    samples = asyncio.run(measure(args.rounds))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "start_kinds.md").write_text(report(samples, args.rounds))
    plot(samples)
    print((OUT_DIR / "start_kinds.md").read_text())


if __name__ == "__main__":
    main()
