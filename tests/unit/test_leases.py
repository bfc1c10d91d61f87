"""Leases of pending activations on one controller: only the activations it runs are
renewed, a run that ends without its record gives its row up, and a stop drains what runs
before giving up the rest; on a real SQLite registry and the seam's fake invoker."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.invocations import InvocationService
from lorafaas.invoking.activations import ActivationRequest, ActivationResult, DeltaSink
from lorafaas.registry import leases
from lorafaas.registry.models import Activation, PendingInvocation
from tests.unit.test_invoker_seam import ECHO, GUEST, FakeInvoker, service, sessions

__all__ = ["service", "sessions"]  # the seam test's fixtures, used here


class GatedFake(FakeInvoker):
    """Fails a prompt holding `fail`; holds one holding `hold` until `gate` is set, and
    one holding `hang` for ever."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        prompt = str(request.parameters["prompt"])
        if "fail" in prompt:
            raise RuntimeError("the invoker failed")
        if "hold" in prompt:
            await self.gate.wait()
        if "hang" in prompt:
            await asyncio.Event().wait()
        return await super().run(request, on_delta)


@pytest.fixture
def fake() -> FakeInvoker:
    """The fake invoker that fails, holds or hangs on request."""
    return GatedFake()


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, PendingInvocation]:
    async with sessions() as session:
        return {p.activation_id: p for p in await session.scalars(select(PendingInvocation))}


async def settle(service: InvocationService) -> None:
    """Let the background releases end."""
    while service._background:
        await asyncio.gather(*service._background)


async def test_only_the_activations_running_here_are_renewed(
        service: InvocationService, sessions: async_sessionmaker[AsyncSession]) -> None:
    running = await service.start(GUEST, ECHO, {"prompt": "hang"})
    async with sessions() as session, session.begin():  # held here, run by nobody
        session.add(PendingInvocation(activation_id="f" * 32, namespace="guest",
                                      action="echo", subject="guest", parameters={},
                                      received_ms=1, owner=service.controller_id,
                                      lease_until_ms=1))
    later = leases.now_ms() + leases.LEASE_MS
    async with sessions() as session, session.begin():
        assert await leases.renew(session, service.controller_id, service._running,
                                  at_ms=later) == 1
    held = await rows(sessions)
    assert held[running.activation_id].lease_until_ms == later + leases.LEASE_MS
    assert held["f" * 32].lease_until_ms == 1  # it lapses: another controller resumes it
    running.task.cancel()
    await asyncio.gather(running.task, return_exceptions=True)


async def test_a_run_failing_before_its_record_gives_its_row_up(
        service: InvocationService, sessions: async_sessionmaker[AsyncSession]) -> None:
    failed = await service.start(GUEST, ECHO, {"prompt": "fail"})
    with pytest.raises(RuntimeError):
        await failed.task
    await settle(service)
    row = (await rows(sessions))[failed.activation_id]
    assert (row.owner, row.lease_until_ms) == (None, None)
    async with sessions() as session, session.begin():  # claimable at once, by anyone
        (taken,) = await leases.claim(session, "other")
    assert taken.activation_id == failed.activation_id


async def test_a_claim_takes_at_most_its_limit_oldest_first(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        session.add_all(PendingInvocation(activation_id=str(i) * 32, namespace="guest",
                                          action="echo", subject="guest", parameters={},
                                          received_ms=10 - i) for i in range(3))
    async with sessions() as session, session.begin():
        taken = await leases.claim(session, "me", limit=2)
    assert [p.activation_id for p in taken] == ["2" * 32, "1" * 32]


async def test_a_stop_drains_what_runs_then_gives_up_the_leases_left(
        service: InvocationService, fake: GatedFake,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with service.resuming(drain_s=0.5):
        held = await service.start(GUEST, ECHO, {"prompt": "hold"})
        hung = await service.start(GUEST, ECHO, {"prompt": "hang"})
        asyncio.get_running_loop().call_later(0.05, fake.gate.set)
    assert held.task.done() and hung.task.cancelled()
    left = await rows(sessions)
    assert list(left) == [hung.activation_id]  # the held one ended and was stored
    assert (left[hung.activation_id].owner, left[hung.activation_id].lease_until_ms) == \
        (None, None)
    async with sessions() as session:
        assert await session.get(Activation, held.activation_id) is not None
