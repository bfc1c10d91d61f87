"""The "libraries" step of a cold start against a bare `import torch`, in the runtime image.

    .venv/bin/python tests/benchmarks/bench_cold_imports.py [--runs 7] [--before IMAGE]

Each run starts a fresh function container (`--network none`, the runtime's user) and
times, in the container's own interpreter, what the runtime's entry point reports as its
`libraries` step (`lorafaas.runtime.__main__.LIBRARIES_MS`: every import before the server
listens), and in another fresh container a bare `import torch` timed the same way. With
`--before IMAGE` (the runtime image of an older commit, say main's, still in the engine),
that image's libraries step is measured too, in the same rounds, so the machine's load
weighs on both alike. Reports medians and writes docs/benchmarks/cold_imports.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "platform"))
sys.path.insert(0, str(REPO_ROOT))
OUT = REPO_ROOT / "docs" / "benchmarks" / "cold_imports.md"
COMMAND = ".venv/bin/python tests/benchmarks/bench_cold_imports.py"
NOTE = ("The function runtime imports torch, aiohttp, safetensors and tokenizers before it "
        "listens (jinja2 where a checkpoint has a chat template); transformers and peft "
        "only for a function that the general path serves, at its /init, where that import "
        "is reported as that function's `libraries` step.")
TARGET = 1.15  # issue 14: the libraries step within 1.15× a bare import of torch

BARE_TORCH = ("import time; started = time.monotonic(); import torch; "
              "print((time.monotonic() - started) * 1000)")
LIBRARIES = "import lorafaas.runtime.__main__ as entry; print(entry.LIBRARIES_MS)"


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


def measure(images: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each image's libraries step and a bare import of torch, `runs` rounds interleaved."""
    samples: dict[str, list[float]] = {"import torch": [], **{name: [] for name in images}}
    baseline_image = images["after"]
    in_container(baseline_image, BARE_TORCH)  # the page cache holds the image's files now
    for round_number in range(runs):
        samples["import torch"].append(in_container(baseline_image, BARE_TORCH))
        for name, image in images.items():
            samples[name].append(in_container(image, LIBRARIES))
        print(f"round {round_number + 1}/{runs}:",
              {name: round(values[-1]) for name, values in samples.items()}, flush=True)
    return samples


def report(images: dict[str, str], samples: dict[str, list[float]], runs: int) -> str:
    """The Markdown page."""
    from tests.benchmarks.harness import machine

    torch_ms = statistics.median(samples["import torch"])
    lines = ["# Cold start: the libraries step", "",
             f"`{COMMAND} --runs {runs}" + (f" --before {images['before']}`"
                                           if "before" in images else "`"), "",
             (f"Each figure is the median of {runs} fresh containers of the runtime image "
              "(`--network none`), timed inside the container's interpreter: the runtime's "
              "reported `libraries` step (every import before its server listens) and a "
              "bare `import torch`."), "",
             "| what | image | median ms | min ms | max ms | ÷ import torch |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    rows = [("import torch", images["after"], "import torch"),
            *((f"libraries step ({name})", images[name], name) for name in images)]
    for label, image, key in rows:
        values = samples[key]
        lines.append(f"| {label} | `{image.split(':')[-1]}` | {statistics.median(values):.0f} "
                     f"| {min(values):.0f} | {max(values):.0f} "
                     f"| {statistics.median(values) / torch_ms:.2f}× |")
    ratio = statistics.median(samples["after"]) / torch_ms
    verdict = "met" if ratio <= TARGET else "not met"
    lines += ["", (f"Target: the libraries step within {TARGET}× a bare `import torch`: "
              f"{ratio:.2f}×, {verdict}."), "", NOTE, "", f"Machine: {machine()}", ""]
    return "\n".join(lines)


def main() -> None:
    """Measure and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="an older runtime image to measure alongside")
    args = parser.parse_args()
    images = {"after": current_image()}
    if args.before:
        images = {"before": args.before, **images}
    load_before = os.getloadavg()[0]
    samples = measure(images, args.runs)
    page = report(images, samples, args.runs)
    load = f"Load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    OUT.write_text(page.replace("\nMachine: ", f"\n{load}\n\nMachine: "))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
