"""Failed sign-ins limited by token buckets, per client address and per key uuid.

Each failed authentication (API Basic or Bearer, console sign-in) takes a token from the
bucket of the client's address and from the bucket of the key uuid it named; an attempt
whose address or uuid has no token left is refused with a 429 and `Retry-After` before the
key is even checked, so guessing goes no faster than the buckets refill. Successful sign-ins
take nothing. The uuid buckets are several times larger than the address buckets, so that
one address alone can never empty a uuid's bucket and lock its owner out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from lorafaas.errors import TooManyRequests

MAX_TRACKED = 100_000  # buckets kept per kind; full ones are forgotten first
UUID_SHARE = 3  # a uuid's bucket holds (and refills) this many times an address's


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; starts full."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last update."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def retry_after_s(self) -> int:
        """Whole seconds until one token is back (0 when one is there)."""
        return 0 if self.tokens >= 1 else math.ceil((1 - self.tokens) / self.rate)


class BucketTable:
    """Buckets by key, bounded: full buckets are the same as absent ones."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after_s(self, key: str, now: float) -> int:
        """Seconds until `key` may try again (0: now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        bucket.refill(now)
        return bucket.retry_after_s()

    def take(self, key: str, now: float) -> None:
        """Take one token from `key`'s bucket (it may go empty, never below zero)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.capacity, self.rate,
                                                      self.capacity, now)
        bucket.refill(now)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        if len(self._buckets) < MAX_TRACKED:
            return
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[key]
        while len(self._buckets) >= MAX_TRACKED:  # still full: forget the oldest
            del self._buckets[next(iter(self._buckets))]


class LoginThrottle:
    """Refuses sign-in attempts from addresses or for uuids that failed too often."""

    def __init__(self, burst: int, per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.addresses = BucketTable(burst, per_minute / 60)
        self.uuids = BucketTable(burst * UUID_SHARE, per_minute * UUID_SHARE / 60)

    def check(self, address: str, key_uuid: str | None) -> None:
        """Raise TooManyRequests (with Retry-After) when either bucket is empty."""
        now = self._clock()
        wait = self.addresses.retry_after_s(address, now)
        if key_uuid:
            wait = max(wait, self.uuids.retry_after_s(key_uuid, now))
        if wait > 0:
            raise TooManyRequests(f"Too many failed sign-ins: try again in {wait} s.",
                                  headers={"Retry-After": str(wait)})

    def failed(self, address: str, key_uuid: str | None) -> None:
        """Count one failed authentication against the address and the uuid."""
        now = self._clock()
        self.addresses.take(address, now)
        if key_uuid:
            self.uuids.take(key_uuid, now)
