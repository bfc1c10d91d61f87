"""The batch form of the runtime's /run: one batched generation in one container, each
request answered as soon as it ends, each identical to running it alone."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from lorafaas.invoker.runtime_client import RunOutcome
from tests.integration.test_pool import function, make_pool

pytestmark = pytest.mark.docker
PROMPTS = ["Tell me a story about a brave dragon", "Can you explain how a rainbow forms?",
           "hi"]
MAX_TOKENS = [40, 3, 20]


async def test_batch_answers_each_request_when_it_ends(backbone, runtime_image,  # type: ignore[no-untyped-def]
                                                       short_dir: Path, demo_models) -> None:
    pool = make_pool(backbone, runtime_image, short_dir, f"batch{uuid.uuid4().hex[:8]}")
    try:
        lease = await pool.acquire(function(demo_models, "pirate"))
        client = lease.container.client
        payloads = [{"value": {"prompt": p, "max_tokens": n, "ignore_eos": True,
                               "return_token_ids": True}}
                    for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
        payloads.append({"value": {"prompt": "x", "max_tokens": -1}})  # refused alone
        arrivals: list[tuple[int, RunOutcome, float]] = []

        async def on_result(index: int, outcome: RunOutcome) -> None:
            arrivals.append((index, outcome, time.monotonic()))

        await client.run_batch(payloads, 64, on_result)
        alone = [await client.run(payload | {"max_tokens_limit": 64})
                 for payload in payloads[:3]]
    finally:
        await pool.shutdown()

    by_index = {index: outcome for index, outcome, _ in arrivals}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert "max_tokens" in by_index[3].result["error"]
    for index in range(3):
        assert by_index[index].result["token_ids"] == alone[index].result["token_ids"]
        assert len(by_index[index].result["token_ids"]) == MAX_TOKENS[index]
    order = [index for index, _, _ in arrivals if index != 3]
    assert order == [1, 2, 0], "each request is answered when it ends, shortest first"
    assert by_index[1].timings["total"] < by_index[0].timings["total"]
