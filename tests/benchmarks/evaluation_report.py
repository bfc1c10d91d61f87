"""The evaluation's report: docs/evaluation.md with its tables, targets and plots."""

from __future__ import annotations

import argparse
import datetime
import math
import os
from collections.abc import Sequence

from bench_evaluation import POOL_MEMORY_MB, SYSTEMS, TRACES, Experiment, SystemRun, grid
from evaluation_results import save_runs
from evaluation_stats import crossover_rate, duplicated_share, per_thousand, percentile
from harness import REPO_ROOT, machine

from lorafaas.billing.prices import PriceSheet

DOC = REPO_ROOT / "docs" / "evaluation.md"
PLOTS = REPO_ROOT / "docs" / "evaluation"
RUNS = PLOTS / "runs.json"  # the measurements, for `--keep`
COMMAND = ".venv/bin/python tests/benchmarks/bench_evaluation.py"
LABELS = {"openwhisk": "OpenWhisk-style", "instainfer": "InstaInfer-style",
          "full": "LoRAFaaS (full)", "serverful": "serverful reference"}
FULL_GRID = ("2 traces (conv, code) × 2 windows (bursty, steady) × N ∈ {8, 32, 128} × "
             "2 popularities (Zipf, uniform) × 4 systems")


def write_report(runs: list[SystemRun], args: argparse.Namespace, prices: PriceSheet) -> str:
    """Write docs/evaluation.md, the plots and the measurements; return the Markdown."""
    save_runs(runs, RUNS)  # first: the measurements outlive a failure of the plots
    plots = _plots(runs, prices)
    text = report(runs, args, prices, plots)
    DOC.write_text(text)
    return text


KEPT = ("Cells this command did not run were kept from earlier runs of the same harness "
        "(`--keep`); each cell's *Measured* line says when and at which commit it ran.")


def report(runs: list[SystemRun], args: argparse.Namespace, prices: PriceSheet,
           plots: Sequence[tuple[str, str]] = ()) -> str:
    """The Markdown report."""
    lines = ["# Evaluation: ServerlessLoRA's comparison on real traces", "",
             f"Command: `{COMMAND} {_arguments(args)}`  ",
             f"Machine: {machine()}  ",
             (f"Run: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; load average "
              f"then {', '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min): other "
              "work on the machine stretches every latency, the containers' starts most."),
             *([KEPT] if getattr(args, "keep", False) else []), "",
             "## Set-up", "", *_setup(args, prices), ""]
    for experiment in _experiments(runs):
        lines += _experiment_section(experiment, [r for r in runs if r.experiment == experiment],
                                     prices)
    lines += ["## Targets", "", *_targets(runs, prices), "",
              "## Not run", "", *_not_run(runs, args), ""]
    lines += [f"![{title}](evaluation/{name})" for name, title in plots]
    return "\n".join(lines) + "\n"


def _arguments(args: argparse.Namespace) -> str:
    if args.quick:
        return "--quick"
    if getattr(args, "report_only", False):
        return "--report-only (from the measurements of the earlier runs)"
    chosen = f"--experiments {args.experiments} " if args.experiments else ""
    if getattr(args, "keep", False):
        chosen += "--keep "
    if getattr(args, "systems", ""):
        chosen += f"--systems {args.systems} "
    return (f"{chosen}--window-min {args.window_min} "
            f"--warmup-min {getattr(args, 'warmup_min', 0)} --compress {args.compress:g} "
            f"--rate {args.rate:g} --zipf {args.zipf:g} --stem-cells {args.stem_cells} "
            f"--slo-ms {args.slo_ms:g} --spare-share {args.spare_share:g} "
            + (f"--shared-memory-mb {args.shared_memory_mb} " if args.shared_memory_mb else "")
            + f"--seed {args.seed}")


