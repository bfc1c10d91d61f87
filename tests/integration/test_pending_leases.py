"""Exactly one controller resumes a pending activation: controllers on one registry (each
its own engine, as separate processes), on SQLite and, where set up, PostgreSQL; the
invoker is the seam's fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lorafaas.billing.prices import price_sheet
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.protocol import LORA_KIND
from lorafaas.controller.throttle import InvocationThrottle, NamespaceLimits
from lorafaas.invoking.activations import ActivationRequest, ActivationResult, DeltaSink
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import leases
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Action, Activation, Artifact, Namespace, PendingInvocation
from lorafaas.registry.namespaces import Identity
from lorafaas.settings import load_settings
from tests.unit.test_invoker_seam import DIGEST, FakeInvoker

ACCEPTED = 12
LIMITS = {"memory": 256, "timeout": 60_000, "max_tokens": 64}


class HangingFake(FakeInvoker):
    """An invoker that takes activations and never ends them (its controller dies)."""

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        self.requests.append(request)
        await asyncio.Event().wait()
        raise AssertionError("never ends")


class Controller:
    """One controller: its own engine on the shared registry, its invocation service."""

    def __init__(self, url: str, tmp_path: Path, invoker: FakeInvoker) -> None:
        self.engine: AsyncEngine = make_engine(url)
        self.sessions: async_sessionmaker[AsyncSession] = make_sessions(self.engine)
        self.invoker = invoker
        self.service = InvocationService(
            self.sessions, ArtifactStore(tmp_path / "artifacts"), invoker,
            InvocationThrottle(NamespaceLimits(600, 100)), set(),
            prices=price_sheet(load_settings({"LORAFAAS_HOME": str(tmp_path)})))

    async def crash(self) -> None:
        """Stop as a killed process does: what runs ends, its pending rows stay."""
        for task in list(self.service.tasks):
            task.cancel()
        await asyncio.gather(*self.service.tasks, return_exceptions=True)
        await self.engine.dispose()


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[tuple[str, Identity, Action]]:
    """The registry's URL, the namespace `guest` and its action `a`."""
    engine = make_engine(database_url)
    async with make_sessions(engine)() as session, session.begin():
        namespace = Namespace(name="guest", created_ms=0)
        session.add_all([namespace, Artifact(digest=DIGEST, size_bytes=1, ref_count=1,
                                             created_ms=0)])
        await session.flush()
        action, _ = await action_rows.put_action(
            session, namespace, QualifiedName("guest", None, "a"), action_rows.ActionSpec(
                LORA_KIND, DIGEST, [{"key": "max_tokens", "value": 8}], [], LIMITS, False),
            False, 5)
        identity = Identity(subject="guest", namespace="guest", namespace_id=namespace.id,
                            key_uuid="u")
    await engine.dispose()
    yield database_url, identity, action


async def test_each_pending_activation_is_resumed_by_exactly_one_controller(
        registry: tuple[str, Identity, Action], tmp_path: Path) -> None:
    url, guest, action = registry
    dead = Controller(url, tmp_path, HangingFake())
    accepted = [(await dead.service.start(guest, action, {"prompt": f"p {i}"})).activation_id
                for i in range(ACCEPTED)]
    await asyncio.sleep(0)  # each started on the invoker
    await dead.crash()
    first, second = (Controller(url, tmp_path, FakeInvoker()) for _ in range(2))
    try:
        # The dead controller's leases have not run out: nobody takes them yet.
        assert await asyncio.gather(first.service.resume_pending(),
                                    second.service.resume_pending()) == [0, 0]
        async with first.sessions() as session, session.begin():  # as if its lease ran out
            await session.execute(update(PendingInvocation).values(
                lease_until_ms=leases.now_ms() - 1))
        started = await asyncio.gather(first.service.resume_pending(),
                                       second.service.resume_pending())
        assert sum(started) == ACCEPTED
        ran = [r.activation_id for c in (first, second) for r in c.invoker.requests]
        assert sorted(ran) == sorted(accepted)  # each once, on one controller
        await asyncio.gather(*first.service.tasks, *second.service.tasks)
        async with first.sessions() as session:
            records = list(await session.scalars(select(Activation.activation_id)))
            left = list(await session.scalars(select(PendingInvocation)))
        assert sorted(records) == sorted(accepted) and left == []
        # Nothing is left to resume, by either.
        assert await asyncio.gather(first.service.resume_pending(),
                                    second.service.resume_pending()) == [0, 0]
    finally:
        for controller in (first, second):
            await controller.engine.dispose()


async def test_a_renewed_lease_holds_and_a_lapsed_one_is_taken(
        registry: tuple[str, Identity, Action], tmp_path: Path) -> None:
    url, guest, action = registry
    owner = Controller(url, tmp_path, HangingFake())
    try:
        held = (await owner.service.start(guest, action, {"prompt": "held"})).activation_id
        now = leases.now_ms()
        async with owner.sessions() as session, session.begin():
            assert await leases.claim(session, "other", at_ms=now) == []
            assert await leases.renew(session, owner.service.controller_id, [held],
                                      at_ms=now + leases.LEASE_MS) == 1
            assert await leases.claim(session, "other", at_ms=now + leases.LEASE_MS + 1) == []
            (taken,) = await leases.claim(session, "other",
                                          at_ms=now + 2 * leases.LEASE_MS + 1)
            assert taken.owner == "other"
            assert await leases.renew(session, owner.service.controller_id, [held]) == 0
    finally:
        await owner.crash()


async def test_the_only_controller_takes_every_pending_row_at_its_start(
        registry: tuple[str, Identity, Action], tmp_path: Path) -> None:
    url, guest, action = registry
    before = Controller(url, tmp_path, HangingFake())
    await before.service.start(guest, action, {"prompt": "restart"})
    await asyncio.sleep(0)
    await before.crash()
    after = Controller(url, tmp_path, FakeInvoker())
    try:
        assert await after.service.resume_pending() == 0  # its lease holds for others
        assert await after.service.resume_pending(every=True) == 1
        await asyncio.gather(*after.service.tasks)
        assert [r.parameters["prompt"] for r in after.invoker.requests] == ["restart"]
    finally:
        await after.engine.dispose()
