"""Continuous (iteration-level) batching: requests join a running decode between its steps.

One engine per container runs one generation loop on its own thread (torch blocks). Each
iteration first admits the requests that arrived since the last one: they are prefilled
together (a `BatchDecoder` of their own, left-padded) and then absorbed into the running
batch, whose KV cache and mask are padded on the left to a common width. Then every live
row decodes one token. A row that ends (max_tokens, EOS, stop string) is answered at once
and leaves the batch, so a short request that arrives late returns before a long one that
started early. Each row keeps its own positions and its padding stays masked, so its
greedy tokens are the ones it gets alone.

Metering: an iteration's wall time (prefill of the newcomers, the decode step, results) is
the container's busy time, split among the rows in it by the tokens each processed (its
prompt in its prefill, one token a step); so the requests' `compute` shares add up to the
busy time. A restore of offloaded artifacts before an admission is reported as `restore`
and is not busy time. Each request's `batchSize` is the most rows of any iteration it was
in, itself included (in a namespace container, whatever function each row belongs to).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from lorafaas.runtime.request import GenerationRequest, TokenSink
from lorafaas.runtime.tokens import TextTokenizer

logger = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = tuple[dict[str, Any], dict[str, float]]  # (result, timings in ms)


class EngineStopped(RuntimeError):
    """The engine was closed before the request ended."""


@dataclass
class _Entry:
    """One request from its arrival to its end."""

    request: GenerationRequest
    future: Future[Outcome]
    sink: TokenSink | None
    arrived: float  # monotonic s
    first_token_at: float = 0.0
    compute_ms: float = 0.0
    restore_ms: float | None = None
    # The most rows of any iteration it was in (itself included): its record's batchSize.
    peak_rows: int = 0

    def timings(self, ended: float) -> dict[str, float]:
        """The batch form's timings (ms); ttft counts the wait for the running step."""
        ttft = (self.first_token_at - self.arrived) * 1000
        timings = {"ttft": ttft, "prefill": ttft,
                   "decode": (ended - self.first_token_at) * 1000,
                   "total": (ended - self.arrived) * 1000, "compute": self.compute_ms,
                   "batchSize": self.peak_rows}
        if self.restore_ms is not None:
            timings["restore"] = round(self.restore_ms, 3)
        return timings


def split_by_tokens(duration_ms: float, tokens: dict[int, int]) -> dict[int, float]:
    """Each row's share of an iteration, in proportion to the tokens it processed in it."""
    total = sum(tokens.values())
    if total == 0:
        return {index: duration_ms / len(tokens) for index in tokens}
    return {index: duration_ms * count / total for index, count in tokens.items()}


