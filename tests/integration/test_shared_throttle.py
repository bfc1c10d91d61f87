"""Namespace throttles held across controllers: two controllers' throttles on one NATS
server (each its own connection, as separate processes), and two invocation services on
them and one registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest

from lorafaas.broker import throttles as throttles_module
from lorafaas.broker.throttles import STALE_S, SharedThrottle, throttle_bucket
from lorafaas.controller.throttle import NamespaceLimits, TooManyRequests
from lorafaas.registry.models import Action
from lorafaas.registry.namespaces import Identity
from tests.integration.test_pending_leases import Controller, HangingFake, registry

__all__ = ["registry"]  # the lease test's fixture, used here

@pytest.fixture
async def throttles(nats_url: str) -> AsyncIterator[Callable[..., object]]:
    """Make a controller's shared throttle, on its own connection (closed after)."""
    async with AsyncExitStack() as stack:
        async def make(limits: NamespaceLimits, name: str,
                       clock: Callable[[], float] | None = None) -> SharedThrottle:
            nc = await nats.connect(nats_url)
            stack.push_async_callback(nc.close)
            kv = await throttle_bucket(nc.jetstream())
            if clock is None:
                return SharedThrottle(kv, limits, name)
            return SharedThrottle(kv, limits, name, clock=clock)
        yield make


async def outcomes(*admissions: object) -> list[bool]:
    """Which admissions passed (a refusal is TooManyRequests)."""
    done = await asyncio.gather(*admissions, return_exceptions=True)  # type: ignore[call-overload]
    for outcome in done:
        if outcome is not None and not isinstance(outcome, TooManyRequests):
            raise outcome  # type: ignore[misc]
    return [outcome is None for outcome in done]


async def test_the_concurrency_limit_holds_across_controllers(throttles) -> None:  # type: ignore[no-untyped-def]
    limits = NamespaceLimits(1000, 3)
    first, second = await throttles(limits, "c1"), await throttles(limits, "c2")
    passed = await outcomes(*(t.admit("concurrent") for t in (first, second) * 4))
    assert sum(passed) == 3  # of 8 at once on two controllers
    assert await first.in_flight("concurrent") == 3 == await second.in_flight("concurrent")
    with pytest.raises(TooManyRequests, match="concurrent"):
        await second.admit("concurrent")
    holder = first if passed[0] else second
    await holder.release("concurrent")
    other = second if holder is first else first
    await other.admit("concurrent")  # the slot freed on one controller is the other's
    await outcomes(other.admit("elsewhere"))  # another namespace counts on its own
    assert await other.in_flight("elsewhere") == 1


async def test_the_rate_limit_holds_across_controllers(throttles) -> None:  # type: ignore[no-untyped-def]
    limits = NamespaceLimits(4, 100)
    first, second = await throttles(limits, "c1"), await throttles(limits, "c2")
    passed = await outcomes(*(t.admit("rate") for t in (first, second) * 3))
    assert sum(passed) == 4
    for throttle in (first, second):
        await throttle.release("rate")  # ended: the minute's count stays
    with pytest.raises(TooManyRequests, match="last minute"):
        await first.admit("rate")


async def test_a_silent_controllers_activations_stop_counting(throttles) -> None:  # type: ignore[no-untyped-def]
    limits = NamespaceLimits(1000, 2)
    now = [1000.0]
    dead = await throttles(limits, "dead", clock=lambda: now[0])
    alive = await throttles(limits, "alive", clock=lambda: now[0])
    await dead.admit("ns")
    await dead.admit("ns")
    with pytest.raises(TooManyRequests):
        await alive.admit("ns")
    now[0] += STALE_S + 1  # the dead one stamped nothing since
    await alive.admit("ns")
    assert await alive.in_flight("ns") == 1


async def test_a_stamp_makes_good_a_release_that_failed(  # type: ignore[no-untyped-def]
        throttles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttles_module, "ALIVE_S", 0.05)
    limits = NamespaceLimits(1000, 1)
    first, second = await throttles(limits, "c1"), await throttles(limits, "c2")
    running = {"leak": 1}
    await first.admit("leak")
    async with first.stamping(lambda namespace: running[namespace]):
        running["leak"] = 0  # it ended here; its release never reached the key

        async def freed() -> None:
            while await second.in_flight("leak"):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(freed(), 30)
    await second.admit("leak")  # the slot is free again


async def test_two_invocation_services_share_the_namespaces_limit(
        throttles, registry: tuple[str, Identity, Action], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, guest, action = registry
    limits = NamespaceLimits(1000, 2)
    controllers = [Controller(url, tmp_path, HangingFake()) for _ in range(2)]
    for index, controller in enumerate(controllers):
        controller.service.shared = await throttles(limits, f"c{index}")
    try:
        await controllers[0].service.start(guest, action, {"prompt": "one"})
        await controllers[1].service.start(guest, action, {"prompt": "two"})
        for controller in controllers:  # each counts only its own; together they are full
            assert controller.service.throttle.in_flight("guest") == 1
            with pytest.raises(TooManyRequests, match="concurrent"):
                await controller.service.start(guest, action, {"prompt": "three"})
        await controllers[0].crash()  # its activation ends: its slot is released
        await asyncio.gather(*controllers[0].service._releases)  # (off the caller's path)
        await controllers[1].service.start(guest, action, {"prompt": "three"})
    finally:
        for controller in controllers:
            await controller.crash()
            await asyncio.gather(*controller.service._releases)  # none left for the next
