"""OpenWhisk's home invoker and probe sequence (ShardingContainerPoolBalancer): a stable hash
of namespace and action picks a home index and a step size co-prime with the number of
invokers, so that stepping from home visits every invoker once before repeating."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from functools import lru_cache


def stable_hash(namespace: str, action: str) -> int:
    """A hash of namespace and action that every controller computes alike (unlike hash())."""
    digest = hashlib.blake2b(f"{namespace}\0{action}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@lru_cache(maxsize=64)
def coprime_steps(n: int) -> tuple[int, ...]:
    """Numbers up to n co-prime with n and with each other, as OpenWhisk's step sizes."""
    steps: list[int] = []
    for candidate in range(1, n + 1):
        if math.gcd(candidate, n) == 1 and all(math.gcd(s, candidate) == 1 for s in steps):
            steps.append(candidate)
    return tuple(steps)


def probe_order(hashed: int, n: int) -> Iterator[int]:
    """The indices from the home invoker on, each of the n once, by the function's step."""
    if n <= 0:
        return
    steps = coprime_steps(n)
    step = steps[hashed % len(steps)]
    index = hashed % n
    for _ in range(n):
        yield index
        index = (index + step) % n
