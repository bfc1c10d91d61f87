"""One LoRA function in its container: backbone attach, adapter, tokenizer, warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from peft import PeftModel
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lorafaas.runtime.attach import BackboneAttachment, build_backbone
from lorafaas.runtime.batched import iter_batch
from lorafaas.runtime.generation import GenerationRequest, TokenSink, generate, plain_chat

T = TypeVar("T")
WARMUP_PROMPT = "Warm up the kernels at the function's shapes."


@dataclass(frozen=True)
class RuntimePaths:
    """Where the invoker mounted the function's parts inside the container."""

    attach_socket: Path
    backbone_dir: Path
    adapter_dir: Path


class LoadedFunction:
    """The backbone with this function's adapter (unmerged) and tokenizer, ready to run."""

    def __init__(self, model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                 attachment: BackboneAttachment, breakdown: dict[str, float]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.attachment = attachment
        self.breakdown = breakdown
        # The backbone's busy time in this container, measured around each generation
        # independently of the per-request timings that billing uses (reported by /health).
        self.busy_ms = 0.0
        self.generations = 0

    def run(self, request: GenerationRequest, sink: TokenSink | None = None
            ) -> tuple[dict[str, Any], dict[str, float]]:
        """Generate for one request (`sink` receives each new token's ids)."""
        started = time.monotonic()
        try:
            return generate(self.model, self.tokenizer, request, sink)
        finally:
            self.busy_ms += (time.monotonic() - started) * 1000
            self.generations += 1

    def run_batch(self, requests: list[GenerationRequest]
                  ) -> Iterator[tuple[int, dict[str, Any], dict[str, float]]]:
        """Generate for a batch in one pass; yield (index, result, timings) as each ends."""
        started = time.monotonic()
        try:
            for done in iter_batch(self.model, self.tokenizer, requests):
                yield done.index, done.result, done.timings
        finally:
            self.busy_ms += (time.monotonic() - started) * 1000
            self.generations += len(requests)

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """A chat as the prompt text: the tokenizer's chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True))
        return plain_chat(messages)


def _timed(breakdown: dict[str, float], name: str, step: Callable[[], T]) -> T:
    started = time.monotonic()
    value = step()
    breakdown[name] = round((time.monotonic() - started) * 1000, 3)
    return value


@dataclass
class AttachedBackbone:
    """The backbone mapped from the backbone server, before any adapter (a stem cell)."""

    attachment: BackboneAttachment
    model: PreTrainedModel
    attach_ms: float


def attach_backbone(paths: RuntimePaths, client: str) -> AttachedBackbone:
    """Attach to the backbone server and build the model on its published weights."""
    started = time.monotonic()
    attachment = BackboneAttachment(paths.attach_socket, client)
    model = build_backbone(attachment.descriptor, paths.backbone_dir)
    return AttachedBackbone(attachment, model, round((time.monotonic() - started) * 1000, 3))


def load_function(paths: RuntimePaths, client: str,
                  backbone: AttachedBackbone | None = None) -> LoadedFunction:
    """Load the function's artifacts not loaded yet, timing each (milliseconds)."""
    breakdown: dict[str, float] = {}
    if backbone is None:
        backbone = attach_backbone(paths, client)
        breakdown["backbone"] = backbone.attach_ms
    # Unmerged: y = xW + s·(xA)B. Merging would write the shared backbone weights.
    base = backbone.model
    model = _timed(breakdown, "adapter",
                   lambda: PeftModel.from_pretrained(base, str(paths.adapter_dir),
                                                     is_trainable=False))
    model.eval()
    tokenizer = _timed(breakdown, "tokenizer", lambda: _load_tokenizer(paths))
    _timed(breakdown, "kernels", lambda: _warm_up(model, tokenizer))
    return LoadedFunction(model, tokenizer, backbone.attachment, breakdown)


def _load_tokenizer(paths: RuntimePaths) -> PreTrainedTokenizerBase:
    # An adapter may ship its own tokenizer (added tokens); else the backbone's.
    source = paths.adapter_dir if (paths.adapter_dir / "tokenizer.json").exists() \
        else paths.backbone_dir
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)


def _warm_up(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    inputs = tokenizer(WARMUP_PROMPT, return_tensors="pt")
    with torch.inference_mode():
        model(**inputs)
