"""Decode speed of the native engine against peft's generate and the memory-bandwidth floor.

Run on demand (not in the suite): `.venv/bin/python tests/benchmarks/bench_engine_decode.py`.
On the demo backbone and one demo adapter, with one torch thread, side by side in one run:

- floor: one matrix-vector pass over every 2-D weight (the bytes a decode step must read);
  the batch-8 / batch-1 ratio of bare matrix products over the same weights;
- native: `NativeEngine.run_batch`, ms per decode step at batch 1, 4 and 8 (rows of 65
  tokens, EOS ignored), and warm TTFT against one prefill forward of the same prompt;
- peft: `PeftModel.generate` (greedy, left-padded batches), ms per step.

Each figure is the median of `--repeats` runs, interleaved. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.generation import GenerationRequest
from lorafaas.runtime.profiler import load_model, machine_description

MODELS = Path("~/.lorafaas/models").expanduser()
PROMPT = "Tell me about the sea and ships"
TOKENS = 65


def median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def matvec(weights: list[torch.Tensor], rows: int) -> Callable[[], None]:
    inputs = [torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights]

    def run() -> None:
        for x, w in zip(inputs, weights, strict=True):
            torch.nn.functional.linear(x, w)
    return run


def decode_weights(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """What a decode step reads: every matrix, the embedding only where it is the lm_head."""
    return [t for name, t in tensors.items() if t.dim() == 2
            and (name != "model.embed_tokens.weight" or "lm_head.weight" not in tensors)]


def peft_step_ms(peft: Any, tokenizer: Any, batch: int) -> float:
    """ms per decode step of `PeftModel.generate` (greedy, left-padded, EOS not stopping)."""
    inputs = tokenizer([PROMPT] * batch, return_tensors="pt", padding=True,
                       padding_side="left")
    with torch.inference_mode():
        first = median_ms(lambda: peft.generate(**inputs, max_new_tokens=1,
                                                do_sample=False), 1)
        total = median_ms(lambda: peft.generate(**inputs, max_new_tokens=TOKENS,
                                                min_new_tokens=TOKENS, do_sample=False), 1)
    return (total - first) / (TOKENS - 1)


def prefill_ms(peft: Any, ids: Any) -> float:
    """One prefill forward of the tokenized prompt, the last position's logits only."""
    with torch.inference_mode():
        return median_ms(lambda: peft(**ids, logits_to_keep=1), 1)


def _native_step_ms(engine: NativeEngine, batch: int) -> float:
    requests = [GenerationRequest(PROMPT, max_tokens=TOKENS, ignore_eos=True)] * batch
    timings = [t for _, _, t in engine.run_batch(requests)]
    return float(max(t["decode"] for t in timings)) / (TOKENS - 1)


def _native_ttft_ms(engine: NativeEngine) -> float:
    _, timings = engine.run(GenerationRequest(PROMPT, max_tokens=1))
    return float(timings["ttft"])


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", type=Path, default=MODELS / "demo-backbone")
    parser.add_argument("--adapter", type=Path, default=MODELS / "demo-adapters" / "pirate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(str(args.backbone))
    config = json.loads((args.backbone / "config.json").read_text())
    tensors = load_file(str(args.backbone / "model.safetensors"))
    engine = NativeEngine(config, tensors, tokenizer, {int(tokenizer.eos_token_id)})
    engine.load_adapter(args.adapter)
    peft = load_model(args.backbone, args.adapter)
    weights = decode_weights(tensors)
    size_mb = sum(w.numel() * w.element_size() for w in weights) / 1e6
    ids = tokenizer(PROMPT, return_tensors="pt")

    measures: dict[str, Callable[[], float]] = {
        "floor b1": lambda: median_ms(matvec(weights, 1), 1),
        "floor b8": lambda: median_ms(matvec(weights, 8), 1),
        "prefill forward": lambda: prefill_ms(peft, ids),
        "native ttft": lambda: _native_ttft_ms(engine),
    }
    for b in (1, 4, 8):
        measures[f"native b{b}"] = functools.partial(_native_step_ms, engine, b)
        measures[f"peft b{b}"] = functools.partial(peft_step_ms, peft, tokenizer, b)
    for measure in measures.values():  # warm-up: kernels, caches, allocator
        measure()
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
        for name, measure in measures.items():
            samples[name].append(measure())
    median = {name: statistics.median(values) for name, values in samples.items()}
    _print_table(median, size_mb, args.repeats)


def _print_table(median: dict[str, float], size_mb: float, repeats: int) -> None:
    floor, bare_ratio = median["floor b1"], median["floor b8"] / median["floor b1"]
    print(f"Machine: {machine_description()}; weights {size_mb:.0f} MB; "
          f"medians of {repeats} interleaved runs; {TOKENS} tokens a row.\n")
    print("| measure | ms | ratio | target |")
    print("| --- | ---: | ---: | --- |")
    print(f"| floor: matrix-vector over all weights | {floor:.2f} | 1.00 | |")
    print(f"| bare matmuls, batch 8 | {median['floor b8']:.2f} | {bare_ratio:.2f} "
          "(÷ batch 1) | |")
    print(f"| native decode step, batch 1 | {median['native b1']:.2f} | "
          f"{median['native b1'] / floor:.2f} (÷ floor) | ≤ 1.30 |")
    for b in (4, 8):
        ratio = median[f"native b{b}"] / median["native b1"]
        target = f"≤ {1.2 * bare_ratio:.2f} (1.2 × bare)" if b == 8 else ""
        print(f"| native decode step, batch {b} | {median[f'native b{b}']:.2f} | "
              f"{ratio:.2f} (÷ batch 1) | {target} |")
    for b in (1, 4, 8):
        print(f"| peft generate step, batch {b} | {median[f'peft b{b}']:.2f} | "
              f"{median[f'peft b{b}'] / floor:.2f} (÷ floor) | |")
    print(f"| one prefill forward | {median['prefill forward']:.2f} | 1.00 | |")
    print(f"| native warm TTFT | {median['native ttft']:.2f} | "
          f"{median['native ttft'] / median['prefill forward']:.2f} (÷ prefill) | ≤ 1.30 |")


if __name__ == "__main__":
    main()
