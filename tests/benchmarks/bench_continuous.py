"""Continuous batching against fill-or-expire and eager batches, in one function container.

Run on demand: `.venv/bin/python tests/benchmarks/bench_continuous.py`. It writes
docs/benchmarks/continuous.md. One demo function receives an open-loop stream of requests
(seeded exponential gaps) of mixed lengths, short and long; each policy serves the same
stream on the same model, one generation at a time (one container, M = 1):

- `continuous`: every request joins the runtime's engine at once (`runtime.continuous`);
- `fill-or-expire`: the invoker's queue (`invoker.batching.FunctionQueue`) closes a batch
  when it is full or when its oldest request's slack runs out; the batch runs to its end
  (each request answered as it ends) before the next closes;
- `eager`: a batch closes as soon as the slot is free, with whatever waits.

Latency is from arrival to the request's end; TTFT from arrival to its first token.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorafaas.demo import build_demo_models
from lorafaas.invoker.batching import FunctionQueue, PrefillModel
from lorafaas.runtime.batched import iter_batch
from lorafaas.runtime.continuous import ContinuousEngine
from lorafaas.runtime.generation import GenerationRequest
from lorafaas.runtime.profiler import load_model, machine_description

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ("Can you explain how a rainbow forms?", "Tell me a story about a brave dragon",
           "Open the window, please.", "Hi",
           "What should I cook tonight for four friends who do not eat meat?",
           "Why is the sky blue during the day and red at sunset?")
SHORT, LONG = (4, 8, 16), (64, 128)
POLICIES = ("continuous", "fill-or-expire", "eager")


@dataclass(frozen=True)
class Arrival:
    """One request of the stream and when it arrives (s after the start)."""

    at_s: float
    request: GenerationRequest


@dataclass(frozen=True)
class Served:
    """One request's latency and time to first token (ms), and whether it was short."""

    latency_ms: float
    ttft_ms: float
    short: bool


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--gap-ms", type=float, default=300.0, help="mean gap between arrivals")
    parser.add_argument("--long-share", type=float, default=0.3)
    parser.add_argument("--slo-ms", type=float, default=2000.0, help="fill-or-expire's SLO")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models-dir", type=Path,
                        default=Path("~/.lorafaas/models").expanduser())
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    return parser.parse_args(argv)


def stream(args: argparse.Namespace) -> list[Arrival]:
    """The seeded open-loop stream: exponential gaps, a share of long requests."""
    rng = random.Random(args.seed)
    at, arrivals = 0.0, []
    for i in range(args.requests):
        tokens = rng.choice(LONG if rng.random() < args.long_share else SHORT)
        arrivals.append(Arrival(at, GenerationRequest(PROMPTS[i % len(PROMPTS)],
                                                      max_tokens=tokens, ignore_eos=True)))
        at += rng.expovariate(1000.0 / args.gap_ms)
    return arrivals


def sleep_until(deadline: float) -> None:
    """Sleep until a monotonic time (no-op if past)."""
    time.sleep(max(0.0, deadline - time.monotonic()))


def run_continuous(model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                   arrivals: list[Arrival]) -> list[Served]:
    """Every request joins the engine when it arrives."""
    engine = ContinuousEngine(model, tokenizer)
    started = time.monotonic()
    futures = []
    for arrival in arrivals:
        sleep_until(started + arrival.at_s)
        futures.append(engine.submit(arrival.request))
    served = []
    for arrival, future in zip(arrivals, futures, strict=True):
        _, timings = future.result()
        served.append(Served(timings["total"], timings["ttft"],
                             arrival.request.max_tokens in SHORT))
    engine.close()
    return served


