"""One LoRA function in its container: backbone attach, adapter, tokenizer, warm-up.

The native engine serves where it computes exactly what peft does (`engine.choice`): then
nothing of transformers or peft is imported, the tokenizer is `runtime.tokenizer` and the
generation config is read as JSON. The general path (transformers' model, peft, their
tokenizer) is imported only for a function it serves, and that import is timed as part of
the function's `libraries` step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from lorafaas.runtime import collector
from lorafaas.runtime.attach import BackboneAttachment, published_tensors
from lorafaas.runtime.continuous import ContinuousEngine
from lorafaas.runtime.engine.choice import GENERAL, native_engine_on
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.memory import grown, held_bytes
from lorafaas.runtime.offload import ACCELERATOR, ArtifactTiers
from lorafaas.runtime.private_backbone import private_tensors
from lorafaas.runtime.request import ChatRenderer, GenerationRequest, TokenSink, plain_chat
from lorafaas.runtime.sampling import (
    GREEDY,
    GREEDY_DEFAULTS,
    SamplingDefaults,
    eos_ids,
    read_generation_config,
    sampling_defaults,
)
from lorafaas.runtime.tokenizer import TOKENIZER_JSON, ServingTokenizer
from lorafaas.runtime.tokens import TextTokenizer
from lorafaas.runtime.user_code import MAIN_FILE, load_entry

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

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

    def __init__(self, model: PeftModel | None, tokenizer: TextTokenizer,
                 attachment: BackboneAttachment | None, breakdown: dict[str, float],
                 memory: dict[str, int], native: NativeEngine | None = None,
                 chat: ChatRenderer | None = None,
                 sampling: SamplingDefaults = GREEDY) -> None:
        # The peft model of the general path (None where the native engine serves).
        self.model = model
        # The native engine serves where it computes exactly what peft does (else None:
        # the general path, `model.generate` and the batch decoder, serves).
        self.native = native
        self.tokenizer = tokenizer
        self.attachment = attachment
        self.breakdown = breakdown
        self.memory = memory  # host bytes each loaded artifact took (see runtime.memory)
        self.render_chat: ChatRenderer = chat or _chat_renderer(tokenizer)
        self.sampling = sampling  # what a request that names no temperature samples with
        # The backbone's busy time in this container, measured around each generation
        # independently of the per-request timings that billing uses (reported by /health).
        self.busy_ms = 0.0
        self.generations = 0
        # The adapter weights and cached buffers, which the invoker may move to host memory.
        self.tiers = ArtifactTiers(model) if model is not None else ArtifactTiers(
            tensors=_native_adapter_tensors(native))
        self._engine: ContinuousEngine | None = None
        # The owner's `main(args, llm)` (runtime.handler), run instead of the default handler.
        self.handler: Callable[..., Any] | None = None

    def run(self, request: GenerationRequest, sink: TokenSink | None = None
            ) -> tuple[dict[str, Any], dict[str, float]]:
        """Generate for one request (`sink` receives each new token's ids)."""
        restore_ms = self._restore_if_offloaded()
        started = time.monotonic()
        try:
            if self.native is not None:
                result, timings = self.native.run(request, sink)
            else:
                from lorafaas.runtime.generation import generate

                assert self.model is not None
                result, timings = generate(self.model, self._general_tokenizer(), request,
                                           sink)
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
            from lorafaas.runtime.batched import iter_batch

            assert self.model is not None
            for done in iter_batch(self.model, self._general_tokenizer(), requests):
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

    def _general_tokenizer(self) -> PreTrainedTokenizerBase:
        """The general path's tokenizer: transformers' (its generate needs one)."""
        return self.tokenizer  # type: ignore[return-value]


def _chat_renderer(tokenizer: TextTokenizer) -> ChatRenderer:
    """A chat as the prompt text: the tokenizer's chat template when it has one."""
    if isinstance(tokenizer, ServingTokenizer):
        return tokenizer.render_chat if tokenizer.chat_template is not None else plain_chat
    template_owner: Any = tokenizer  # transformers' (the general path)
    if not getattr(template_owner, "chat_template", None):
        return plain_chat
    return lambda messages: str(template_owner.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True))


def _native_adapter_tensors(native: NativeEngine | None) -> list[torch.Tensor]:
    """The native engine's adapter weights: the function's own tensors (offloadable)."""
    if native is None:
        return []
    return [tensor for linear in native.model.linears().values()
            for lora in linear.loras.values() for tensor in (lora.a, lora.b)]


def _with_restore(timings: dict[str, float], restore_ms: float | None) -> dict[str, float]:
    # The caller waited for the restore before its first token, so ttft counts it.
    if restore_ms is None:
        return timings
    return {**timings, "restore": round(restore_ms, 3), "ttft": timings["ttft"] + restore_ms}


def _timed(breakdown: dict[str, float], memory: dict[str, int], name: str,
           step: Callable[[], T]) -> T:
    """Run one load stage, adding its time (ms) and the host memory it took (bytes) to the
    artifact's (the general path loads some artifacts in two steps)."""
    held, started = held_bytes(), time.monotonic()
    value = step()
    breakdown[name] = round(breakdown.get(name, 0.0) + (time.monotonic() - started) * 1000, 3)
    if (size := grown(held, held_bytes())) is not None:
        memory[name] = memory.get(name, 0) + size
    return value


@dataclass
class AttachedBackbone:
    """The backbone's tensors mapped from the backbone server, before any adapter (a stem
    cell), or its private copy when sharing is off (then `attachment` is None)."""

    attachment: BackboneAttachment | None
    descriptor: dict[str, Any]  # dtype, config, tied names (see backbone.publisher)
    tensors: dict[str, torch.Tensor]
    attach_ms: float
    # Host bytes the attach took. The weights stay the server's (tmpfs pages mapped here,
    # or CUDA IPC memory), shared by every container, and are left out (see runtime.memory);
    # None where /proc cannot say.
    attach_bytes: int | None


