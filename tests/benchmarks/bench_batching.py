"""Batched generation on the demo models: decode throughput by batch size, and the prefill fit.

Run on demand: `.venv/bin/python tests/benchmarks/bench_batching.py`. It writes
docs/benchmarks/batching.md and batching.png. The issue's target: decode throughput at
batch 8 at least 3× batch 1 (medians over several interleaved runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import torch
from peft import PeftModel
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorafaas.demo import build_demo_models
from lorafaas.runtime.batched import generate_batch
from lorafaas.runtime.generation import GenerationRequest, generate
from lorafaas.runtime.profiler import (
    PrefillProfile,
    adapter_rank,
    load_model,
    machine_description,
    profile_prefill,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZES = (1, 2, 4, 8, 16)
PROMPT_LENGTHS = (32, 128)
# Mixed lengths, as a real batch: left padding is part of what is measured.
PROMPTS = (
    "Can you explain how a rainbow forms?",
    "Tell me a story about a brave dragon",
    "Open the window, please.",
    "What should I cook tonight for four friends who do not eat meat?",
    "Hi",
    "Why is the sky blue during the day and red at sunset?",
    "Write a short poem about the sea",
    "Summarise the plot of a detective novel in two sentences.",
)


@dataclass(frozen=True)
class DecodeRun:
    """One batch's decode: tokens after the first, decode wall time and process CPU time."""

    tokens: int
    wall_s: float
    cpu_s: float

    @property
    def throughput(self) -> float:
        """Decoded tokens per wall-clock second."""
        return self.tokens / self.wall_s


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per batch size")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: other work on a 2-core machine makes more "
                             "threads wait on each other)")
    parser.add_argument("--adapter", default="pirate", help="demo adapter to serve")
    parser.add_argument("--models-dir", type=Path,
                        default=Path("~/.lorafaas/models").expanduser())
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    return parser.parse_args(argv)


def requests_for(batch_size: int, max_tokens: int) -> list[GenerationRequest]:
    """Greedy requests that all decode exactly max_tokens (EOS ignored)."""
    return [GenerationRequest(PROMPTS[i % len(PROMPTS)], max_tokens=max_tokens, ignore_eos=True)
            for i in range(batch_size)]


def batched_run(model: PeftModel, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                max_tokens: int) -> DecodeRun:
    """One batch through the batched loop; the first token of each row is prefill's."""
    cpu = time.process_time()
    outcomes = generate_batch(model, tokenizer, requests_for(batch_size, max_tokens))
    cpu_s = time.process_time() - cpu
    decode_s = max(timings["decode"] for _, timings in outcomes) / 1000
    prefill_s = outcomes[0][1]["prefill"] / 1000
    # CPU time is charged to decode in the ratio of wall times, prefill excluded.
    return DecodeRun(batch_size * (max_tokens - 1), decode_s,
                     cpu_s * decode_s / (decode_s + prefill_s))


def generate_run(model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                 max_tokens: int) -> DecodeRun:
    """One request through the runtime's single-request path (peft's generate)."""
    cpu = time.process_time()
    _, timings = generate(model, tokenizer, requests_for(1, max_tokens)[0])
    cpu_s = time.process_time() - cpu
    decode_s = timings["decode"] / 1000
    return DecodeRun(max_tokens - 1, decode_s, cpu_s * decode_s / (timings["total"] / 1000))


def measure_decode(model: PeftModel, tokenizer: PreTrainedTokenizerBase, runs: int,
                   max_tokens: int) -> dict[str, list[DecodeRun]]:
    """Interleaved runs of every batch size, so load on the machine hits them all alike."""
    batched_run(model, tokenizer, 2, 4)  # warm-up
    results: dict[str, list[DecodeRun]] = {}
    for run in range(runs):
        for b in BATCH_SIZES:
            results.setdefault(str(b), []).append(batched_run(model, tokenizer, b, max_tokens))
        results.setdefault("generate", []).append(generate_run(model, tokenizer, max_tokens))
        print(f"run {run + 1}/{runs}: " + ", ".join(
            f"{key} {values[-1].throughput:.0f} tok/s" for key, values in results.items()),
            flush=True)
    return results


def median_throughput(runs: list[DecodeRun]) -> float:
    """Median decoded tokens per wall-clock second."""
    return statistics.median(r.throughput for r in runs)


def median_cpu_throughput(runs: list[DecodeRun]) -> float:
    """Median decoded tokens per CPU second of this process."""
    return statistics.median(r.tokens / r.cpu_s for r in runs)


