"""Which idle containers eviction takes first: pre-loaded, then warm, then stem cells."""

from __future__ import annotations

from pathlib import Path

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.pool import EVICTION_ORDER, pick_victims


def test_eviction_takes_preloaded_then_warm_then_stem_cells(tmp_path: Path) -> None:
    def held(name: str, state: ContainerState, last_used: float) -> PooledContainer:
        return PooledContainer(ContainerInfo(name, name, 0), ContainerFolders(tmp_path / name),
                               None,  # type: ignore[arg-type]  # never called here
                               1024, state, last_used=last_used)

    containers = [held("stem", ContainerState.STEM, 0.0), held("warm", ContainerState.IDLE, 1.0),
                  held("old-pre", ContainerState.PRELOADED, 2.0),
                  held("new-pre", ContainerState.PRELOADED, 3.0),
                  held("busy", ContainerState.BUSY, 0.0)]
    names = [[c.info.name for c in pick_victims(containers, mb, EVICTION_ORDER) or []]
             for mb in (1, 1500, 3000, 4096)]
    assert names == [["old-pre"], ["old-pre", "new-pre"], ["old-pre", "new-pre", "warm"],
                     ["old-pre", "new-pre", "warm", "stem"]]
    assert pick_victims(containers, 5000, EVICTION_ORDER) is None  # the busy one is not idle
    # The stem-cell minimum evicts no stem cell to make room for one.
    assert pick_victims(containers, 4096, EVICTION_ORDER[:2]) is None
