"""A namespace container's runtime: several functions of one namespace on one backbone.

The trust boundary is the namespace: its functions have one owner, so they may share a
process. The invoker mounts the namespace's adapters read-only under one folder, each
function's adapter in a folder of its own (its slot); nothing of another namespace is
there. A function's adapter is loaded on its first request (the native engine's reader:
tens of milliseconds) and kept within a byte budget (`runtime.adapter_cache`: the coldest
unpinned adapters go first). Every request of every function joins one continuous decode
(`runtime.continuous`) in which each row uses its own function's adapter (the native
engine's grouped LoRA matmuls), so its greedy tokens are the ones it gets alone.

Only the native engine serves here, on the backbone's tokenizer: an adapter it cannot
compute exactly (DoRA, biases...), one that ships a tokenizer of its own, or one whose
shapes do not fit the backbone fails its own requests (`FunctionUnavailable`) and nothing
else; such a function keeps its own containers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.runtime.adapter_cache import Acquired, AdapterCache
from lorafaas.runtime.continuous import ContinuousEngine, Outcome
from lorafaas.runtime.engine.choice import backbone_refusal
from lorafaas.runtime.engine.decoder import NativeBatch
from lorafaas.runtime.engine.lora import AdapterUnsupported, load_adapter
from lorafaas.runtime.engine.model import Linear
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.function import (
    WARMUP_PROMPT,
    AttachedBackbone,
    RuntimePaths,
    _timed,
    _with_tied,
    attach_backbone,
)
from lorafaas.runtime.request import GenerationRequest, TokenSink, plain_chat
from lorafaas.runtime.sampling import (
    GREEDY,
    GREEDY_DEFAULTS,
    SamplingDefaults,
    eos_ids,
    read_generation_config,
    sampling_defaults,
)
from lorafaas.runtime.tokenizer import ServingTokenizer

logger = logging.getLogger(__name__)
NAMESPACE = "namespace"  # the container kind, in each request's timings
# A slot is one path component: no separator, no "..", nothing hidden.
SLOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")


class NamespaceUnsupported(RuntimeError):
    """The backbone cannot be served by a namespace container (no native path for it)."""


class FunctionUnavailable(RuntimeError):
    """A function's adapter cannot be served in this container; the message says why."""


@dataclass(frozen=True)
class NamespacePaths:
    """Where the invoker mounted the namespace container's parts."""

    attach_socket: Path | None
    backbone_dir: Path
    adapters_dir: Path  # one folder per function (its slot), read-only


