"""The engine side by side on the same weights: the memory floor, LoRAFaaS, peft, llama.cpp.

    .venv/bin/python tests/benchmarks/bench_engine.py [--rounds 5] [--cold 3] [--calls 200]

Run on demand (not in the suite). One run, the demo backbone and its `pirate` adapter
throughout, one torch thread; measured in interleaved rounds, so that the machine's load
hits every figure alike:

- the floor (one matrix-vector pass over the weights a decode step reads) and bare matrix
  products over them at batch 8;
- LoRAFaaS's warm function in a real runtime container on the real Docker engine (the
  pool and its runtime client): ms per decode step at batch 1, 4 and 8, warm TTFT; its
  cgroup top-level (`--cgroup-parent`), so that it waits for a core as this process does,
  and a second one in Docker's default cgroup at batch 1 beside it;
- CPU time per step of the floor's product and of the runtime's process at batch 1 (the
  load on a shared machine delays these less than wall times);
- one prefill forward and `PeftModel.generate` in this process;
- llama.cpp: llama-cpp-python built from its sdist into ~/.cache/lorafaas-bench (by this
  benchmark, see `llamacpp.py`), the weights converted by the converters it vendors; 1 and 2
  threads;
- cold starts' `libraries` step against a bare `import torch` in the same image;
- the warm-path overhead (`bench_warm_path.py`'s measurement, run here).

Writes docs/benchmarks/engine.md and engine.png.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# First: harness puts this checkout's platform/ on the path, before anything imports lorafaas.
from harness import OUT_DIR, REPO_ROOT, BenchParts, bench_parts, lorafaas_home  # isort: split

import bench_warm_path
import torch
from bench_engine_decode import PROMPT, TOKENS, decode_weights, matvec, median_ms, peft_step_ms
from bench_engine_decode import prefill_ms as peft_prefill_ms
from engine_report import markdown, plot
from llamacpp import CACHE, LlamaCpp, ensure_llamacpp
from safetensors.torch import load_file
from transformers import AutoTokenizer

from lorafaas.demo import build_demo_models
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.runtime_client import RunOutcome
from lorafaas.names import QualifiedName
from lorafaas.runtime.profiler import load_model, machine_description

COMMAND = ".venv/bin/python tests/benchmarks/bench_engine.py"
LIMIT = {"max_tokens_limit": 4096}
# Timed in the image as the runtime times its libraries: from before the import to after.
BARE_IMPORT = ("import time; t = time.monotonic(); import torch; "
               "print((time.monotonic() - t) * 1000)")

SAMPLES = CACHE / "engine-samples.json"  # the last run's samples, for --report-only

Measure = Callable[[], Awaitable[float]]


def _row(max_tokens: int, ignore_eos: bool = True) -> dict[str, Any]:
    return {"value": {"prompt": PROMPT, "max_tokens": max_tokens, "ignore_eos": ignore_eos}}


class WarmFunction:
    """One warm runtime container of the benchmark's function, held for the whole run."""

    def __init__(self, pool: ContainerPool, lease: Any) -> None:
        self.pool, self.lease = pool, lease
        self.engine = "?"

    def _cpu_ns(self) -> int:
        """CPU time of every thread of the runtime's process so far (the host's /proc)."""
        tasks = Path(f"/proc/{self.lease.container.info.pid}/task")
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in tasks.iterdir())

    async def cpu_ms(self) -> float:
        """CPU ms of the runtime's process per decode step at batch 1: a row's CPU less a
        one-token row's (the prefill and the request's handling), per step after it."""
        client = self.lease.container.client
        started = self._cpu_ns()
        await client.run({**_row(1), **LIMIT})
        prefill = self._cpu_ns() - started
        started = self._cpu_ns()
        await client.run({**_row(TOKENS), **LIMIT})
        return (self._cpu_ns() - started - prefill) / 1e6 / (TOKENS - 1)

    async def step_ms(self, batch: int) -> float:
        """ms per decode step of a batch of rows (the slowest row's decode)."""
        client = self.lease.container.client
        if batch == 1:
            timings = [(await client.run({**_row(TOKENS), **LIMIT})).timings]
        else:
            timings = []

            async def collect(_: int, outcome: RunOutcome) -> None:
                timings.append(outcome.timings)
            await client.run_batch([_row(TOKENS)] * batch, LIMIT["max_tokens_limit"], collect)
        self.engine = str(timings[0].get("engine", "?"))
        return max(float(t["decode"]) for t in timings) / (TOKENS - 1)

    async def ttft_ms(self) -> float:
        """The runtime's time to the first token of a one-token generation."""
        outcome = await self.lease.container.client.run({**_row(1, False), **LIMIT})
        return float(outcome.timings["ttft"])


