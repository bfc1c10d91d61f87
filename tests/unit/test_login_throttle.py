"""Failed sign-ins: token buckets per address and per key uuid, on a fake clock."""

from __future__ import annotations

import pytest

from lorafaas.controller import login_throttle
from lorafaas.controller.login_throttle import UUID_SHARE, LoginThrottle
from lorafaas.errors import TooManyRequests

UUID = "6f1c2a9e-0000-4000-8000-000000000001"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, address: str, key_uuid: str | None = UUID) -> None:
    """One failed attempt, checked first as the API does."""
    throttle.check(address, key_uuid)
    throttle.failed(address, key_uuid)


def test_an_address_gets_its_burst_then_429_with_retry_after() -> None:
    clock = Clock()
    throttle = LoginThrottle(burst=3, per_minute=6, clock=clock)  # a token each 10 s
    for _ in range(3):
        fail(throttle, "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("10.0.0.1", UUID)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "10"}
    throttle.check("10.0.0.2", None)  # another address is not affected
    clock.now += 9.5
    with pytest.raises(TooManyRequests) as again:
        throttle.check("10.0.0.1", None)
    assert again.value.headers == {"Retry-After": "1"}
    clock.now += 0.5
    fail(throttle, "10.0.0.1")  # one token back: one more try
    with pytest.raises(TooManyRequests):
        throttle.check("10.0.0.1", None)


def test_successes_take_nothing() -> None:
    throttle = LoginThrottle(burst=1, per_minute=1, clock=Clock())
    for _ in range(100):
        throttle.check("10.0.0.1", UUID)  # checked, and succeeded: `failed` is never called
    fail(throttle, "10.0.0.1")
    with pytest.raises(TooManyRequests):
        throttle.check("10.0.0.1", UUID)


def test_a_uuid_is_limited_across_addresses_but_one_address_cannot_lock_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(burst=2, per_minute=60, clock=clock)
    for _ in range(2):
        fail(throttle, "10.0.0.1")
    with pytest.raises(TooManyRequests):
        throttle.check("10.0.0.1", UUID)
    throttle.check("10.0.0.9", UUID)  # one address's burst leaves the uuid usable
    for i in range(2 * UUID_SHARE - 2):
        fail(throttle, f"10.0.1.{i}")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("10.0.0.9", UUID)  # now from anywhere
    assert refused.value.headers == {"Retry-After": "1"}
    throttle.check("10.0.0.9", None)  # the address itself is fine
    clock.now += 1 / UUID_SHARE
    throttle.check("10.0.0.9", UUID)


def test_the_tables_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle, "MAX_TRACKED", 10)
    clock = Clock()
    throttle = LoginThrottle(burst=5, per_minute=60, clock=clock)
    for i in range(100):
        throttle.failed(f"10.0.{i}.1", f"uuid-{i}")
        clock.now += 0.01
    assert len(throttle.addresses) <= 10 and len(throttle.uuids) <= 10
    clock.now += 60  # every bucket full again: all are forgotten first
    throttle.failed("10.9.9.9", None)
    assert len(throttle.addresses) == 1