def _setup(args: argparse.Namespace, prices: PriceSheet) -> list[str]:
    systems = (
        "1. **OpenWhisk-style**: a container per function that loads a private copy of the "
        "backbone (`LORAFAAS_BACKBONE_SHARING=off`: read from the checkpoint into its own "
        "memory) and its adapter on a cold start; fixed 10-minute keep-alive; no stem cells, "
        "no pre-loading, no batching.\n"
        "2. **InstaInfer-style**: libraries, backbone (a private copy) and adapter pre-loaded "
        f"into idle containers ({args.stem_cells} stem cells kept, functions pre-loaded when "
        f"predicted, and {args.spare_share:.0%} of the pool's memory kept filled with the "
        "functions of highest value density), hybrid histogram keep-alive; no sharing, no "
        "batching.\n"
        "3. **LoRAFaaS (full)**: backbone sharing, the same pre-loading, contention-aware "
        "batching (`eager`); offloading off (a CPU has no accelerator memory to save).\n"
        "4. **Serverful reference**: one always-on process with the backbone and all N "
        "adapters loaded with peft, serving mixed-adapter batches (`adapter_names`), up to 8 "
        "per batch, whatever waits when the model is free.")
    shared = (f"{args.shared_memory_mb} MB" if args.shared_memory_mb else
              "512 MB (demo backbone) or 768 MB (large): the peak a container's cgroup "
              "measured (a batch of 8 × 128 prompt + 32 new tokens: 370 MB, 626 MB) with "
              "≥ 20% to spare")
    limits = (
        f"Containers' memory limits: {shared} with sharing; without, the same plus twice "
        "the backbone (the checkpoint's bytes and "
        f"the tensors, while loading), rounded up to 256 MB. The pool holds "
        f"{POOL_MEMORY_MB} MB of limits (the platform's default; with the large backbone, "
        "(functions + stem cells) × the system's container limit, so both systems hold at "
        "most as many containers and the peak compares what a container holds), "
        "evicting idle containers least recently used first. Every keep-alive, pre-warm and "
        f"cold-start-window constant is divided by the time compression ({args.compress:g}×).")
    measures = (
        "Measures: TTFT from the request's scheduled arrival to its first token (queue, "
        "container start, prefill); end-to-end to its last token; SLO attainment: TTFT ≤ "
        f"{args.slo_ms:g} ms; cold starts; memory: the PSS (`/proc/PID/smaps_rollup`) of "
        "every container's process, plus the backbone server with sharing (the published "
        "tmpfs weights are in the containers' PSS while mapped, and added while none maps "
        "them), sampled every 0.5 s: peak, and integrated (GB·s of wall time). Cost with the "
        f"price sheet ({prices.accelerator_kind}: ${prices.accelerator_hour:g} per "
        f"accelerator-hour, ${prices.gb_second:.10f} per GB-second): *billed* is what the "
        "activations were billed (their accelerator-seconds and GB-seconds of busy time); "
        "*total* is what serving the window cost: every container's memory limit over its "
        "whole life (starting, idle, busy) plus the activations' accelerator-seconds; for "
        "the serverful reference, one accelerator and its peak PSS kept on for the whole "
        "window. Costs are per replay, in wall time (× the compression for trace time).")
    return ["Systems, one after the other on the same machine, each fed the same requests:",
            "", systems, "", limits, "", measures]


def _experiments(runs: list[SystemRun]) -> list[Experiment]:
    seen: list[Experiment] = []
    for run in runs:
        if run.experiment not in seen:
            seen.append(run.experiment)
    return seen


def _experiment_section(experiment: Experiment, runs: list[SystemRun],
                        prices: PriceSheet) -> list[str]:
    workload = runs[0].workload
    title = (f"## Experiment `{experiment.name}`: {experiment.trace}, {experiment.window} "
             f"window, N = {experiment.functions}, {experiment.popularity}, "
             f"{experiment.backbone} backbone")
    header = ("| system | served | failed | cold starts | TTFT p50 / p90 / p99 ms | e2e p50 / "
              "p99 ms | SLO met | peak GB (containers) | GB·s | backbone copies at peak (duplicated) | "
              "billed $ | total $ | total $ per 1k |")
    described = (f"Workload: {workload.description}. Wall time per system: "
                 f"{workload.duration_s:.0f} s. Measured: {_measured(runs)}.")
    lines = [title, "", described, "", header,
             "| --- |" + " ---: |" * 12]
    for run in runs:
        copies = _backbone_copies(run)
        met = run.slo_attainment()
        lines.append(
            f"| {LABELS[run.system]} | {run.served} | {run.errors} | {run.kinds['cold']} | "
            f"{_p(run.ttft_ms, 50)} / {_p(run.ttft_ms, 90)} / {_p(run.ttft_ms, 99)} | "
            f"{_p(run.e2e_ms, 50)} / {_p(run.e2e_ms, 99)} | {_share(met)} | "
            f"{run.peak_gb():.2f} ({run.peak_sample()[2]}) | {run.memory_gb_s():.1f} | "
            f"{copies} ({100 * duplicated_share(copies):.1f}%) | "
            f"{_usd(run.billed_usd) if run.always_on_usd is None else '—'} | "
            f"{_usd(run.total_usd(prices))} | "
            f"{_usd(per_thousand(run.total_usd(prices), run.served))} |")
    return [*lines, ""]


