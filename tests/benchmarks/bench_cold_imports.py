"""The "libraries" step of a cold start against a bare `import torch`, in the runtime image.

    .venv/bin/python tests/benchmarks/bench_cold_imports.py [--runs 7] [--before IMAGE]

Each figure comes from a fresh function container (`--network none`, the runtime's user),
timed in the container's own interpreter: what the runtime's entry point reports as its
`libraries` step (`lorafaas.runtime.__main__.LIBRARIES_MS`: every import before the server
listens); a bare `import torch` timed the same way, and the same with the garbage collector
held off (as the runtime imports it); the runtime's imports after torch's, and aiohttp's
after torch's (what the rest costs, the HTTP layer in particular). With `--before IMAGE`
(the runtime image of an older commit, say main's, still in the engine), that image's
libraries step is measured too. Every round takes each figure once, so the machine's load
weighs on all alike. Reports medians and writes docs/benchmarks/cold_imports.md (and the
samples beside it, which `--report-only` writes the page from again).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "platform"))
sys.path.insert(0, str(REPO_ROOT))
OUT = REPO_ROOT / "docs" / "benchmarks" / "cold_imports.md"
SAMPLES = REPO_ROOT / "docs" / "benchmarks" / "cold_imports_samples.json"  # the last run's
COMMAND = ".venv/bin/python tests/benchmarks/bench_cold_imports.py"
NOTE = ("The function runtime imports torch, aiohttp, safetensors and tokenizers before it "
        "listens, with the garbage collector held off and what they made frozen out of later "
        "collections (`lorafaas.runtime.collector`), from bytecode compiled when the image is "
        "built; jinja2 where a checkpoint has a chat template; transformers and peft only "
        "for a function that the general path serves, at its /init, where that import is "
        "reported as that function's `libraries` step.")
TARGET = 1.15  # issue 14: the libraries step within 1.15× a bare import of torch

BARE_TORCH = ("import time; started = time.monotonic(); import torch; "
              "print((time.monotonic() - started) * 1000)")
# The same import with the garbage collector held off, as the runtime imports it: how much
# of the libraries step's gain is torch's own import made cheaper.
HELD_TORCH = "import gc; gc.disable(); " + BARE_TORCH
# What the runtime's HTTP layer costs on top of torch (collector held off, as in the
# runtime): the most that serving its socket without aiohttp could save.
AIOHTTP = ("import gc, time; gc.disable(); import torch; started = time.monotonic(); "
           "import aiohttp.web; print((time.monotonic() - started) * 1000)")
# Everything the runtime imports beyond torch, timed in the same interpreter after it: a
# difference of medians over separate containers would drown in the machine's noise.
BEYOND_TORCH = ("import gc, time; gc.disable(); import torch; started = time.monotonic(); "
                "import lorafaas.runtime.__main__; print((time.monotonic() - started) * 1000)")
LIBRARIES = "import lorafaas.runtime.__main__ as entry; print(entry.LIBRARIES_MS)"
BASELINE = "import torch"


@dataclass(frozen=True)
class Probe:
    """One timed figure: what runs in a fresh container of which image."""

    label: str
    image: str
    code: str


def in_container(image: str, code: str) -> float:
    """Run `code` in a fresh container of `image`; the milliseconds it printed."""
    output = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534",
         "--entrypoint", "python3", image, "-c", code],
        check=True, capture_output=True, text=True, timeout=300).stdout
    return float(output.strip().splitlines()[-1])


def current_image() -> str:
    """The runtime image of this checkout's sources (built if missing)."""
    import docker
    from tests.benchmarks.harness import lorafaas_home

    from lorafaas.images.runtime_image import ensure_runtime_image

    return ensure_runtime_image(docker.from_env(), home=lorafaas_home(), repo_root=REPO_ROOT)


def probes(after: str, before: str | None) -> list[Probe]:
    """The figures of one round, the bare import of torch first."""
    return [Probe(BASELINE, after, BARE_TORCH),
            Probe("import torch, collector held off", after, HELD_TORCH),
            Probe("the runtime's other imports after torch, collector held off", after,
                  BEYOND_TORCH),
            Probe("aiohttp.web after torch, collector held off", after, AIOHTTP),
            *([Probe("libraries step (before)", before, LIBRARIES)] if before else []),
            Probe("libraries step (after)", after, LIBRARIES)]


