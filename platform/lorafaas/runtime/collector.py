"""The cyclic garbage collector held off while the runtime imports its libraries.

Importing torch makes some 280 000 container objects that live as long as the process.
With the collector on, every threshold-triggered pass during the import traverses the
ones made so far, so each library pays again for the libraries before it. In the runtime
image, torch's import takes 1.1× as long with the collector on as with it off on a quiet
machine (1.2× on a loaded one: docs/benchmarks/cold_imports.md), aiohttp's after torch's
about 1.8×. Held off, the objects are made once; then `gc.freeze()` moves them to the
permanent generation, so no later pass (while serving, too) traverses them again: one full
pass over them took 0.3 s. What freezing keeps that a pass would have freed is the
imports' own cyclic garbage, about 8 000 objects.

Stdlib only: it runs before the libraries are imported.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def hold() -> bool:
    """Stop automatic collection; whether it was on (for `release`)."""
    was_on = gc.isenabled()
    gc.disable()
    return was_on


def release(was_on: bool) -> None:
    """Freeze what exists now out of every later pass, and collect again if it was on."""
    gc.freeze()
    if was_on:
        gc.enable()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """No automatic collection inside; what was made inside is frozen when it ends."""
    was_on = hold()
    try:
        yield
    finally:
        release(was_on)