def decode_table(results: dict[str, list[DecodeRun]]) -> list[str]:
    """Markdown rows of the decode throughput, with speed-up over batch 1."""
    base = median_throughput(results["1"])
    rows = ["| batch | median tok/s | min | max | × batch 1 | tok per CPU-s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, runs in results.items():
        values = [r.throughput for r in runs]
        label = key if key != "generate" else "1, peft `generate` (today's path)"
        rows.append(f"| {label} | {median_throughput(runs):.0f} | {min(values):.0f} | "
                    f"{max(values):.0f} | {median_throughput(runs) / base:.2f} | "
                    f"{median_cpu_throughput(runs):.0f} |")
    return rows


def prefill_table(profiles: list[PrefillProfile]) -> list[str]:
    """Markdown rows of measured T(b) per prompt length, then the fits."""
    header = "| b | " + " | ".join(f"T(b) ms, {p.prompt_length} tokens" for p in profiles) + " |"
    rows = [header, "| ---: |" + " ---: |" * len(profiles)]
    for i, (b, _) in enumerate(profiles[0].samples):
        rows.append(f"| {b} | " + " | ".join(f"{p.samples[i][1]:.1f}" for p in profiles) + " |")
    rows.append("")
    rows += [f"- {p.prompt_length} tokens: T(b) = {p.model.t0_ms:.1f} + "
             f"{p.model.alpha_ms:.2f}·(b−1) ms, R² = {p.r2:.4f}" for p in profiles]
    return rows


def header_lines(args: argparse.Namespace, rank: int) -> list[str]:
    """Title, command, machine and model."""
    threads = f" --threads {args.threads}" if args.threads != 1 else ""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        "# Batched generation: decode throughput and prefill fit", "",
        f"Command: `.venv/bin/python tests/benchmarks/bench_batching.py{threads}`  ",
        (f"Machine: {machine_description()}, Linux {platform.release()}, "
         f"CPython {platform.python_version()}; load average (1, 5, 15 min) at the end "
         f"of the run {load}  "),
        (f"Model: demo backbone (Llama, 30M parameters, float32) with the `{args.adapter}` "
         f"adapter (rank {rank}) unmerged."), "",
    ]


def write_markdown(path: Path, args: argparse.Namespace, rank: int,
                   results: dict[str, list[DecodeRun]], profiles: list[PrefillProfile]) -> None:
    """The benchmark's report."""
    ratio = median_throughput(results["8"]) / median_throughput(results["1"])
    lines = [
        *header_lines(args, rank),
        "## Decode throughput", "",
        (f"{args.runs} interleaved runs per batch size; each request decodes "
         f"{args.max_tokens} tokens (EOS ignored) from prompts of mixed lengths (left "
         "padding included). Decoded tokens exclude each row's first token, which "
         "comes out of the prefill. Wall-clock throughput, and tokens per CPU second of "
         "the process, which other work on the machine disturbs less."), "",
        *decode_table(results), "",
        f"**Batch 8 / batch 1: {ratio:.2f}×** (median throughputs; the issue's target is 3×).",
        "", "## Prefill time T(b)", "",
        ("Median of 3 interleaved sweeps of b = 1…16, pseudo-random prompts without "
         f"padding (`python -m lorafaas.runtime.profiler --threads {args.threads}`)."), "",
        *prefill_table(profiles), "",
        "![decode throughput and prefill time by batch size](batching.png)", "",
    ]
    path.write_text("\n".join(lines))


def write_plot(path: Path, results: dict[str, list[DecodeRun]],
               profiles: list[PrefillProfile]) -> None:
    """Throughput against batch size, and measured and fitted T(b)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = list(BATCH_SIZES)
    left.plot(sizes, [median_throughput(results[str(b)]) for b in sizes], "o-",
              label="batched loop (median)")
    left.axhline(median_throughput(results["generate"]), color="grey", linestyle="--",
                 label="peft generate, one request")
    left.set(xlabel="batch size", ylabel="decoded tokens / s", xscale="log", xticks=sizes,
             title="Decode throughput")
    left.set_xticklabels([str(b) for b in sizes])
    left.legend()
    for profile in profiles:
        bs = [b for b, _ in profile.samples]
        line = right.plot(bs, [ms for _, ms in profile.samples], "o", markersize=4)[0]
        right.plot(bs, [profile.model.time(b) for b in bs], "-", color=line.get_color(),
                   label=f"{profile.prompt_length} tokens: {profile.model.t0_ms:.0f} + "
                         f"{profile.model.alpha_ms:.1f}·(b−1), R² {profile.r2:.3f}")
    right.set(xlabel="batch size b", ylabel="prefill ms", title="Prefill time T(b)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build_demo_models(args.models_dir)
    model = load_model(models.backbone_dir, models.adapters[args.adapter])
    tokenizer = AutoTokenizer.from_pretrained(str(models.backbone_dir))
    results = measure_decode(model, tokenizer, args.runs, args.max_tokens)
    profiles = [profile_prefill(model, length) for length in PROMPT_LENGTHS]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_markdown(args.output_dir / "batching.md", args, adapter_rank(model), results, profiles)
    write_plot(args.output_dir / "batching.png", results, profiles)
    ratio = median_throughput(results["8"]) / median_throughput(results["1"])
    print(f"batch 8 / batch 1 decode throughput: {ratio:.2f}×")
    print(f"wrote {args.output_dir / 'batching.md'} and batching.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