def _measured(runs: list[SystemRun]) -> str:
    """When each system ran, and the code's commit: one stamp if they share the hour."""
    stamps = [run.measured or "in an earlier run (time and commit not recorded)"
              for run in runs]
    hour_and_commit = {(stamp[:len("YYYY-MM-DD HH")], stamp.partition(", commit ")[2])
                       for stamp in stamps}
    if len(hour_and_commit) == 1:
        return stamps[0]
    return "; ".join(f"{LABELS[run.system]} {stamp}" for run, stamp in zip(runs, stamps,
                                                                           strict=True))


def _share(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.0f}%"


def _backbone_copies(run: SystemRun) -> int:
    """Physical copies of the backbone's weights at the memory peak: one shared (published
    once) with sharing or in the serverful process; one per container without sharing."""
    if run.system in ("full", "serverful"):
        return 1
    return run.peak_sample()[2]


def _p(values: list[float], q: float) -> str:
    value = percentile(values, q)
    return "—" if math.isnan(value) else f"{value:.0f}"


def _usd(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.6f}"


def _find(runs: list[SystemRun], name: str, system: str) -> SystemRun | None:
    return next((r for r in runs if r.experiment.name == name and r.system == system), None)


def _targets(runs: list[SystemRun], prices: PriceSheet) -> list[str]:
    lines = []
    shared = [r for r in runs if r.system == "full"]
    private = [r for r in runs if r.system in ("openwhisk", "instainfer")]
    if shared:
        lines.append(f"- Backbone weights duplicated across function containers: "
                     f"{100 * duplicated_share(1):.0f}% with sharing (one published copy; "
                     "target < 1%).")
    if private:
        worst = max(duplicated_share(_backbone_copies(r)) for r in private)
        lines.append(f"- Without sharing, up to {100 * worst:.1f}% of the backbone bytes are "
                     "duplicates ((N−1)/N with N containers alive at the memory peak, each "
                     "with its own copy: tests/integration/test_backbone_sharing.py).")
    headline = [_find(runs, n, s) for n in ("headline", "quick") for s in ("openwhisk", "full")]
    ow, full = next(((a, b) for a, b in zip(headline[::2], headline[1::2], strict=True)
                     if a is not None and b is not None), (None, None))
    if ow is not None and full is not None:
        p99_cut = 1 - percentile(full.ttft_ms, 99) / percentile(ow.ttft_ms, 99)
        cost_cut = 1 - full.total_usd(prices) / ow.total_usd(prices)
        billed_cut = 1 - full.billed_usd / ow.billed_usd if ow.billed_usd else math.nan
        lines.append(f"- Against OpenWhisk-style ({full.experiment.name}: "
                     f"{full.experiment.window} window, N = {full.experiment.functions}): "
                     f"TTFT p99 {100 * p99_cut:.0f}% lower (target ≥ 86%: "
                     f"{'met' if p99_cut >= 0.86 else 'not met'}); cost with the billing "
                     f"model (what the activations are billed) {100 * billed_cut:.0f}% lower "
                     f"(target ≥ 89%: {'met' if billed_cut >= 0.89 else 'not met'}). What "
                     f"serving the window cost the platform (*total*: every container's memory "
                     f"limit over its life, idle and pre-loaded ones included) is "
                     f"{100 * cost_cut:.0f}% lower.")
    insta, full_large = _find(runs, "large", "instainfer"), _find(runs, "large", "full")
    if insta is not None and full_large is not None and full_large.peak_gb() > 0:
        ratio = insta.peak_gb() / full_large.peak_gb()
        lines.append(f"- Against InstaInfer-style (N = 8, the ≥ 500 MB backbone): peak memory "
                     f"{ratio:.1f}× lower (target ≥ 3×: {'met' if ratio >= 3 else 'not met'}).")
    lines += _crossover(runs, prices)
    return lines or ["- No experiment of the targets ran."]