def measure(round_probes: list[Probe], runs: int) -> dict[str, list[float]]:
    """Each probe's milliseconds, `runs` rounds interleaved so load weighs on all alike."""
    samples: dict[str, list[float]] = {probe.label: [] for probe in round_probes}
    for probe in round_probes:  # the page cache holds each image's files from now on
        in_container(probe.image, probe.code)
    for round_number in range(runs):
        for probe in round_probes:
            samples[probe.label].append(in_container(probe.image, probe.code))
        print(f"round {round_number + 1}/{runs}:",
              {label: round(values[-1]) for label, values in samples.items()}, flush=True)
    return samples


def report(round_probes: list[Probe], samples: dict[str, list[float]], runs: int,
           before: str | None) -> str:
    """The Markdown page."""
    from tests.benchmarks.harness import machine

    torch_ms = statistics.median(samples[BASELINE])
    lines = ["# Cold start: the libraries step", "",
             f"`{COMMAND} --runs {runs}" + (f" --before {before}`" if before else "`"), "",
             (f"Each figure is the median of {runs} fresh containers of the runtime image "
              "(`--network none`, the runtime's user), timed inside the container's "
              "interpreter: the runtime's reported `libraries` step (every import before its "
              "server listens, as /init reports it in `initBreakdown`), a bare "
              "`import torch`, and three figures that say where the rest goes. The rounds "
              "interleave every figure, so the machine's load weighs on all alike."), "",
             "| what | image | median ms | min ms | max ms | ÷ import torch |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for probe in round_probes:
        values = samples[probe.label]
        lines.append(f"| {probe.label} | `{probe.image.split(':')[-1]}` "
                     f"| {statistics.median(values):.0f} | {min(values):.0f} "
                     f"| {max(values):.0f} | {statistics.median(values) / torch_ms:.2f}× |")
    ratio = statistics.median(samples["libraries step (after)"]) / torch_ms
    beyond_ms = statistics.median(samples["the runtime's other imports after torch, "
                                          "collector held off"])
    aiohttp_ms = statistics.median(samples["aiohttp.web after torch, collector held off"])
    verdict = "met" if ratio <= TARGET else "not met"
    paired = {name: statistics.median(a / b for a, b in zip(samples[f"libraries step ({name})"],
                                                            samples[BASELINE], strict=True))
              for name in ("before", "after") if f"libraries step ({name})" in samples}
    held_ms = statistics.median(samples["import torch, collector held off"])
    lines += ["", (f"Target: the libraries step within {TARGET}× a bare `import torch`: "
                   f"{ratio:.2f}×, {verdict}."), "",
              ("The same ratio taken in each round, then the median over the rounds: "
               + ", ".join(f"{name} {value:.2f}×" for name, value in paired.items())
               + ". Within one interpreter, where the load's swings weigh less: torch's "
               f"import with the collector held off ({held_ms / torch_ms:.2f}×) plus the "
               f"runtime's other imports after it ({beyond_ms / torch_ms:.2f}×) make "
               f"{(held_ms + beyond_ms) / torch_ms:.2f}×."), "",
              (f"Beyond torch, the runtime's imports take {beyond_ms:.0f} ms "
               f"({beyond_ms / torch_ms:.2f}× a bare `import torch`), of which aiohttp's is "
               f"{aiohttp_ms:.0f} ms ({aiohttp_ms / torch_ms:.2f}×): what serving the "
               "runtime's socket without aiohttp could save at most."), "",
              NOTE, "", f"Machine: {machine()}", ""]
    return "\n".join(lines)


def main() -> None:
    """Measure (or take the last run's samples) and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="an older runtime image to measure alongside")
    parser.add_argument("--report-only", action="store_true",
                        help=f"write the page from the last run's samples ({SAMPLES.name})")
    args = parser.parse_args()
    if not args.report_only:
        round_probes = probes(current_image(), args.before)
        load_before = os.getloadavg()[0]
        samples = measure(round_probes, args.runs)
        SAMPLES.write_text(json.dumps({
            "before": args.before, "runs": args.runs,
            "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "probes": [asdict(probe) for probe in round_probes], "samples": samples},
            indent=1) + "\n")
    run = json.loads(SAMPLES.read_text())
    round_probes = [Probe(**probe) for probe in run["probes"]]
    page = report(round_probes, run["samples"], run["runs"], run["before"])
    load = (f"Load average (1 min) {run['load'][0]:.1f} at the start, "
            f"{run['load'][1]:.1f} at the end.")
    OUT.write_text(page.replace("\nMachine: ", f"\n{load}\n\nMachine: "))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
