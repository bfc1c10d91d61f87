"""A function moving between its namespace's container and its own, on the real platform
and Docker: its rate rises past `LORAFAAS_SHARED_OWN_AT` and it moves to its own
container; it falls below `LORAFAAS_SHARED_SHARE_AT` and it moves back; no request is
lost or failed in either move. The thresholds are driven low through the settings so
that the test is short.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.settings import replace
from tests.integration.test_end_to_end import annotation, create_action
from tests.integration.test_invoker_batching import invoke

pytestmark = pytest.mark.docker
PARAMS = {"prompt": "Tell me about the sea", "max_tokens": 4, "temperature": 0,
          "ignore_eos": True, "return_token_ids": True}
MOST = 400  # requests per phase: the test fails rather than send for ever


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Namespace containers; a function moves at 1 request/s and back at 0.5, after 1 s of
    credit, on a rate estimate of time constant 5 s."""
    return replace(settings, shared_containers="namespace", namespace_memory_mb=2048,
                   shared_own_at=1.0, shared_share_at=0.5, shared_dwell_s=1.0,
                   shared_rate_tau_s=5.0, container_start_timeout_s=300)


async def test_a_function_moves_to_its_own_container_and_back(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    await create_action(platform, "f", demo_models.adapters["pirate"], make_zip,
                        limits={"timeout": 300_000})
    sent: list[asyncio.Task[tuple[int, dict[str, Any], Any]]] = []

    def kinds() -> list[str]:
        """The container kind of each request ended so far, in the order they were sent."""
        return [annotation(t.result()[1], "container") for t in sent if t.done()]

    async def send_until(kind: str, every_s: float) -> None:
        first = len(sent)
        while kind not in kinds()[first:]:
            assert len(sent) - first < MOST, f"no request ran in a {kind} container"
            sent.append(asyncio.create_task(invoke(platform, "f", **PARAMS)))
            await asyncio.sleep(every_s)

    await send_until("namespace", 0.5)  # a first request starts the namespace container
    await send_until("function", 0.5)  # 2 requests/s: it moves to its own container
    await send_until("namespace", 3.0)  # 1 request every 3 s: back to the namespace's

    results = await asyncio.gather(*sent)
    failed = [record for status, record, _ in results if status != 200]
    assert not failed, failed[:2]
    order = [annotation(record, "container") for _, record, _ in results]
    assert "function" in order and order[0] == "namespace" and order[-1] == "namespace", order
    tokens = {tuple(record["response"]["result"]["token_ids"]) for _, record, _ in results}
    assert len(tokens) == 1, "the two kinds of container gave different tokens"
    sharing = platform.app[local_invoker_key].runner.sharing
    (placement,) = sharing.placements().values()
    assert placement.moves >= 2, placement
    print(f"{len(order)} requests: {order.count('namespace')} in the namespace container, "
          f"{order.count('function')} in the function's own; {placement.moves} moves")