def attach_backbone(paths: RuntimePaths, client: str) -> AttachedBackbone:
    """Attach to the backbone server and map its published weights; without an attach
    socket, read a private copy of them (its bytes are then counted)."""
    held, started = held_bytes(), time.monotonic()
    attachment = None
    if paths.attach_socket is None:
        descriptor, tensors = private_tensors(paths.backbone_dir)
    else:
        attachment = BackboneAttachment(paths.attach_socket, client)
        descriptor = attachment.descriptor
        tensors = published_tensors(descriptor, paths.backbone_dir)
    return AttachedBackbone(attachment, descriptor, tensors,
                            round((time.monotonic() - started) * 1000, 3),
                            grown(held, held_bytes()))


def load_function(paths: RuntimePaths, client: str,
                  backbone: AttachedBackbone | None = None,
                  generation_defaults: str = GREEDY_DEFAULTS) -> LoadedFunction:
    """Load the function's artifacts not loaded yet, timing each (ms) and sizing it (bytes);
    then its own handler, when its zip has one (`runtime.handler`)."""
    loaded = _load_model(paths, client, backbone, generation_defaults)
    if (paths.adapter_dir / MAIN_FILE).is_file():
        loaded.handler = _timed(loaded.breakdown, loaded.memory, "handler",
                                lambda: load_entry(paths.adapter_dir))
    return loaded


def _load_model(paths: RuntimePaths, client: str, backbone: AttachedBackbone | None,
                generation_defaults: str) -> LoadedFunction:
    """The backbone, tokenizer, adapter and kernels, timed and sized."""
    breakdown: dict[str, float] = {}
    memory: dict[str, int] = {}
    if backbone is None:
        backbone = attach_backbone(paths, client)
        breakdown["backbone"] = backbone.attach_ms
        if backbone.attach_bytes is not None:
            memory["backbone"] = backbone.attach_bytes
    generation_config = read_generation_config(paths.backbone_dir)
    sampling = sampling_defaults(generation_defaults, generation_config)
    tokenizer = _timed(breakdown, memory, "tokenizer", lambda: _load_tokenizer(paths))
    stops = eos_ids(generation_config, backbone.descriptor["config"], tokenizer.eos_token_id)
    # Unmerged: y = xW + s·(xA)B. Merging would write the shared backbone weights.
    native = _timed(breakdown, memory, "adapter", lambda: native_engine_on(
        backbone.descriptor["config"], _with_tied(backbone), tokenizer, paths.adapter_dir,
        set(stops)))
    if native is not None:
        _timed(breakdown, memory, "kernels", lambda: native.run(
            GenerationRequest(WARMUP_PROMPT, max_tokens=2, ignore_eos=True)))
        return LoadedFunction(None, tokenizer, backbone.attachment, breakdown, memory, native,
                              sampling=sampling)
    return _load_general(paths, backbone, breakdown, memory, sampling)


def _with_tied(backbone: AttachedBackbone) -> dict[str, torch.Tensor]:
    """The published tensors under every name, tied ones included (published once)."""
    tensors = dict(backbone.tensors)
    for target, source in (backbone.descriptor.get("tied") or {}).items():
        if source in tensors:
            tensors.setdefault(target, tensors[source])
    return tensors


def _load_general(paths: RuntimePaths, backbone: AttachedBackbone,
                  breakdown: dict[str, float], memory: dict[str, int],
                  sampling: SamplingDefaults) -> LoadedFunction:
    """The general path: transformers' model on the mapped tensors, peft, its tokenizer."""
    with collector.held():
        _timed(breakdown, memory, "libraries", _import_general_libraries)
    from peft import PeftModel

    from lorafaas.runtime.attach import build_backbone

    def adapted() -> PeftModel:
        base = build_backbone(backbone.descriptor, paths.backbone_dir, backbone.tensors)
        return PeftModel.from_pretrained(base, str(paths.adapter_dir), is_trainable=False)

    model = _timed(breakdown, memory, "adapter", adapted)
    model.eval()
    tokenizer = _timed(breakdown, memory, "tokenizer", lambda: _load_general_tokenizer(paths))
    _timed(breakdown, memory, "kernels", lambda: _warm_up(model, tokenizer))
    return LoadedFunction(model, tokenizer, backbone.attachment, breakdown, memory,
                          sampling=sampling)


def _import_general_libraries() -> None:
    # peft 0.21 reads a deprecated transformers 5 alias at every adapter load; the warning
    # would land in every activation's logs and tells the function's owner nothing.
    import warnings

    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import lorafaas.runtime.batched
    import lorafaas.runtime.generation  # noqa: F401


def _tokenizer_folder(paths: RuntimePaths) -> Path:
    # An adapter may ship its own tokenizer (added tokens); else the backbone's.
    return paths.adapter_dir if (paths.adapter_dir / TOKENIZER_JSON).exists() \
        else paths.backbone_dir


def _load_tokenizer(paths: RuntimePaths) -> ServingTokenizer:
    """The tokenizer serving uses, without transformers (see runtime.tokenizer)."""
    return ServingTokenizer.from_folder(_tokenizer_folder(paths))


def _load_general_tokenizer(paths: RuntimePaths) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_tokenizer_folder(paths)), local_files_only=True)


def _warm_up(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    # On the model's device (CUDA IPC weights are on the GPU), as generation puts them.
    inputs = tokenizer(WARMUP_PROMPT, return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        model(**inputs)
