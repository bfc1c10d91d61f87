"""The engine benchmark's arithmetic and its report: the issue's targets, the Markdown table,
the plot. Pure functions of the medians (ms), so a unit test can check them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# What each median is (all in ms; decode figures per decode step).
LABELS = {
    "floor b1": "floor: one matrix-vector pass over the weights (batch 1)",
    "floor b8": "bare matrix products over the same weights, batch 8",
    "lorafaas b1": "LoRAFaaS warm function, decode step, batch 1",
    "lorafaas b1 docker cgroup": ("LoRAFaaS warm function, decode step, batch 1, in "
                                  "Docker's default cgroup"),
    "lorafaas b4": "LoRAFaaS warm function, decode step, batch 4",
    "lorafaas b8": "LoRAFaaS warm function, decode step, batch 8",
    "peft b1": "peft `PeftModel.generate`, decode step, batch 1",
    "llama.cpp 1t": "llama.cpp (GGUF f32 + GGUF LoRA), decode step, 1 thread",
    "llama.cpp 2t": "llama.cpp (GGUF f32 + GGUF LoRA), decode step, 2 threads",
    "prefill": "one prefill forward of the prompt (peft, in-process)",
    "lorafaas ttft": "LoRAFaaS warm TTFT (the runtime's, 1 new token)",
    "import torch": "bare `import torch` in the runtime image",
    "libraries": "cold start's `libraries` step (runtime container)",
    "warm overhead p50": "warm-path overhead p50 (end-to-end − generation)",
    "floor b1 cpu": "floor, CPU time of the measuring thread",
    "lorafaas b1 cpu": "LoRAFaaS batch 1, CPU time of the runtime's process per decode step",
}
# CPU-time figures: the load on a shared machine delays them less than wall times (a
# process waiting for a core spends none), so their ratio is the steadier check of the
# engine's own cost. Their ratio column is to the floor's CPU time.
_CPU = {"floor b1 cpu", "lorafaas b1 cpu"}


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a measured figure against its limit (met when ≤)."""

    name: str
    value: float
    limit: float
    formed: str  # how the value is formed from the medians

    @property
    def met(self) -> bool:
        """Whether the figure is within its limit."""
        return self.value <= self.limit


def targets(m: Mapping[str, float]) -> list[Target]:
    """The issue's targets, from the medians (the warm path's only where it was measured)."""
    bare_ratio = m["floor b8"] / m["floor b1"]
    overhead = ([Target("warm-path overhead at most 5 ms p50", m["warm overhead p50"], 5.0,
                        "ms")] if "warm overhead p50" in m else [])
    return [
        Target("batch-1 decode within 1.3× the floor", m["lorafaas b1"] / m["floor b1"], 1.3,
               "LoRAFaaS batch 1 ÷ floor"),
        Target("batch-1 decode no slower than llama.cpp, 1 thread",
               m["lorafaas b1"] / m["llama.cpp 1t"], 1.0, "LoRAFaaS batch 1 ÷ llama.cpp 1t"),
        Target("batch-8 ÷ batch-1 step within 1.2× bare matmuls' ratio",
               (m["lorafaas b8"] / m["lorafaas b1"]) / bare_ratio, 1.2,
               f"(LoRAFaaS b8 ÷ b1) ÷ (bare b8 ÷ b1 = {bare_ratio:.2f})"),
        Target("warm TTFT within 1.3× one prefill forward", m["lorafaas ttft"] / m["prefill"],
               1.3, "TTFT ÷ prefill"),
        Target("libraries step within 1.15× a bare `import torch`",
               m["libraries"] / m["import torch"], 1.15, "libraries ÷ import torch"),
        *overhead]