class ContinuousEngine:
    """The container's continuous-batching loop (see the module doc).

    `prepare` runs before each admission and returns the ms a restore of offloaded artifacts
    took (None: nothing to restore); `account(busy_ms, ended)` is told each iteration's wall
    time and how many requests it ended (the runtime's /health counters); `observe` is
    given the requests of the rows each iteration processed (a batch's composition).
    """

    def __init__(self, model: Any, tokenizer: TextTokenizer,
                 prepare: Callable[[], float | None] = lambda: None,
                 account: Callable[[float, int], None] = lambda busy_ms, ended: None,
                 decoder_factory: Callable[..., Any] | None = None,
                 engine_name: str = "general",
                 observe: Callable[[list[GenerationRequest]], None] = lambda requests: None
                 ) -> None:
        self.model = model  # the peft model (general path; None for the native engine)
        if decoder_factory is None:  # the general path's, imported only where it serves
            from lorafaas.runtime.batched import BatchDecoder

            decoder_factory = BatchDecoder
        # Builds each admission's batch: (model, tokenizer, requests, first index); the
        # native engine's batches have BatchDecoder's interface.
        self._new_decoder: Callable[..., Any] = decoder_factory
        self.engine_name = engine_name  # reported in each request's timings
        self.tokenizer = tokenizer
        self._prepare = prepare
        self._account = account
        self._observe = observe
        self._changed = threading.Condition()
        # Shared with other threads, under `_changed`:
        self._pending: list[_Entry] = []
        self._pauses = 0  # exclusive() callers: admit nobody new meanwhile
        self._iterating = False
        self._stopping = False
        # The loop thread's own:
        self._decoder: Any = None  # a BatchDecoder or a native engine's batch
        self._entries: dict[int, _Entry] = {}  # live requests by row index
        self._next_index = 0
        self._thread = threading.Thread(target=self._loop, name="continuous-batching",
                                        daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest,
               sink: TokenSink | None = None) -> Future[Outcome]:
        """Join the running decode at its next step; the future gets (result, timings).

        `sink` receives each new token's ids, on the engine's thread. Cancelling the future
        before the request is admitted withdraws it.
        """
        future: Future[Outcome] = Future()
        with self._changed:
            if self._stopping:
                raise EngineStopped("the continuous-batching engine is stopped")
            self._pending.append(_Entry(request, future, sink, time.monotonic()))
            self._changed.notify_all()
        return future

    def exclusive(self, action: Callable[[], T]) -> T:
        """Run `action` on the caller's thread once no request decodes; requests arriving
        meanwhile wait for it (offloading must not move tensors under a forward pass)."""
        with self._changed:
            self._pauses += 1
            try:
                while self._iterating or self._entries:
                    self._changed.wait()
            except BaseException:
                self._pauses -= 1
                raise
        try:
            return action()
        finally:
            with self._changed:
                self._pauses -= 1
                self._changed.notify_all()

    def close(self) -> None:
        """Stop the loop after its current iteration; requests left fail."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()

    # --- the loop (its own thread) ----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and not self._entries and (
                        self._pauses or not self._pending):
                    self._changed.wait()
                if self._stopping:
                    break
                joining = [] if self._pauses else self._pending
                if joining:
                    self._pending = []
                self._iterating = True
            admitted = [e for e in joining if e.future.set_running_or_notify_cancel()]
            try:
                self._iterate(admitted)
            except Exception as error:
                # The batch's cache is in an unknown state: every request in it fails.
                logger.exception("continuous batching failed; its requests fail")
                self._fail([*self._entries.values(), *admitted], error)
            finally:
                with self._changed:
                    self._iterating = False
                    self._changed.notify_all()
        with self._changed:
            left, self._pending = self._pending, []
        self._fail(list(self._entries.values()), EngineStopped("the engine was closed"))
        self._fail([e for e in left if e.future.set_running_or_notify_cancel()],
                   EngineStopped("the engine was closed"))

    def _iterate(self, joining: list[_Entry]) -> None:
        """Admit the newcomers, decode one token for every live row, answer the ended."""
        restore_ms = self._prepare() if joining else None
        started = time.monotonic()  # after a restore: moving artifacts is not generating
        tokens: dict[int, int] = {}  # tokens each row processed in this iteration
        results = self._admit(joining, restore_ms, tokens) if joining else []
        decoder = self._decoder
        if decoder is not None:
            stepping = list(decoder.rows)
            results += [(row.index, decoder.result(row)) for row in decoder.step()]
            for row in stepping:
                tokens[row.index] = tokens.get(row.index, 0) + 1
                self._stream(row.index, row.tokens[-1:])
            if decoder.rows:
                decoder.trim_padding()
            else:
                self._decoder = None
        now = time.monotonic()
        busy_ms = (now - started) * 1000
        for index, share in split_by_tokens(busy_ms, tokens).items():
            entry = self._entries[index]
            entry.compute_ms += share
            entry.peak_rows = max(entry.peak_rows, len(tokens))
        self._account(busy_ms, len(results))
        self._observe([self._entries[index].request for index in tokens])
        for index, result in results:
            entry = self._entries.pop(index)
            timings: dict[str, Any] = {**entry.timings(now), "engine": self.engine_name}
            entry.future.set_result((result, timings))

    def _admit(self, joining: list[_Entry], restore_ms: float | None,
               tokens: dict[int, int]) -> list[tuple[int, dict[str, Any]]]:
        """Prefill the newcomers together and merge their live rows into the running batch;
        return (index, result) of those that already ended (max_tokens 1, or EOS first)."""
        first = self._next_index
        self._next_index += len(joining)
        for offset, entry in enumerate(joining):
            entry.restore_ms = restore_ms
            self._entries[first + offset] = entry
        newcomers = self._new_decoder(self.model, self.tokenizer,
                                      [e.request for e in joining], first)
        prefilled = list(newcomers.rows)
        ended = [(row.index, newcomers.result(row)) for row in newcomers.prefill()]
        now = time.monotonic()
        for row in prefilled:
            tokens[row.index] = row.prompt_length
            self._entries[row.index].first_token_at = now
            self._stream(row.index, row.tokens[-1:])
        if newcomers.rows:
            if self._decoder is None:
                self._decoder = newcomers
            else:
                self._decoder.absorb(newcomers)
        return ended

    def _stream(self, index: int, token_ids: list[int]) -> None:
        sink = self._entries[index].sink
        if sink is not None:
            sink(token_ids)

    def _fail(self, entries: list[_Entry], error: BaseException) -> None:
        self._entries.clear()
        self._decoder = None
        for entry in entries:
            if not entry.future.done():
                entry.future.set_exception(error)