def _cpu_ms(action: Callable[[], object]) -> float:
    """CPU ms of this thread while the action runs."""
    started = time.thread_time()
    action()
    return (time.thread_time() - started) * 1000


def _threaded(action: Callable[[], float]) -> Measure:
    async def run() -> float:
        return await asyncio.to_thread(action)
    return run


def host_measures(backbone: Path, adapter: Path, llama: LlamaCpp
                  ) -> tuple[dict[str, Measure], dict[str, float]]:
    """The floor, peft and llama.cpp measures; the weights' size and the prompt's tokens."""
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    weights = decode_weights(load_file(str(backbone / "model.safetensors")))
    peft = load_model(backbone, adapter)
    ids = tokenizer(PROMPT, return_tensors="pt")
    model, lora = llama.gguf(backbone, adapter)
    measures = {
        "floor b1": _threaded(lambda: median_ms(matvec(weights, 1), 1)),
        "floor b8": _threaded(lambda: median_ms(matvec(weights, 8), 1)),
        "floor b1 cpu": _threaded(lambda: _cpu_ms(matvec(weights, 1))),
        "prefill": _threaded(lambda: peft_prefill_ms(peft, ids)),
        "peft b1": _threaded(lambda: peft_step_ms(peft, tokenizer, 1)),
        "llama.cpp 1t": _threaded(lambda: llama.step_ms(model, lora, 1, PROMPT, TOKENS)),
        "llama.cpp 2t": _threaded(lambda: llama.step_ms(model, lora, 2, PROMPT, TOKENS)),
    }
    facts = {"weights_mb": sum(w.numel() * w.element_size() for w in weights) / 1e6,
             "prompt_tokens": float(ids["input_ids"].shape[1])}
    return measures, facts


async def interleaved(measures: dict[str, Measure], rounds: int) -> dict[str, list[float]]:
    """One warm-up, then `rounds` rounds of every measure in turn."""
    for measure in measures.values():
        await measure()
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for round_no in range(rounds):
        for name, measure in measures.items():
            samples[name].append(await measure())
        print(f"round {round_no + 1}/{rounds}: " + ", ".join(
            f"{k} {v[-1]:.2f}" for k, v in samples.items()), flush=True)
    return samples


async def cold_starts(parts: BenchParts, count: int) -> dict[str, list[float]]:
    """Each round: one cold start's `libraries` step, then a bare `import torch` in the
    same image under the same container limits."""
    import docker

    client = docker.from_env(timeout=600)
    samples: dict[str, list[float]] = {"libraries": [], "import torch": []}
    try:
        for round_no in range(count):
            pool = parts.pool({"torch_threads": 1})
            function = FunctionRef(key=f"bench/engine-cold{round_no}",
                                   name=QualifiedName.from_path(f"bench/engine-cold{round_no}"),
                                   adapter_dir=parts.models.adapters["pirate"], memory_mb=2048)
            lease = await pool.acquire(function)
            samples["libraries"].append(float(lease.init_breakdown["libraries"]))
            await pool.release(lease.container)
            await pool.shutdown()
            output = await asyncio.to_thread(
                client.containers.run, parts.image, ["-c", BARE_IMPORT], entrypoint="python3",
                remove=True, network_mode="none", read_only=True, user="65534:65534",
                mem_limit="2048m", tmpfs={"/tmp": ""})
            samples["import torch"].append(float(output.decode().split()[-1]))
            print(f"cold {round_no + 1}/{count}: libraries {samples['libraries'][-1]:.0f} ms, "
                  f"import torch {samples['import torch'][-1]:.0f} ms", flush=True)
    finally:
        client.close()
    return samples


