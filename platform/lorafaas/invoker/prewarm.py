"""Reactive pre-warming of stem cells, as OpenWhisk's `reactive` prewarm configuration.

Keep at least `min_count` stem cells; for every `threshold` cold starts in the last
minute (`ColdStartWindow`'s window), want `increment` more, up to `max_count`; a stem cell unused for `ttl_s` goes,
down to `min_count`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class PrewarmConfig:
    """OpenWhisk's names: minCount, maxCount, ttl, threshold, increment."""

    min_count: int = 1
    max_count: int = 4
    ttl_s: float = 600.0
    threshold: int = 2
    increment: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.min_count <= self.max_count:
            raise ValueError("prewarm needs 0 <= minCount <= maxCount")
        if self.threshold < 1 or self.increment < 0 or self.ttl_s <= 0:
            raise ValueError("prewarm needs threshold >= 1, increment >= 0, ttl > 0")


class ColdStartWindow:
    """Cold starts of the last minute (the window is shorter in time-compressed replays)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def record(self, at_s: float) -> None:
        """A cold start happened."""
        self._times.append(at_s)

    def count(self, now_s: float) -> int:
        """Cold starts in the window before `now_s`."""
        while self._times and self._times[0] <= now_s - self.window_s:
            self._times.popleft()
        return len(self._times)


def desired_stem_cells(config: PrewarmConfig, cold_starts_last_minute: int) -> int:
    """How many stem cells to keep now."""
    wanted = config.min_count + config.increment * (cold_starts_last_minute // config.threshold)
    return min(config.max_count, wanted)
