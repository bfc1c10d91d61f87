"""Resident (RSS) and proportional (PSS) memory of a process and its descendants, from /proc.

PSS divides each shared page among the processes mapping it, so the backbone's tmpfs
weights, mapped by every container, count once over all of them: the sum of PSS is what
the host really spends, where the sum of RSS counts the shared backbone once per container.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Footprint:
    """RSS and PSS in MB of a process tree."""

    rss_mb: float
    pss_mb: float


def _children(proc: Path) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        # The command name, in parentheses, may hold spaces: the fields follow its last ')'.
        fields = text[text.rindex(")") + 2:].split()
        tree[int(fields[1])].append(int(stat.parent.name))
    return tree


def _rollup_kb(proc: Path, pid: int) -> tuple[int, int] | None:
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None  # gone, or not ours to read
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0])
    return values.get("Rss", 0), values.get("Pss", 0)


def footprints(pids: list[int], proc: Path = PROC) -> dict[int, Footprint | None]:
    """Each pid's tree summed (None where its main process cannot be read)."""
    tree = _children(proc) if pids else {}
    answer: dict[int, Footprint | None] = {}
    for pid in pids:
        main = _rollup_kb(proc, pid) if pid > 0 else None
        if main is None:
            answer[pid] = None
            continue
        rss, pss = main
        stack = list(tree.get(pid, []))
        while stack:
            child = stack.pop()
            stack += tree.get(child, [])
            measured = _rollup_kb(proc, child)
            if measured is not None:
                rss, pss = rss + measured[0], pss + measured[1]
        answer[pid] = Footprint(round(rss / 1024, 1), round(pss / 1024, 1))
    return answer
