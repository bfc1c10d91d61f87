"""Prefill profiler: measure T(b) for b = 1…16 at a few prompt lengths and fit T0 + α·(b−1).

The fit is per backbone, adapter rank and machine: run it where the function will run.
`python -m lorafaas.runtime.profiler --backbone DIR --adapter DIR` prints the table, the
fit and its R² (and with `--json FILE` writes them: the controller runs it so in a
one-off container of the runtime image, and stores the fits in its registry).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel

from lorafaas.runtime.private_backbone import MANIFEST_FILE, load_private_backbone
from lorafaas.wire.machine import describe_machine
from lorafaas.wire.prefill_fit import PrefillProfile, fit_prefill_model, format_profile

DEFAULT_BATCH_SIZES = tuple(range(1, 17))
DEFAULT_PROMPT_LENGTHS = (32, 128)
DEFAULT_REPEATS = 3
# Token ids below this are special tokens (<unk>, <s>, </s>, <pad> in the demo tokenizer).
FIRST_ORDINARY_ID = 4


def prompt_batch(batch_size: int, prompt_length: int, vocab_size: int) -> torch.Tensor:
    """Fixed pseudo-random ordinary token ids: no padding, the same for every run."""
    generator = torch.Generator().manual_seed(prompt_length)
    return torch.randint(FIRST_ORDINARY_ID, vocab_size, (batch_size, prompt_length),
                         generator=generator)


@torch.inference_mode()
def time_prefill(model: PeftModel | PreTrainedModel, input_ids: torch.Tensor) -> float:
    """One prefill forward as batched generation runs it (fresh cache, last logits); ms."""
    started = time.perf_counter()
    model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
          past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
    return (time.perf_counter() - started) * 1000


def profile_prefill(model: PeftModel | PreTrainedModel, prompt_length: int,
                    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                    repeats: int = DEFAULT_REPEATS) -> PrefillProfile:
    """Median T(b) over `repeats` sweeps of every batch size, and the least-squares fit."""
    vocab_size = int(model.config.vocab_size)
    batches = {b: prompt_batch(b, prompt_length, vocab_size) for b in batch_sizes}
    time_prefill(model, batches[batch_sizes[0]])  # warm-up: first-call allocations
    times: dict[int, list[float]] = {b: [] for b in batch_sizes}
    # Sweep all sizes per repeat, so that a burst of load on the machine spreads over
    # every size instead of bending the curve at a few of them.
    for _ in range(repeats):
        for b in batch_sizes:
            times[b].append(time_prefill(model, batches[b]))
    samples = [(b, statistics.median(times[b])) for b in batch_sizes]
    fitted, r2 = fit_prefill_model(samples)
    return PrefillProfile(prompt_length, samples, fitted, r2)


def load_model(backbone_dir: Path, adapter_dir: Path, dtype: str = "float32") -> PeftModel:
    """The backbone with the adapter applied unmerged, as in a function container.

    `backbone_dir` is what the backbone server published (its serving dtype is then the
    one used: a container reads only that), or a checkpoint folder loaded in `dtype`."""
    if (backbone_dir / MANIFEST_FILE).exists():
        backbone = load_private_backbone(backbone_dir)
    else:
        backbone = AutoModelForCausalLM.from_pretrained(str(backbone_dir),
                                                        dtype=getattr(torch, dtype))
    with warnings.catch_warnings():
        # peft 0.21 reads a deprecated transformers 5 alias; not ours to fix.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        model = PeftModel.from_pretrained(backbone, str(adapter_dir), is_trainable=False)
    return model.eval()


def adapter_rank(model: PeftModel) -> int:
    """The LoRA rank of the active adapter."""
    return int(model.peft_config[model.active_adapter].r)  # type: ignore[attr-defined]


def machine_description() -> str:
    """CPU model, cores and torch threads, or the CUDA device."""
    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{describe_machine(torch.get_num_threads())}, torch {torch.__version__}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m lorafaas.runtime.profiler",
                                     description="Measure prefill time T(b) and fit "
                                                 "T0 + α·(b−1).")
    parser.add_argument("--backbone", type=Path, required=True, help="backbone model folder")
    parser.add_argument("--adapter", type=Path, required=True, help="PEFT adapter folder")
    parser.add_argument("--prompt-lengths", type=int, nargs="+",
                        default=list(DEFAULT_PROMPT_LENGTHS), help="prompt lengths in tokens")
    parser.add_argument("--max-batch", type=int, default=max(DEFAULT_BATCH_SIZES),
                        help="profile b = 1…this")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="timed sweeps (the median is kept)")
    parser.add_argument("--dtype", default="float32", help="serving dtype")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads, as the function's container will run "
                             "(default: torch's own choice)")
    parser.add_argument("--json", type=Path, help="also write the profile to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile the backbone with the adapter and print the fits."""
    args = parse_args(argv)
    if args.threads:
        # With more threads than free cores, OpenMP waits on descheduled threads and
        # T(b) jumps tenfold at random: profile at the count the container will use.
        torch.set_num_threads(args.threads)
    model = load_model(args.backbone, args.adapter, args.dtype)
    machine = machine_description()
    dtype = str(model.dtype).removeprefix("torch.")
    print(f"backbone {args.backbone.name}, adapter rank {adapter_rank(model)}, {dtype}")
    print(f"machine: {machine}")
    sizes = tuple(range(1, args.max_batch + 1))
    profiles = [profile_prefill(model, length, sizes, args.repeats)
                for length in args.prompt_lengths]
    for profile in profiles:
        print(format_profile(profile))
    if args.json:
        report = {"backbone": args.backbone.name, "adapter_rank": adapter_rank(model),
                  "dtype": dtype, "machine": machine,
                  "profiles": [p.as_dict() for p in profiles]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
