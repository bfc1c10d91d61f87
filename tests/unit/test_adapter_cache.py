"""The namespace container's adapter cache: loaded once, LRU by bytes, never a pinned one
dropped, too large refused, a failed load leaves nothing."""

from __future__ import annotations

import pytest

from lorafaas.runtime.adapter_cache import AdapterCache, AdapterTooLarge

SIZES = {"a": 40, "b": 30, "c": 50, "huge": 200}


class Loader:
    """Records loads and unloads; `fail` names adapters whose load raises."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.events: list[str] = []
        self.fail = fail or set()

    def load(self, name: str) -> int:
        self.events.append(f"load {name}")
        if name in self.fail:
            raise RuntimeError(f"{name} is broken")
        return SIZES[name]

    def unload(self, name: str) -> None:
        self.events.append(f"drop {name}")


def cache(budget: int = 100, fail: set[str] | None = None) -> tuple[AdapterCache, Loader]:
    loader = Loader(fail)
    return AdapterCache(budget, loader.load, loader.unload, clock=iter(range(1000)).__next__
                        ), loader


def test_second_acquire_uses_the_loaded_adapter() -> None:
    adapters, loader = cache()
    first = adapters.acquire("a")
    adapters.release("a")
    second = adapters.acquire("a")
    assert (first.was_loaded, second.was_loaded) == (False, True)
    assert first.load_ms == 1000.0 and second.load_ms == 0.0  # one tick of the fake clock
    assert loader.events == ["load a"]


def test_coldest_unpinned_adapter_goes_first() -> None:
    adapters, loader = cache()
    for name in ("a", "b"):
        adapters.acquire(name)
        adapters.release(name)
    adapters.acquire("a")  # a is now the most recently used
    adapters.release("a")
    adapters.acquire("c")  # 40 + 30 + 50 > 100: b goes, a stays
    assert loader.events[-2:] == ["load c", "drop b"]
    assert adapters.loaded() == {"a": 40, "c": 50}
    assert adapters.bytes == 90


def test_pinned_adapters_are_kept_and_trimmed_when_released() -> None:
    adapters, loader = cache()
    adapters.acquire("a")
    adapters.acquire("b")
    adapters.acquire("c")  # all pinned: 120 bytes for a while
    assert adapters.bytes == 120 and loader.events.count("drop a") == 0
    adapters.release("b")  # b is unpinned and the coldest: it goes
    assert adapters.loaded() == {"a": 40, "c": 50}


def test_too_large_and_failed_loads_leave_nothing() -> None:
    adapters, loader = cache(fail={"b"})
    with pytest.raises(AdapterTooLarge, match="huge"):
        adapters.acquire("huge")
    with pytest.raises(RuntimeError, match="broken"):
        adapters.acquire("b")
    assert adapters.loaded() == {}
    assert loader.events == ["load huge", "drop huge", "load b"]
    with pytest.raises(KeyError):
        adapters.release("b")
