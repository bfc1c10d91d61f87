"""Continuous batching on the demo models, in process: requests that join a running decode
get the tokens they get alone, and a short late request ends before a long early one.

The reference is peft's own `generate` of each request alone (greedy). A request joins
"mid-decode" deterministically: the running request's token sink holds the engine's thread
until the test has submitted the newcomers, which the next iteration admits.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from lorafaas.runtime.batched import generate_batch
from lorafaas.runtime.continuous import ContinuousEngine, Outcome
from lorafaas.runtime.function import LoadedFunction, RuntimePaths
from lorafaas.runtime.generation import GenerationRequest
from lorafaas.runtime.offload import ACCELERATOR
from lorafaas.runtime.server import create_app, function_key

LONG_PROMPT = ("Tell me a story about a brave dragon who lived in a castle by the sea, "
               "who loved to sing to the sailors at night and to count the stars")
LONG = GenerationRequest("Hi", max_tokens=48, ignore_eos=True, return_token_ids=True)
# Newcomers with prompts longer and shorter than the running one's, one that stops on
# EOS or a stop string, and one that ends at its first token.
NEWCOMERS = (
    GenerationRequest(LONG_PROMPT, max_tokens=20, ignore_eos=True, return_token_ids=True),
    GenerationRequest("x", max_tokens=6, ignore_eos=True, return_token_ids=True),
    GenerationRequest("Can you explain how a rainbow forms?", max_tokens=30,
                      stop=["matey"], return_token_ids=True),
    GenerationRequest("Open the door", max_tokens=1, return_token_ids=True),
)
LATE = GenerationRequest("What is the capital of France, and why?", max_tokens=12,
                         ignore_eos=True, return_token_ids=True)


# Every test here on one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_thread")


def load(demo_models: Any, name: str) -> PeftModel:
    """A float32 backbone with one demo adapter, unmerged, as peft loads it."""
    backbone = AutoModelForCausalLM.from_pretrained(demo_models.backbone_dir,
                                                    dtype=torch.float32)
    return PeftModel.from_pretrained(backbone, demo_models.adapters[name]).eval()


@pytest.fixture(scope="module", params=["pirate", "shout"])
def model(request: pytest.FixtureRequest, demo_models: Any) -> PeftModel:
    """The backbone with one demo adapter."""
    return load(demo_models, request.param)


class Accounts:
    """What the engine reports of its busy time, and the rows of every forward pass."""

    def __init__(self, model: PeftModel) -> None:
        self.busy_ms = 0.0
        self.ended = 0
        self.rows: list[int] = []
        self._hook = model.get_input_embeddings().register_forward_pre_hook(
            lambda _module, args: self.rows.append(int(args[0].shape[0])))

    def account(self, busy_ms: float, ended: int) -> None:
        """The engine's `account` callback."""
        self.busy_ms += busy_ms
        self.ended += ended

    def remove(self) -> None:
        """Stop counting forward passes."""
        self._hook.remove()


@pytest.fixture
def engine(model: PeftModel, tokenizer: PreTrainedTokenizerBase
           ) -> Iterator[tuple[ContinuousEngine, Accounts]]:
    """An engine on the model, and what it accounts."""
    accounts = Accounts(model)
    engine = ContinuousEngine(model, tokenizer, account=accounts.account)
    yield engine, accounts
    engine.close()
    accounts.remove()


def peft_greedy(model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                request: GenerationRequest) -> list[int]:
    """The request's new tokens from peft's generate of it alone."""
    inputs = tokenizer(request.prompt, return_tensors="pt")
    options: dict[str, Any] = {"max_new_tokens": request.max_tokens, "do_sample": False,
                               "pad_token_id": tokenizer.pad_token_id}
    if request.ignore_eos:
        options["min_new_tokens"] = request.max_tokens
    if request.stop:
        options.update(stop_strings=request.stop, tokenizer=tokenizer)
    with torch.inference_mode():
        output = model.generate(**inputs, **options)  # type: ignore[no-untyped-call]
    return output[0, inputs["input_ids"].shape[1]:].tolist()  # type: ignore[no-any-return]