def _crossover(runs: list[SystemRun], prices: PriceSheet) -> list[str]:
    steady = sorted({r.experiment for r in runs if r.experiment.window == "steady"},
                    key=lambda e: e.rate)
    pairs: list[tuple[SystemRun, SystemRun]] = []
    for experiment in steady:
        full, serverful = (_find(runs, experiment.name, "full"),
                           _find(runs, experiment.name, "serverful"))
        if full is not None and serverful is not None:
            pairs.append((full, serverful))
    if not pairs:
        return []
    rates = [a.experiment.rate for a, _ in pairs]
    rate, measured = crossover_rate(
        rates, [per_thousand(a.total_usd(prices), a.served) for a, _ in pairs],
        [per_thousand(b.total_usd(prices), b.served) for _, b in pairs])
    faster = [a.experiment.rate for a, b in pairs
              if percentile(b.ttft_ms, 99) < percentile(a.ttft_ms, 99)]
    listed = ", ".join(f"{r:g}" for r in rates)
    if rate is not None and measured:
        below = rates[rates.index(rate) - 1]
        where = (f"between {below:g} and {rate:g} requests/s of wall time (measured: "
                 f"LoRAFaaS costs less per request at {below:g}, the reference at {rate:g})")
    else:
        at = "—" if rate is None else f"{rate:.2f}"
        where = (f"from about {at} requests/s of wall time (extrapolated from the rates "
                 "measured)")
    lines = [(f"- Serverful reference on the steady window, rates {listed} requests/s: it "
              f"costs less per request {where}.")]
    if faster:
        lines.append(f"  Its TTFT p99 beats LoRAFaaS at {', '.join(f'{r:g}' for r in faster)} "
                     "requests/s: at steady high load the always-on process wins.")
    return lines


def _not_run(runs: list[SystemRun], args: argparse.Namespace) -> list[str]:
    ran = {r.experiment.name for r in runs}
    planned = [e.name for e in grid(argparse.Namespace(**{**vars(args), "experiments": "",
                                                          "quick": False}))]
    missing = [name for name in planned if name not in ran]
    lines = [(f"The full grid ({FULL_GRID}) takes hours on two cores; the harness runs the "
             "cells the targets need (headline: code trace, bursty window, N = 32, Zipf, all "
             "systems; large: N = 8 with the ≥ 500 MB backbone; n8 and n128 with headline for "
             "memory vs N; uniform: headline's requests spread evenly over the functions; "
             "steady: the conv trace's steady window at three rates, for the serverful "
             f"crossover). Traces available: {', '.join(sorted(TRACES))}. Not run: the "
             "conv trace's bursty and the code trace's steady "
             "windows, and every other combination of the systems and N.")]
    if missing:
        lines.append(f"Cells of the targets' grid not run this time: {', '.join(missing)}.")
    return lines


def _plots(runs: list[SystemRun], prices: PriceSheet) -> list[tuple[str, str]]:
    """TTFT CDF per system, cost per 1,000 requests per system, memory vs N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    first = _experiments(runs)[0] if runs else None
    chosen = [r for r in runs if r.experiment == first]
    if first is not None and chosen:
        figure, (cdf, cost) = plt.subplots(1, 2, figsize=(11, 4))
        for run in chosen:
            ordered = sorted(run.ttft_ms)
            cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))],
                     label=LABELS[run.system])
        cdf.set_xscale("log")
        cdf.set_xlabel("TTFT (ms)")
        cdf.set_ylabel("share of requests")
        cdf.set_title(f"TTFT CDF ({first.name})")
        cdf.legend(fontsize=8)
        cost.bar([LABELS[r.system] for r in chosen],
                 [per_thousand(r.total_usd(prices), r.served) for r in chosen])
        cost.set_ylabel("USD per 1,000 requests (total)")
        cost.set_title(f"Cost ({first.name})")
        cost.tick_params(axis="x", labelsize=7)
        figure.tight_layout()
        figure.savefig(PLOTS / "ttft_and_cost.png", dpi=120)
        plt.close(figure)
        made.append(("ttft_and_cost.png", "TTFT CDF and cost per 1,000 requests per system"))
    by_n = [r for r in runs if r.experiment.backbone == "demo"
            and r.experiment.window == "bursty" and r.experiment.popularity == "zipf"]
    if len({r.experiment.functions for r in by_n}) > 1:
        figure, axis = plt.subplots(figsize=(6, 4))
        for system in SYSTEMS:
            points = sorted((r.experiment.functions, r.peak_gb()) for r in by_n
                            if r.system == system)
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=LABELS[system])
        axis.set_xscale("log", base=2)
        axis.set_xlabel("functions N")
        axis.set_ylabel("peak memory, summed PSS (GB)")
        axis.set_title("Memory vs N")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(PLOTS / "memory_vs_n.png", dpi=120)
        plt.close(figure)
        made.append(("memory_vs_n.png", "Peak memory vs the number of functions"))
    return made