def run_batches(model: PeftModel, tokenizer: PreTrainedTokenizerBase, arrivals: list[Arrival],
                args: argparse.Namespace, eager: bool) -> list[Served]:
    """Batches closed by the invoker's queue, one running at a time."""
    queue: FunctionQueue[Arrival] = FunctionQueue("f", args.slo_ms, PrefillModel(35.0, 16.0),
                                                  args.max_batch)
    started = time.monotonic()
    waiting, served = list(arrivals), []
    while waiting or len(queue):
        now_ms = (time.monotonic() - started) * 1000
        while waiting and waiting[0].at_s * 1000 <= now_ms:
            arrival = waiting.pop(0)
            queue.push(arrival, arrival.at_s * 1000)
        if len(queue) and (eager or queue.ready(now_ms, 1)):
            batch = [r.item for r in queue.take_batch(now_ms).requests]
            closed = time.monotonic()
            for done in iter_batch(model, tokenizer, [a.request for a in batch]):
                arrival = batch[done.index]
                ended_ms = (time.monotonic() - started) * 1000
                waited_ms = (closed - started) * 1000 - arrival.at_s * 1000
                served.append(Served(ended_ms - arrival.at_s * 1000,
                                     waited_ms + done.timings["ttft"],
                                     arrival.request.max_tokens in SHORT))
            continue
        wakes = [started + waiting[0].at_s] if waiting else []
        if len(queue) and (expiry := queue.expires_at(1)) is not None:
            wakes.append(started + expiry / 1000)
        sleep_until(min(wakes) if wakes else time.monotonic())
    return served


def summary(served: list[Served], short: bool | None) -> str:
    """Mean, median and p95 latency and TTFT (ms) of a group, as table cells."""
    group = [s for s in served if short is None or s.short == short]
    latency = sorted(s.latency_ms for s in group)
    ttft = sorted(s.ttft_ms for s in group)

    def p95(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]

    return (f"{len(group)} | {statistics.mean(latency):.0f} | {statistics.median(latency):.0f} | "
            f"{p95(latency):.0f} | {statistics.mean(ttft):.0f} | {p95(ttft):.0f}")


def write_markdown(path: Path, args: argparse.Namespace,
                   results: dict[str, list[Served]]) -> None:
    """The benchmark's report."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = [("| policy | requests | served | mean latency ms | median | p95 | mean TTFT ms | "
             "p95 TTFT |"), "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for policy, served in results.items():
        for label, short in (("all", None), ("short", True), ("long", False)):
            rows.append(f"| {policy} | {label} | {summary(served, short)} |")
    lines = [
        "# Continuous batching against fill-or-expire", "",
        "Command: `.venv/bin/python tests/benchmarks/bench_continuous.py`  ",
        (f"Machine: {machine_description()}, Linux {platform.release()}, CPython "
         f"{platform.python_version()}; load average (1, 5, 15 min) at the end {load}  "),
        "Model: demo backbone (Llama, 30M parameters, float32) with the `pirate` adapter.", "",
        (f"One function, one container (M = 1). {args.requests} requests arrive open-loop "
         f"with exponential gaps of mean {args.gap_ms:.0f} ms (seed {args.seed}); "
         f"{args.long_share:.0%} are long ({' or '.join(map(str, LONG))} tokens), the "
         f"others short ({', '.join(map(str, SHORT))} tokens), EOS ignored. "
         f"Fill-or-expire uses an SLO of {args.slo_ms:.0f} ms, T(b) = 35 + 16·(b−1) ms and "
         f"batches of at most {args.max_batch} (the settings' defaults). Latency: arrival "
         "to the request's end; TTFT: arrival to its first token."), "",
        *rows, "",
        ("One run of each policy on the same stream, one after the other; other work on "
         "the machine (see the load average) slows all of them."), "",
    ]
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the stream with each policy; write the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build_demo_models(args.models_dir)
    model = load_model(models.backbone_dir, models.adapters["pirate"])
    tokenizer = AutoTokenizer.from_pretrained(models.backbone_dir)
    arrivals = stream(args)
    list(iter_batch(model, tokenizer, [arrivals[0].request]))  # warm-up
    results: dict[str, list[Served]] = {}
    for policy in POLICIES:
        results[policy] = (run_continuous(model, tokenizer, arrivals)
                           if policy == "continuous" else
                           run_batches(model, tokenizer, arrivals, args,
                                       eager=policy == "eager"))
        print(f"{policy}: {summary(results[policy], None)}", flush=True)
    output = args.output_dir / "continuous.md"
    write_markdown(output, args, results)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
