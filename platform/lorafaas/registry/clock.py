"""Wall-clock milliseconds, the unit of every registry timestamp (as OpenWhisk's records)."""

import time


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)