class HoldAt:
    """A token sink that holds the engine's thread at the n-th token until released."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.reached = threading.Event()
        self.released = threading.Event()

    def __call__(self, token_ids: list[int]) -> None:
        self.seen += len(token_ids)
        if self.seen == self.count:
            self.reached.set()
            assert self.released.wait(60), "the test never released the engine"


def in_order_of_end(futures: list[Future[Outcome]]) -> list[int]:
    """The futures' positions, recorded in the order they end (on the engine's thread)."""
    ended: list[int] = []
    for position, future in enumerate(futures):
        future.add_done_callback(lambda _f, p=position: ended.append(p))
    return ended


def join_mid_decode(engine: ContinuousEngine, first: GenerationRequest, at_token: int,
                    newcomers: list[GenerationRequest]) -> list[Future[Outcome]]:
    """Start `first`, and submit the newcomers while it is held at its `at_token`-th token."""
    hold = HoldAt(at_token)
    futures = [engine.submit(first, hold)]
    assert hold.reached.wait(60)
    futures += [engine.submit(request) for request in newcomers]
    hold.released.set()
    return futures


def test_requests_joining_mid_decode_get_their_tokens_alone(
        model: PeftModel, tokenizer: PreTrainedTokenizerBase,
        engine: tuple[ContinuousEngine, Accounts]) -> None:
    """Newcomers of longer and shorter prompts join a running decode, and a later one joins
    once some have left: every request's greedy tokens are peft's alone."""
    runner, accounts = engine
    hold_long, hold_short = HoldAt(5), HoldAt(NEWCOMERS[1].max_tokens)
    futures = [runner.submit(LONG, hold_long)]
    assert hold_long.reached.wait(60)
    futures += [runner.submit(r, hold_short if r is NEWCOMERS[1] else None) for r in NEWCOMERS]
    hold_long.released.set()
    # At the short newcomer's last token (the one-token newcomer left at its prefill).
    assert hold_short.reached.wait(60)
    futures.append(runner.submit(LATE))
    hold_short.released.set()
    outcomes = [f.result(120) for f in futures]
    for request, (result, _) in zip([LONG, *NEWCOMERS, LATE], outcomes, strict=True):
        assert result["token_ids"] == peft_greedy(model, tokenizer, request), request.prompt
    # The first request's prefill and 4 steps alone; then the newcomers' prefill (4 rows)
    # and steps of 4 (the one-token newcomer has ended); the late one's prefill is alone.
    assert accounts.rows[:7] == [1, 1, 1, 1, 1, 4, 4]
    assert 1 in accounts.rows[7:]
    # batchSize: the most requests of one iteration each was in (the newcomers' prefill
    # and the running request's step are one iteration of five).
    assert [timings["batchSize"] for _, timings in outcomes[:5]] == [5] * 5
    assert 1 <= outcomes[5][1]["batchSize"] <= 5
    assert outcomes[4][0]["usage"]["completion_tokens"] == 1
    assert outcomes[0][0]["usage"]["completion_tokens"] == LONG.max_tokens


def test_results_equal_a_batch_of_the_same_requests(
        model: PeftModel, tokenizer: PreTrainedTokenizerBase,
        engine: tuple[ContinuousEngine, Accounts]) -> None:
    """Text, finish reason and usage are what the batched path returns."""
    runner, _ = engine
    futures = join_mid_decode(runner, LONG, 3, list(NEWCOMERS))
    batched = generate_batch(model, tokenizer, [LONG, *NEWCOMERS])
    for future, (expected, _) in zip(futures, batched, strict=True):
        result, timings = future.result(120)
        assert result == expected
        assert set(timings) == {"ttft", "prefill", "decode", "total", "compute", "engine",
                                "batchSize"}
        assert timings["engine"] == "general"  # a PeftModel served as it is


def test_a_short_late_request_ends_before_a_long_early_one(
        engine: tuple[ContinuousEngine, Accounts]) -> None:
    """The late request does not wait for the running one: it ends first, and its time to
    first token is a prefill, not the long request's generation."""
    runner, accounts = engine
    long = replace(LONG, max_tokens=60)
    short = GenerationRequest("Hi there", max_tokens=3, ignore_eos=True)
    futures = join_mid_decode(runner, long, 4, [short])
    ended = in_order_of_end(futures)
    (long_result, long_timings), (short_result, short_timings) = [f.result(120)
                                                                  for f in futures]
    assert ended == [1, 0]
    assert long_timings["batchSize"] == short_timings["batchSize"] == 2
    assert short_result["usage"]["completion_tokens"] == 3
    assert long_result["usage"]["completion_tokens"] == 60
    assert short_timings["total"] < long_timings["total"]
    assert short_timings["ttft"] < long_timings["decode"]
    # Billing: the shares of both requests add up to the busy time the engine measured,
    # and the long request, alone in most steps, pays most of it.
    assert math.isclose(long_timings["compute"] + short_timings["compute"], accounts.busy_ms,
                        rel_tol=1e-9)
    assert 0 < short_timings["compute"] < long_timings["compute"]
    assert accounts.ended == 2


