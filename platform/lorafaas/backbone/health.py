"""Whether each backbone's server is up, and how often it was restarted.

The supervisor (lorafaas.backbone.supervision) writes it; the container pool reads it to
place no new container on a backbone that is down, and `/metrics` shows it. A backbone it
has never heard of counts as up: a pool without supervision (its tests) places as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class BackboneDown(RuntimeError):
    """A backbone's server stayed down for longer than a start may wait; names it."""


@dataclass
class BackboneStatus:
    """One backbone: up or down (since when), and its restarts so far."""

    up: bool = True
    restarts: int = 0
    down_since: float = 0.0  # time.time() of the exit, while down


class BackboneHealth:
    """The state of every supervised backbone, by name."""

    def __init__(self) -> None:
        self.states: dict[str, BackboneStatus] = {}

    def mark_up(self, name: str, restarted: bool = False) -> None:
        """The backbone's server is ready (again, after a restart)."""
        state = self.states.setdefault(name, BackboneStatus())
        state.up, state.down_since = True, 0.0
        state.restarts += int(restarted)

    def mark_down(self, name: str) -> None:
        """The backbone's server exited; it is being restarted."""
        state = self.states.setdefault(name, BackboneStatus())
        if state.up:
            state.up, state.down_since = False, time.time()

    def is_up(self, name: str) -> bool:
        """Whether containers of the backbone can start now."""
        state = self.states.get(name)
        return state is None or state.up

    def down_error(self, name: str, waited_s: float) -> BackboneDown:
        """The error of a start that waited `waited_s` for the backbone in vain."""
        return BackboneDown(f"backbone {name!r} is down (its server exited and is being "
                            f"restarted); no container could start on it within "
                            f"{waited_s:.0f} s")
