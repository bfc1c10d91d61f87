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
from lorafaas.runtime.continuous import ContinuousEngine
from lorafaas.runtime.engine.choice import GENERAL, native_engine
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.generation import (
    GenerationRequest,
    TokenSink,
    eos_token_ids,
    generate,
    plain_chat,
)
from lorafaas.runtime.memory import grown, held_bytes
from lorafaas.runtime.offload import ACCELERATOR, ArtifactTiers
from lorafaas.runtime.private_backbone import load_private_backbone

T = TypeVar("T")
WARMUP_PROMPT = "Warm up the kernels at the function's shapes."


@dataclass(frozen=True)
class RuntimePaths:
    """Where the invoker mounted the function's parts inside the container.

    Without an attach socket (backbone sharing off), `backbone_dir` is the backbone's
    checkpoint folder and the container loads a private copy of it."""

    attach_socket: Path | None
    backbone_dir: Path
    adapter_dir: Path


class LoadedFunction:
    """The backbone with this function's adapter (unmerged) and tokenizer, ready to run."""

    def __init__(self, model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                 attachment: BackboneAttachment | None, breakdown: dict[str, float],
                 memory: dict[str, int], native: NativeEngine | None = None) -> None:
        self.model = model
        # The native engine serves where it computes exactly what peft does (else None:
        # the general path, `model.generate` and the batch decoder, serves).
        self.native = native
        self.tokenizer = tokenizer
        self.attachment = attachment
        self.breakdown = breakdown
        self.memory = memory  # host bytes each loaded artifact took (see runtime.memory)
        # The backbone's busy time in this container, measured around each generation
        # independently of the per-request timings that billing uses (reported by /health).
        self.busy_ms = 0.0
        self.generations = 0
        # The adapter weights and cached buffers, which the invoker may move to host memory.
        self.tiers = ArtifactTiers(model)
        self._engine: ContinuousEngine | None = None

    def run(self, request: GenerationRequest, sink: TokenSink | None = None
            ) -> tuple[dict[str, Any], dict[str, float]]:
        """Generate for one request (`sink` receives each new token's ids)."""
        restore_ms = self._restore_if_offloaded()
        started = time.monotonic()
        try:
            if self.native is not None:
                result, timings = self.native.run(request, sink)
            else:
                result, timings = generate(self.model, self.tokenizer, request, sink)
                timings = {**timings, "engine": GENERAL}  # type: ignore[dict-item]
            return result, _with_restore(timings, restore_ms)
        finally:
            self.busy_ms += (time.monotonic() - started) * 1000
            self.generations += 1

    def run_batch(self, requests: list[GenerationRequest]
                  ) -> Iterator[tuple[int, dict[str, Any], dict[str, float]]]:
        """Generate for a batch in one pass; yield (index, result, timings) as each ends."""
        restore_ms = self._restore_if_offloaded()
        started = time.monotonic()
        try:
            if self.native is not None:
                for index, result, timings in self.native.run_batch(requests):
                    yield index, result, _with_restore(timings, restore_ms)
                return
            for done in iter_batch(self.model, self.tokenizer, requests):
                timings = {**done.timings, "engine": GENERAL}  # type: ignore[dict-item]
                yield done.index, done.result, _with_restore(timings, restore_ms)
        finally:
            self.busy_ms += (time.monotonic() - started) * 1000
            self.generations += len(requests)

    def continuous(self) -> ContinuousEngine:
        """The container's continuous-batching engine (started on first use): requests
        join its running decode instead of waiting for one another."""
        if self._engine is None and self.native is not None:
            self._engine = ContinuousEngine(self.model, self.tokenizer,
                                            self._restore_if_offloaded, self._account,
                                            self.native.decoder_factory(), "native")
        if self._engine is None:
            self._engine = ContinuousEngine(self.model, self.tokenizer,
                                            self._restore_if_offloaded, self._account)
        return self._engine

    @property
    def engine(self) -> ContinuousEngine | None:
        """The continuous-batching engine, if a request has started it."""
        return self._engine

    def _account(self, busy_ms: float, ended: int) -> None:
        # Called on the engine's thread after each of its iterations (/health counters).
        self.busy_ms += busy_ms
        self.generations += ended

    def _restore_if_offloaded(self) -> float | None:
        """Bring offloaded artifacts back before generating; the ms it took, or None."""
        if self.tiers.tier == ACCELERATOR:
            return None
        return self.tiers.restore().ms

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """A chat as the prompt text: the tokenizer's chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True))
        return plain_chat(messages)


def _with_restore(timings: dict[str, float], restore_ms: float | None) -> dict[str, float]:
    # The caller waited for the restore before its first token, so ttft counts it.
    if restore_ms is None:
        return timings
    return {**timings, "restore": round(restore_ms, 3), "ttft": timings["ttft"] + restore_ms}


def _timed(breakdown: dict[str, float], memory: dict[str, int], name: str,
           step: Callable[[], T]) -> T:
    """Run one load stage, recording its time (ms) and the host memory it took (bytes)."""
    held, started = held_bytes(), time.monotonic()
    value = step()
    breakdown[name] = round((time.monotonic() - started) * 1000, 3)
    if (size := grown(held, held_bytes())) is not None:
        memory[name] = size
    return value


@dataclass
class AttachedBackbone:
    """The backbone mapped from the backbone server, before any adapter (a stem cell), or
    its private copy when sharing is off (then `attachment` is None)."""

    attachment: BackboneAttachment | None
    model: PreTrainedModel
    attach_ms: float
    # Host bytes the attach took: the model's skeleton and rebuilt buffers. The weights stay
    # the server's (tmpfs pages mapped here, or CUDA IPC memory), shared by every container,
    # and are left out (see runtime.memory); None where /proc cannot say.
    attach_bytes: int | None


def attach_backbone(paths: RuntimePaths, client: str) -> AttachedBackbone:
    """Attach to the backbone server and build the model on its published weights; without
    an attach socket, load a private copy from the checkpoint (its bytes are then counted)."""
    held, started = held_bytes(), time.monotonic()
    attachment = None
    if paths.attach_socket is None:
        model = load_private_backbone(paths.backbone_dir)
    else:
        attachment = BackboneAttachment(paths.attach_socket, client)
        model = build_backbone(attachment.descriptor, paths.backbone_dir)
    return AttachedBackbone(attachment, model, round((time.monotonic() - started) * 1000, 3),
                            grown(held, held_bytes()))


def load_function(paths: RuntimePaths, client: str,
                  backbone: AttachedBackbone | None = None) -> LoadedFunction:
    """Load the function's artifacts not loaded yet, timing each (ms) and sizing it (bytes)."""
    breakdown: dict[str, float] = {}
    memory: dict[str, int] = {}
    if backbone is None:
        backbone = attach_backbone(paths, client)
        breakdown["backbone"] = backbone.attach_ms
        if backbone.attach_bytes is not None:
            memory["backbone"] = backbone.attach_bytes
    # Unmerged: y = xW + s·(xA)B. Merging would write the shared backbone weights.
    base = backbone.model
    model = _timed(breakdown, memory, "adapter",
                   lambda: PeftModel.from_pretrained(base, str(paths.adapter_dir),
                                                     is_trainable=False))
    model.eval()
    tokenizer = _timed(breakdown, memory, "tokenizer", lambda: _load_tokenizer(paths))
    native = native_engine(base, tokenizer, paths.adapter_dir,
                           set(eos_token_ids(model, tokenizer)))
    _timed(breakdown, memory, "kernels", lambda: _warm_up(model, tokenizer, native))
    return LoadedFunction(model, tokenizer, backbone.attachment, breakdown, memory, native)


def _load_tokenizer(paths: RuntimePaths) -> PreTrainedTokenizerBase:
    # An adapter may ship its own tokenizer (added tokens); else the backbone's.
    source = paths.adapter_dir if (paths.adapter_dir / "tokenizer.json").exists() \
        else paths.backbone_dir
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)


def _warm_up(model: PeftModel, tokenizer: PreTrainedTokenizerBase,
             native: NativeEngine | None) -> None:
    if native is not None:
        native.run(GenerationRequest(WARMUP_PROMPT, max_tokens=2, ignore_eos=True))
        return
    inputs = tokenizer(WARMUP_PROMPT, return_tensors="pt")
    with torch.inference_mode():
        model(**inputs)