def test_seeded_sampling_ignores_the_requests_it_joins(
        model: PeftModel, tokenizer: PreTrainedTokenizerBase,
        engine: tuple[ContinuousEngine, Accounts]) -> None:
    """A seeded sample that joins a running decode is the one it gets alone."""
    runner, _ = engine
    sampled = GenerationRequest("Can you explain how a rainbow forms?", max_tokens=16,
                                temperature=1.5, top_p=0.95, seed=7)
    alone = generate_batch(model, tokenizer, [sampled])[0][0]["text"]
    futures = join_mid_decode(runner, LONG, 2, [sampled])
    assert futures[1].result(120)[0]["text"] == alone


def test_offloading_waits_for_the_decode_and_a_join_restores_first(
        demo_models: Any, tokenizer: PreTrainedTokenizerBase) -> None:
    """`exclusive` runs once no request decodes; a request joining an offloaded function
    restores its artifacts first and reports it; /health's counters count the engine's."""
    loaded = LoadedFunction(load(demo_models, "shout"), tokenizer, None, {}, {})
    engine = loaded.continuous()
    try:
        hold = HoldAt(2)
        running = engine.submit(LONG, hold)
        assert hold.reached.wait(60)
        moved: list[bool] = []

        def offload() -> None:
            moved.append(running.done())
            loaded.tiers.offload()

        offloading = threading.Thread(target=engine.exclusive, args=(offload,))
        offloading.start()
        time.sleep(0.05)  # it asks for the engine while the decode is held
        hold.released.set()
        offloading.join(120)
        assert moved == [True], "the offload waited for the running decode to end"
        result, timings = engine.submit(LONG).result(120)
        assert loaded.tiers.tier == ACCELERATOR
        assert result["token_ids"] == running.result()[0]["token_ids"]
        assert timings["restore"] > 0 and timings["ttft"] >= timings["restore"]
        assert loaded.generations == 2
        shares = running.result()[1]["compute"] + timings["compute"]
        assert math.isclose(shares, loaded.busy_ms, rel_tol=1e-9)
    finally:
        engine.close()


def test_a_withdrawn_request_is_never_admitted(
        engine: tuple[ContinuousEngine, Accounts]) -> None:
    """A request cancelled before its admission (its caller went away) costs nothing."""
    runner, accounts = engine
    hold = HoldAt(1)
    running = runner.submit(replace(LONG, max_tokens=3), hold)
    assert hold.reached.wait(60)
    withdrawn = runner.submit(LATE)
    assert withdrawn.cancel()
    hold.released.set()
    running.result(120)
    assert accounts.rows == [1, 1, 1]


async def test_the_runtime_joins_runs_of_every_form(  # type: ignore[no-untyped-def]
        demo_models, tokenizer, aiohttp_client) -> None:
    """/run with `continuous`: single, streamed and batch forms share the engine and answer
    what they answer without it."""
    loaded = LoadedFunction(load(demo_models, "pirate"), tokenizer, None, {}, {})
    app = create_app(RuntimePaths(None, Path("/nowhere"), Path("/nowhere")), "test", 0.0)
    app[function_key]["loaded"] = loaded
    client = await aiohttp_client(app)
    try:
        values = [{"prompt": r.prompt, "max_tokens": r.max_tokens, "ignore_eos": r.ignore_eos,
                   "stop": r.stop, "return_token_ids": True} for r in (LONG, *NEWCOMERS)]

        async def post(body: dict[str, Any]) -> list[Any]:
            response = await client.post("/run", json={**body, "continuous": True})
            assert response.status == 200
            if response.content_type == "application/json":
                return [await response.json()]
            return [json.loads(line) async for line in response.content]

        (result,), lines, stream = await asyncio.gather(
            post({"value": values[0]}),
            post({"batch": [{"value": v} for v in values[1:]] + [{"value": {"max_tokens": 1}}]}),
            post({"value": values[2], "stream": True}))
        health = await (await client.get("/health")).json()
    finally:
        loaded.continuous().close()
    expected = generate_batch(loaded.model, tokenizer, [LONG, *NEWCOMERS])
    assert result == expected[0][0]
    by_index = {line["index"]: line for line in lines}
    assert "prompt" in by_index[4]["result"]["error"]
    for index in range(4):
        assert by_index[index]["result"] == expected[index + 1][0]
        assert by_index[index]["timings"]["compute"] > 0
    deltas = "".join(line["delta"] for line in stream if "delta" in line)
    assert stream[-1]["result"] == expected[2][0] and deltas == expected[2][0]["text"]
    assert health["generations"] == 6 and health["busyMs"] > 0