class NamespaceRuntime:
    """The backbone's native engine, the namespace's loaded adapters and the shared decode."""

    def __init__(self, native: NativeEngine, tokenizer: ServingTokenizer,
                 adapters_dir: Path, budget_bytes: int, breakdown: dict[str, float],
                 memory: dict[str, int], sampling: SamplingDefaults = GREEDY) -> None:
        self.native = native
        self.sampling = sampling  # what a request that names no temperature samples with
        self.tokenizer = tokenizer
        self.adapters_dir = adapters_dir
        self.breakdown = breakdown
        self.memory = memory
        self.adapters = AdapterCache(budget_bytes, self._load, native.model.remove_adapter)
        self.busy_ms = 0.0
        self.generations = 0
        self._routes: dict[int, str] = {}  # id(request) -> its function's slot
        self._routes_lock = threading.Lock()
        # Slots loaded ahead by the pre-loading plan whose first request has not come yet.
        self._preloaded: set[str] = set()
        self.steps = StepStats()
        # The engine hands its model to the batch factory only: here the native model.
        self.engine = ContinuousEngine(native.model, tokenizer, account=self._account,  # type: ignore[arg-type]
                                       decoder_factory=self._batch, engine_name="native",
                                       observe=self._observe)

    def acquire(self, slot: str) -> Acquired:
        """Pin the function's adapter for a request, loading it on first use."""
        if not SLOT.fullmatch(slot):
            raise FunctionUnavailable(f"{slot!r} is not a function's folder name")
        acquired = self.adapters.acquire(slot)
        with self._routes_lock:
            if not acquired.was_loaded:  # dropped since a pre-load: loaded for this request
                self._preloaded.discard(slot)
        return acquired

    def preload(self, slot: str) -> Acquired:
        """Load the function's adapter ahead of its first request (the pre-loading plan's);
        that request then says it found its adapter pre-loaded."""
        acquired = self.acquire(slot)
        try:
            if not acquired.was_loaded:
                with self._routes_lock:
                    self._preloaded.add(slot)
        finally:
            self.release(slot)
        return acquired

    def first_since_preload(self, slot: str) -> bool:
        """Whether a request is the first to find the slot's pre-loaded adapter."""
        with self._routes_lock:
            if slot in self._preloaded:
                self._preloaded.discard(slot)
                return True
            return False

    def release(self, slot: str) -> None:
        """The request that pinned the adapter ended."""
        self.adapters.release(slot)

    def view(self, acquired: Acquired) -> FunctionView:
        """What the server runs a pinned function's requests through."""
        return FunctionView(self, acquired)

    def submit(self, slot: str, request: GenerationRequest,
               sink: TokenSink | None = None) -> Future[Outcome]:
        """Join the shared decode with the function's adapter (pinned by the caller)."""
        # A pin of its own until the row leaves the decode: the caller's may end first
        # (its client gone), and a row's adapter must not be dropped under it.
        self.adapters.acquire(slot)
        with self._routes_lock:
            self._routes[id(request)] = slot
        try:
            future = self.engine.submit(request, sink)
        except BaseException:
            self._ended(slot, request)
            raise
        future.add_done_callback(lambda _: self._ended(slot, request))
        return future

    def close(self) -> None:
        """Stop the shared decode."""
        self.engine.close()

    def _ended(self, slot: str, request: GenerationRequest) -> None:
        with self._routes_lock:
            self._routes.pop(id(request), None)
        self.adapters.release(slot)

    def _batch(self, model: object, tokenizer: object, requests: list[GenerationRequest],
               first: int) -> NativeBatch:
        # Called on the engine's thread for each admission: each row gets its adapter.
        with self._routes_lock:
            names = [self._routes[id(r)] for r in requests]
        return self.native.batch(requests, first, names)

    def _observe(self, requests: list[GenerationRequest]) -> None:
        # On the engine's thread, before the iteration's results are set: routes still hold.
        with self._routes_lock:
            slots = [self._routes[id(r)] for r in requests]
        self.steps.add(slots)

    def _account(self, busy_ms: float, ended: int) -> None:
        self.busy_ms += busy_ms
        self.generations += ended

    def _load(self, slot: str) -> int:
        """Read the slot's adapter into the native model; its bytes (under the cache's lock)."""
        folder = self.adapters_dir / slot
        if not (folder / "adapter_config.json").is_file():
            raise FunctionUnavailable(f"no adapter is mounted for {slot!r}")
        if (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists():
            raise FunctionUnavailable(f"{slot}: the adapter ships its own tokenizer; a "
                                      "namespace container serves the backbone's")
        linears = self.native.model.linears()
        try:
            adapter = load_adapter(folder, linears, slot)
        except AdapterUnsupported as error:
            raise FunctionUnavailable(f"{slot}: {error}") from error
        except Exception as error:  # unreadable or malformed files (safetensors' own error)
            raise FunctionUnavailable(f"{slot}: the adapter cannot be read: {error}") from error
        _check_shapes(slot, adapter.modules, linears)
        self.native.model.add_adapter(adapter)
        size = sum(w.a.nbytes + w.b.nbytes for w in adapter.modules.values())
        logger.info("adapter %s loaded: %d modules, %d bytes", slot, len(adapter.modules), size)
        return size


def _check_shapes(slot: str, modules: dict[str, Any], linears: dict[str, Linear]) -> None:
    """A delta that does not fit its module would break the whole batch's forward."""
    for name, weights in modules.items():
        out_features, in_features = linears[name].weight.shape
        if weights.a.shape[1] != in_features or weights.b.shape[0] != out_features:
            raise FunctionUnavailable(
                f"{slot}: {name}'s LoRA shapes {tuple(weights.a.shape)}, "
                f"{tuple(weights.b.shape)} do not fit the backbone's {out_features}x"
                f"{in_features}")


@dataclass
class StepStats:
    """The composition of the shared decode's iterations: requests and distinct functions."""

    steps: int = 0
    rows: int = 0
    functions: int = 0
    max_functions: int = 0
    last: tuple[str, ...] = ()

    def add(self, slots: list[str]) -> None:
        """One iteration, with the slot of each row it processed."""
        distinct = len(set(slots))
        self.steps += 1
        self.rows += len(slots)
        self.functions += distinct
        self.max_functions = max(self.max_functions, distinct)
        self.last = tuple(sorted(set(slots)))

    def as_json(self) -> dict[str, int]:
        """/health's form."""
        return {"steps": self.steps, "stepRows": self.rows, "stepFunctions": self.functions,
                "maxFunctionsPerStep": self.max_functions}


class FunctionView:
    """One pinned function as the runtime server serves it (the shape of a
    `LoadedFunction`): every request joins the namespace's shared decode."""

    def __init__(self, runtime: NamespaceRuntime, acquired: Acquired) -> None:
        self.runtime = runtime
        self.slot = acquired.name
        self.tokenizer = runtime.tokenizer
        self.sampling = runtime.sampling
        self._extra: dict[str, Any] = {"container": NAMESPACE, "adapterLoaded":
                                       acquired.was_loaded}
        if acquired.was_loaded and runtime.first_since_preload(self.slot):
            self._extra["adapterPreloaded"] = True
        if not acquired.was_loaded:
            self._extra["adapterLoad"] = round(acquired.load_ms, 3)

    def continuous(self) -> FunctionView:
        """The view itself: it submits to the shared decode."""
        return self

    def submit(self, request: GenerationRequest,
               sink: TokenSink | None = None) -> Future[Outcome]:
        """Join the shared decode; the outcome's timings name the container kind."""
        inner = self.runtime.submit(self.slot, request, sink)
        outer: Future[Outcome] = Future()

        def done(future: Future[Outcome]) -> None:
            if future.cancelled():
                outer.cancel()
            elif (error := future.exception()) is not None:
                outer.set_exception(error)
            else:
                result, timings = future.result()
                outer.set_result((result, {**timings, **self._extra}))

        inner.add_done_callback(done)
        # Withdrawn before its admission when its caller gives up (no effect once running).
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        return outer

    def run(self, request: GenerationRequest, sink: TokenSink | None = None) -> Outcome:
        """Generate for one request (blocking: on a worker thread)."""
        return self.submit(request, sink).result()

    def run_batch(self, requests: list[GenerationRequest]
                  ) -> Iterator[tuple[int, dict[str, Any], dict[str, float]]]:
        """The requests joined together; (index, result, timings) in the order they end."""
        futures = {self.submit(r): index for index, r in enumerate(requests)}
        for future in as_completed(futures):
            result, timings = future.result()
            yield futures[future], result, timings

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """A chat as the prompt text: the backbone tokenizer's chat template, else plain."""
        if self.tokenizer.chat_template is not None:
            return self.tokenizer.render_chat(messages)
        return plain_chat(messages)


def native_backbone(backbone: AttachedBackbone, tokenizer: ServingTokenizer,
                    eos: set[int]) -> NativeEngine:
    """The native engine on the backbone's mapped tensors, with no adapter yet."""
    config: dict[str, Any] = backbone.descriptor["config"]
    tensors = _with_tied(backbone)
    if (reason := backbone_refusal(config, tensors)) is not None:
        raise NamespaceUnsupported(f"no namespace container for this backbone: {reason}")
    return NativeEngine(config, tensors, tokenizer, eos)


def load_namespace(paths: NamespacePaths, client: str, budget_bytes: int,
                   backbone: AttachedBackbone | None = None,
                   generation_defaults: str = GREEDY_DEFAULTS) -> NamespaceRuntime:
    """Attach the backbone, load its tokenizer and warm the kernels; no adapter yet."""
    breakdown: dict[str, float] = {}
    memory: dict[str, int] = {}
    if backbone is None:
        backbone = attach_backbone(RuntimePaths(paths.attach_socket, paths.backbone_dir,
                                                paths.adapters_dir), client)
        breakdown["backbone"] = backbone.attach_ms
        if backbone.attach_bytes is not None:
            memory["backbone"] = backbone.attach_bytes
    generation_config = read_generation_config(paths.backbone_dir)
    tokenizer = _timed(breakdown, memory, "tokenizer",
                       lambda: ServingTokenizer.from_folder(paths.backbone_dir))
    stops = eos_ids(generation_config, backbone.descriptor["config"], tokenizer.eos_token_id)
    native = native_backbone(backbone, tokenizer, set(stops))
    _timed(breakdown, memory, "kernels", lambda: native.run(
        GenerationRequest(WARMUP_PROMPT, max_tokens=2, ignore_eos=True)))
    return NamespaceRuntime(native, tokenizer, paths.adapters_dir, budget_bytes, breakdown,
                            memory, sampling_defaults(generation_defaults, generation_config))