def markdown(m: Mapping[str, float], *, command: str, machine: str, loads: str,
             rounds: int, tokens: int, weights_mb: float, prompt_tokens: int,
             engine: str, calls: int, unmeasured: tuple[str, ...] = ()) -> str:
    """The report: the medians, the targets, what is not met (or not measured: `unmeasured`,
    each a line saying why), and how it was measured."""
    floor = m["floor b1"]
    rows = ["| measure | median ms | ÷ floor |", "| --- | ---: | ---: |"]
    for key, label in LABELS.items():
        if key in m:
            base = m.get("floor b1 cpu", 0.0) if key in _CPU else floor
            ratio = f"{m[key] / base:.2f}" if key in _PER_STEP | _CPU and base else ""
            rows.append(f"| {label} | {m[key]:.2f} | {ratio} |")
    checks = targets(m)
    target_rows = ["| target | measured | limit | how | met |",
                   "| --- | ---: | ---: | --- | --- |"]
    target_rows += [f"| {t.name} | {t.value:.2f} | {t.limit:.2f} | {t.formed} | "
                    f"{'yes' if t.met else '**no**'} |" for t in checks]
    missed = [f"- {t.name}: {t.value:.2f} against {t.limit:.2f}" for t in checks if not t.met]
    missed += [f"- not measured: {line}" for line in unmeasured]
    return "\n".join([
        "# The engine: decode speed against the memory floor, peft and llama.cpp", "",
        f"Command: `{command}`  ",
        (f"Machine: {machine}; load average {loads}. The machine is shared with other work "
         "while this runs, so absolute figures move between runs: compare the rows of one "
         "run."), "",
        (f"One run, the same weights throughout: the demo backbone (float32, {weights_mb:.0f} "
         f"MB of matrices a decode step reads) with the demo adapter `pirate`; one torch "
         f"thread. Rows of {tokens} greedy tokens with EOS ignored, a {prompt_tokens}-token "
         f"prompt; each figure is the median of {rounds} interleaved rounds. LoRAFaaS runs "
         f"in a real runtime container (Docker, the pool's own client, engine `{engine}`); "
         "peft and the floor in this process; llama.cpp (llama-cpp-python built from its "
         "sdist, the backbone converted to GGUF f32 and the adapter to a GGUF LoRA by the "
         "converters that sdist vendors) in a process of its own. The floor is the weights' "
         "bytes at the bandwidth a matrix-vector product reaches over them: the time of that "
         f"product. The warm-path overhead is `bench_warm_path.py`'s, over {calls} calls."),
        "", _PLACEMENT, "", *rows, "", *_below_floor(m), "## Targets (issue 14)", "",
        *target_rows, "", *_cpu_check(m),
        "## Not met", "", *(missed or ["- none"]), "",
        "![decode ms per step and the targets](engine.png)", ""])


_PLACEMENT = (
    "The measured warm function's cgroup is a top-level one (`cgroup_parent=\"/\"`), so "
    "that it waits for a core on the same terms as the in-process measures: under cgroup "
    "v1 with the cgroupfs driver, Docker's default puts every container in one `docker` "
    "group weighted as a single host task, which on a busy machine hands all containers "
    "together one task's share. A second warm function in that default placement is "
    "measured beside it (its row says so).")


def _cpu_check(m: Mapping[str, float]) -> list[str]:
    """The first target's figure formed from CPU times instead (when both were measured)."""
    if "lorafaas b1 cpu" not in m or not m.get("floor b1 cpu"):
        return []
    return [(f"In CPU time, which the load delays less: LoRAFaaS batch 1 ÷ floor = "
             f"{m['lorafaas b1 cpu'] / m['floor b1 cpu']:.2f} ({m['lorafaas b1 cpu']:.2f} ms "
             f"of the runtime process's CPU per step against {m['floor b1 cpu']:.2f} ms for "
             "the floor's product)."), ""]


def _below_floor(m: Mapping[str, float]) -> list[str]:
    """A note where a decode figure is under the floor: load slowed the floor's rounds."""
    below = [k for k in sorted(_PER_STEP) if k in m and m[k] < m["floor b1"]]
    if not below:
        return []
    return [(f"Below the floor: {', '.join(below)}. The floor is this run's matrix-vector "
             "time, as slowed by the load in its rounds, not a constant of the machine; a "
             "figure under it was slowed less."), ""]


_PER_STEP = {"floor b1", "floor b8", "lorafaas b1", "lorafaas b4", "lorafaas b8", "peft b1",
             "llama.cpp 1t", "llama.cpp 2t", "lorafaas b1 docker cgroup"}


def plot(m: Mapping[str, float], path: Path) -> None:
    """Left: ms per decode step side by side; right: each target's figure ÷ its limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (steps, ratios) = plt.subplots(1, 2, figsize=(11, 4.5))
    keys = [k for k in LABELS if k in _PER_STEP and k in m]
    steps.barh(range(len(keys)), [m[k] for k in keys],
               color=["grey" if k.startswith("floor") else "tab:blue" if
                      k.startswith("lorafaas") else "tab:orange" for k in keys])
    steps.set_yticks(range(len(keys)), keys)
    steps.invert_yaxis()
    steps.set_xlabel("ms per decode step (median)")
    steps.set_title("Decode step, same weights")
    checks = targets(m)
    ratios.barh(range(len(checks)), [t.value / t.limit for t in checks],
                color=["tab:green" if t.met else "tab:red" for t in checks])
    ratios.axvline(1.0, color="black", linewidth=1)
    ratios.set_yticks(range(len(checks)), [t.name for t in checks], fontsize=7)
    ratios.invert_yaxis()
    ratios.set_xlabel("measured ÷ target limit (≤ 1 met)")
    ratios.set_title("Issue 14's targets")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
