"""Reactive pre-warming of stem cells, as OpenWhisk's `reactive` prewarm configuration.

Keep at least `min_count` stem cells; for every `threshold` cold starts in the last
minute (`ColdStartWindow`'s window), want `increment` more, up to `max_count`; a stem cell unused for `ttl_s` goes,
down to `min_count`.

A backbone whose stem cells fail to initialize waits before its next one
(`StemBackoff`): twice as long after each failure in a row, up to a cap, so a fault that
does not heal costs one container per wait rather than one per maintenance period.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


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


@dataclass
class BackoffState:
    """One backbone's stem-cell failures: in a row, in all, and when to try again."""

    in_a_row: int = 0
    total: int = 0
    retry_at: float = 0.0  # seconds, on the clock the caller passes


@dataclass
class StemBackoff:
    """Exponential backoff of stem-cell starts per backbone (times passed in, in seconds)."""

    base_s: float = 2.0
    cap_s: float = 300.0
    states: dict[str, BackoffState] = field(default_factory=dict)

    def allowed(self, backbone: str, now: float) -> bool:
        """Whether a stem cell of the backbone may be started now."""
        state = self.states.get(backbone)
        return state is None or now >= state.retry_at

    def failed(self, backbone: str, now: float) -> float:
        """A stem cell failed to start: return how long the backbone waits before the next."""
        state = self.states.setdefault(backbone, BackoffState())
        state.in_a_row += 1
        state.total += 1
        delay = min(self.cap_s, self.base_s * 2 ** (state.in_a_row - 1))
        state.retry_at = now + delay
        return delay

    def succeeded(self, backbone: str) -> None:
        """A stem cell started: the next failure waits the base time again."""
        state = self.states.get(backbone)
        if state is not None:
            state.in_a_row, state.retry_at = 0, 0.0

    def waiting_s(self, backbone: str, now: float) -> float:
        """Seconds the backbone still waits (0 when it may start one)."""
        state = self.states.get(backbone)
        return max(0.0, state.retry_at - now) if state is not None else 0.0