async def measure(rounds: int, cold: int, cgroup_parent: str | None
                  ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Every figure but the warm path's, with one backbone server and two held containers
    (in `cgroup_parent`, and in Docker's default cgroup)."""
    torch.set_num_threads(1)
    llama = await asyncio.to_thread(ensure_llamacpp)
    models = build_demo_models(lorafaas_home() / "models")
    adapter = models.adapters["pirate"]
    measures, facts = host_measures(models.backbone_dir, adapter, llama)
    async with bench_parts(models) as parts:
        samples = await cold_starts(parts, cold)
        warm = await _warm_function(parts, adapter, "engine", cgroup_parent)
        beside = await _warm_function(parts, adapter, "engine-docker", None)
        try:
            for b in (1, 4, 8):
                measures[f"lorafaas b{b}"] = functools.partial(warm.step_ms, b)
            measures["lorafaas b1 cpu"] = warm.cpu_ms
            measures["lorafaas b1 docker cgroup"] = functools.partial(beside.step_ms, 1)
            measures["lorafaas ttft"] = warm.ttft_ms
            samples.update(await interleaved(measures, rounds))
        finally:
            for held in (warm, beside):
                await held.pool.release(held.lease.container)
                await held.pool.shutdown()
    return samples, {**facts, "engine": warm.engine}


async def _warm_function(parts: BenchParts, adapter: Path, name: str,
                         cgroup_parent: str | None) -> WarmFunction:
    """A pool of its own holding one warm container of the function."""
    pool = parts.pool({"torch_threads": 1, "max_instances": 1}, cgroup_parent=cgroup_parent)
    function = FunctionRef(key=f"bench/{name}", name=QualifiedName.from_path(f"bench/{name}"),
                           adapter_dir=adapter, memory_mb=2048)
    return WarmFunction(pool, await pool.acquire(function))


def warm_path_overhead(calls: int, saved: Path | None) -> tuple[dict[str, float], str | None]:
    """`bench_warm_path.py`'s overhead p50 (ms), or why there is none: its platform's first
    call must end within the blocking wait, which a cold start on a loaded machine can miss."""
    try:
        run = (json.loads(saved.read_text()) if saved is not None
               else bench_warm_path.run_elsewhere(REPO_ROOT, calls))
    except subprocess.CalledProcessError as error:
        return {}, f"warm-path overhead (`bench_warm_path.py` failed: exit {error.returncode})"
    return {"warm overhead p50": bench_warm_path.summary(run)["overhead_p50"]}, None


def main() -> None:
    """Measure (or read `--samples`), then write the report and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--cold", type=int, default=3, help="cold starts")
    parser.add_argument("--calls", type=int, default=200, help="warm-path calls")
    parser.add_argument("--samples", type=Path, default=SAMPLES,
                        help="where the samples are kept (so a report can be written again)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from --samples, measuring nothing")
    parser.add_argument("--warm-path-json", type=Path,
                        help="a saved `bench_warm_path.py --json` run instead of a new one")
    parser.add_argument("--skip-warm-path", action="store_true", help="no warm-path figure")
    parser.add_argument("--note", default="", help="a paragraph about this run, for the report")
    parser.add_argument("--cgroup-parent", default="/",
                        help="the measured warm function's cgroup parent ('' for Docker's "
                        "default; a second function is always measured there)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as measured, and as the report's machine line says
    if not args.report_only:
        loads = [os.getloadavg()[0]]
        samples, facts = asyncio.run(measure(args.rounds, args.cold,
                                             args.cgroup_parent or None))
        loads.append(os.getloadavg()[0])
        args.samples.parent.mkdir(parents=True, exist_ok=True)
        args.samples.write_text(json.dumps({"samples": samples, "facts": facts,
                                            "loads": loads, "rounds": args.rounds}))
    kept = json.loads(args.samples.read_text())
    overhead, unmeasured = (({}, "warm-path overhead (skipped: --skip-warm-path)")
                            if args.skip_warm_path
                            else warm_path_overhead(args.calls, args.warm_path_json))
    loads = [*kept["loads"], os.getloadavg()[0]]
    medians = {name: statistics.median(v) for name, v in kept["samples"].items()}
    medians.update(overhead)
    print(json.dumps(medians, indent=1))
    facts = kept["facts"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "engine.md").write_text(markdown(
        medians, command=COMMAND, machine=machine_description(),
        loads=" → ".join(f"{v:.1f}" for v in loads) + " (start, after the rounds, "
        + ("at the report)" if args.skip_warm_path else "after the warm path)"),
        rounds=kept["rounds"], tokens=TOKENS, weights_mb=facts["weights_mb"],
        prompt_tokens=int(facts["prompt_tokens"]), engine=facts["engine"], calls=args.calls,
        unmeasured=() if unmeasured is None else (unmeasured,)))
    if args.note:
        with (OUT_DIR / "engine.md").open("a") as report:
            report.write(f"\n## About this run\n\n{args.note}\n")
    plot(medians, OUT_DIR / "engine.png")
    print((OUT_DIR / "engine.md").read_text())


if __name__ == "__main__":
    main()
