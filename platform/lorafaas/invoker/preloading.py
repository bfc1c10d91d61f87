"""The pre-loading scheduler: which artifacts of which functions to hold in which memory tier.

A LoRA function's cold start loads five artifacts in a fixed order (libraries → backbone
attach → adapter → tokenizer → kernels). Holding an artifact ahead of a request saves its load
time on every request that would otherwise start cold, at the price of memory. The plan is a
knapsack with precedence over one host-memory budget and one budget per accelerator, solved
greedily by value density: load time saved × predicted request rate ÷ memory, the memory
taken as a share of its budget so host bytes and accelerator bytes compare.

Each function is a chain of artifacts, and what can be held is a prefix of it. The greedy
takes the upper concave hull of each chain: consecutive artifacts merge into groups whose
densities fall along the chain, so a sparse predecessor (the libraries) is weighed together
with the dense artifacts it unlocks. Groups of all functions are taken by falling density,
each whole or not at all; when one does not fit, the part of its chain that still fits is
hulled again and queued at its own density. Each artifact goes to its densest tier with room,
and moves to a more valuable tier (the accelerator) at the end where room is left. Greedy
knapsack fails when one item is worth much of the whole, so when one function could be worth
over a tenth of the plan, a second run holds it first and the better plan wins.

The plan is recomputed every period for every function of an invoker: the hot path works on
plain tuples and lists.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

SEED_SHARE = 0.1  # a function that could be worth this share of the plan is tried first too


class ArtifactKind(enum.IntEnum):
    """An artifact of a cold start; the value order is the precedence order."""

    LIBRARIES = 0
    BACKBONE = 1
    ADAPTER = 2
    TOKENIZER = 3
    KERNELS = 4


class Tier(enum.Enum):
    """Where an artifact lies; DISK is where it is when nothing is held."""

    DISK = "disk"
    HOST = "host"
    ACCELERATOR = "accelerator"


@dataclass(frozen=True)
class ArtifactProfile:
    """Measured load time to ready from each tier, and bytes taken when held in a tier.

    `load_ms[DISK]` is the cold load; a held tier with no load time is ready at once. The
    tiers in `memory_bytes` (HOST, ACCELERATOR) are those that can hold the artifact.
    """

    load_ms: Mapping[Tier, float]
    memory_bytes: Mapping[Tier, int]
    # (host bytes, host ms saved, accelerator bytes, accelerator ms saved), bytes -1 where it
    # cannot be held: derived once here so that planning stays cheap
    compact: tuple[int, float, int, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if Tier.DISK not in self.load_ms:
            raise ValueError("an artifact profile needs load_ms[Tier.DISK], the cold load time")
        if any(size < 0 for size in self.memory_bytes.values()):
            raise ValueError(f"negative memory size in {dict(self.memory_bytes)}")
        object.__setattr__(self, "compact", (*self._held(Tier.HOST), *self._held(Tier.ACCELERATOR)))

    def _held(self, tier: Tier) -> tuple[int, float]:
        """Bytes taken in the tier (-1 if it cannot hold the artifact) and milliseconds saved."""
        if tier not in self.memory_bytes:
            return -1, 0.0
        saved = self.load_ms[Tier.DISK] - self.load_ms.get(tier, 0.0)
        return self.memory_bytes[tier], max(0.0, saved)


@dataclass(frozen=True)
class FunctionProfile:
    """A function's predicted request rate, its five artifacts, and where its backbone runs."""

    key: str
    rate_per_s: float
    artifacts: tuple[ArtifactProfile, ...]  # indexed by ArtifactKind
    backbone: str
    accelerator: str | None  # the backbone's accelerator; None on a host without one

    def __post_init__(self) -> None:
        if len(self.artifacts) != len(ArtifactKind):
            raise ValueError(f"{self.key}: one artifact profile per ArtifactKind is needed")
        if not self.rate_per_s >= 0:
            raise ValueError(f"{self.key}: rate_per_s={self.rate_per_s} must be >= 0")


@dataclass(frozen=True)
class Capacity:
    """Memory the pre-loaded containers of one invoker may take, and how many there may be."""

    host_bytes: int
    accelerator_bytes: Mapping[str, int] = field(default_factory=dict)
    max_containers: int | None = None  # one idle container per function that holds anything

    def __post_init__(self) -> None:
        if self.host_bytes < 0 or any(v < 0 for v in self.accelerator_bytes.values()):
            raise ValueError("memory budgets must be >= 0")


class Placement(NamedTuple):
    """One held artifact; `accelerator` is the backbone's accelerator when the tier is one."""

    kind: ArtifactKind
    tier: Tier
    accelerator: str | None


@dataclass(frozen=True)
class PreloadPlan:
    """Artifacts to hold per function (a precedence prefix), their value and memory."""

    holdings: Mapping[str, tuple[Placement, ...]]
    value: float  # cold-start milliseconds saved per second
    host_bytes: int
    accelerator_bytes: Mapping[str, int]
    containers: int


# An option is one artifact held in one bucket: (value, share of budget, bucket, bytes).
# Bucket 0 is host memory, bucket i > 0 the i-th accelerator.
Option = tuple[float, float, int, int]
Chain = list[tuple[Option, ...]]  # per artifact, its options, densest first
# (density, function index, first artifact, last artifact, generation of the function's groups)
Group = tuple[float, int, int, int, int]


def _density(option: Option) -> float:
    """Value per share of budget; free and valuable is infinitely dense."""
    if option[1] > 0:
        return option[0] / option[1]
    return math.inf if option[0] > 0 else 0.0


def _buckets(capacity: Capacity) -> tuple[list[int], dict[str, int]]:
    """Budgets per bucket, and the bucket of each accelerator."""
    budgets = [capacity.host_bytes]
    index: dict[str, int] = {}
    for name, size in capacity.accelerator_bytes.items():
        index[name] = len(budgets)
        budgets.append(size)
    return budgets, index


def _chain(profile: FunctionProfile, accelerator: int, budgets: list[int]
           ) -> tuple[Chain, float]:
    """Each artifact's options up to the first no budget holds, and the chain's value bound."""
    rate, host = profile.rate_per_s, budgets[0]
    device = budgets[accelerator] if accelerator > 0 else -1
    chain: Chain = []
    bound = 0.0
    for artifact in profile.artifacts:
        host_size, host_saved, device_size, device_saved = artifact.compact
        on_device = (rate * device_saved, device_size / device if device_size else 0.0,
                     accelerator, device_size) if 0 <= device_size <= device else None
        if 0 <= host_size <= host:
            on_host = (rate * host_saved, host_size / host if host_size else 0.0, 0, host_size)
            if on_device is None:
                chain.append((on_host,))
                bound += on_host[0]
                continue
            densest_first = _density(on_host) >= _density(on_device)
            chain.append((on_host, on_device) if densest_first else (on_device, on_host))
            bound += max(on_host[0], on_device[0])
        elif on_device is not None:
            chain.append((on_device,))
            bound += on_device[0]
        else:
            break
    return chain, bound


def _hull(chain: Chain, first: int, stop: int, f: int, generation: int) -> list[Group]:
    """The groups of the upper concave hull of artifacts first..stop-1: densities fall."""
    stack: list[tuple[float, float, int]] = []  # (value, share, first artifact) per group
    for k in range(first, stop):
        option = chain[k][0]
        value, share, start = option[0], option[1], k
        # merge while this group is at least as dense as the one before it
        while stack:
            last = stack[-1]
            if value * last[1] < last[0] * share:
                break
            value, share, start = value + last[0], share + last[1], last[2]
            stack.pop()
        stack.append((value, share, start))
    groups: list[Group] = []
    end = stop - 1
    for value, share, start in reversed(stack):
        if value > 0:
            groups.append((value / share if share > 0 else math.inf, f, start, end, generation))
        end = start - 1
    return groups


class _Greedy:
    """The state of one greedy run: free memory and the options held per function."""

    def __init__(self, chains: list[Chain], budgets: list[int], max_containers: int) -> None:
        self.chains = chains
        self.free = list(budgets)
        self.held: list[list[Option]] = [[] for _ in chains]
        self.generation = [0] * len(chains)  # groups of an older generation are stale
        self.retry: list[Group] = []  # heap of groups hulled again, density negated
        self.containers_left = max_containers

    def take(self, groups: list[Group]) -> None:
        """Take groups by falling density, merged with the groups hulled again meanwhile."""
        groups.sort(key=itemgetter(0), reverse=True)
        retry, held, generation = self.retry, self.held, self.generation
        i, n = 0, len(groups)
        while i < n or retry:
            if retry and (i == n or -retry[0][0] >= groups[i][0]):
                _, f, start, end, gen = heapq.heappop(retry)
            else:
                _, f, start, end, gen = groups[i]
                i += 1
            if gen != generation[f] or len(held[f]) != start:
                continue  # stale, or a predecessor was not taken
            if start == 0 and self.containers_left <= 0:
                continue
            stop = self._extend(f, start, end)
            if start < stop <= end:
                self._rehull(f, start, stop)
            elif stop > end and start == 0:
                self.containers_left -= 1

    def _extend(self, f: int, start: int, end: int) -> int:
        """Hold artifacts start..end of a function, or none; return the first that did not fit."""
        chain, held, free = self.chains[f], self.held[f], self.free
        for k in range(start, end + 1):
            for option in chain[k]:
                if option[3] <= free[option[2]]:
                    free[option[2]] -= option[3]
                    held.append(option)
                    break
            else:
                for undo in held[start:]:
                    free[undo[2]] += undo[3]
                del held[start:]
                return k
        return end + 1

    def _rehull(self, f: int, start: int, stop: int) -> None:
        """Queue the hull of artifacts start..stop-1 again; the function's older groups go stale.

        Free memory only shrinks while groups are taken, so an artifact that did not fit never
        will: the chain is cut there, which also makes every retry shorter than the last.
        """
        self.generation[f] += 1
        for density, _, first, last, gen in _hull(self.chains[f], start, stop, f,
                                                  self.generation[f]):
            heapq.heappush(self.retry, (-density, f, first, last, gen))

    def upgrade(self) -> bool:
        """Move held artifacts to a more valuable tier where there is room; say if any moved."""
        moves = [(o[0] - current[0], f, k, o)
                 for f, held in enumerate(self.held) for k, current in enumerate(held)
                 if len(self.chains[f][k]) > 1
                 for o in self.chains[f][k] if o[0] > current[0]]
        moves.sort(key=itemgetter(0), reverse=True)
        free, moved = self.free, False
        for _, f, k, option in moves:
            current = self.held[f][k]
            if option[0] > current[0] and option[3] <= free[option[2]]:
                free[current[2]] += current[3]
                free[option[2]] -= option[3]
                self.held[f][k] = option
                moved = True
        return moved

    def fill(self, groups: list[Group]) -> None:
        """Offer what is not held again, after memory was freed.

        A chain cut inside a group is hulled again; a group that failed at its first artifact
        left its function's groups current, and they are simply offered again.
        """
        for f, chain in enumerate(self.chains):
            first = len(self.held[f])
            if self.generation[f] and first < len(chain) and \
                    any(o[3] <= self.free[o[2]] for o in chain[first]):
                self._rehull(f, first, len(chain))
        self.take(groups)

    def value(self) -> float:
        """The value of what is held."""
        return sum(option[0] for held in self.held for option in held)


class _Problem(NamedTuple):
    """The functions' chains and value bounds, the budgets, the accelerators' buckets."""

    chains: list[Chain]
    bounds: list[float]
    budgets: list[int]
    accelerators: dict[str, int]
    max_containers: int


def _prepare(functions: Sequence[FunctionProfile], capacity: Capacity) -> _Problem:
    """Each function's chain of options under the capacity."""
    if len({p.key for p in functions}) != len(functions):
        raise ValueError("function keys must be unique")
    budgets, accelerators = _buckets(capacity)
    chains, bounds = [], []
    for p in functions:
        chain, bound = _chain(p, accelerators.get(p.accelerator, -1) if p.accelerator else -1,
                              budgets)
        chains.append(chain)
        bounds.append(bound)
    limit = len(functions) if capacity.max_containers is None else capacity.max_containers
    return _Problem(chains, bounds, budgets, accelerators, limit)


def _run(problem: _Problem, groups: list[Group], seed: int | None = None) -> _Greedy:
    """One greedy run over the hull groups, the seed function's chain held first if any."""
    chains = problem.chains
    greedy = _Greedy(chains, problem.budgets, problem.max_containers)
    if seed is not None:
        greedy.take(_hull(chains[seed], 0, len(chains[seed]), seed, 0))
    greedy.take(groups)
    if greedy.upgrade():
        greedy.fill(groups)  # the upgrade freed memory in the lower tier
    return greedy


def plan_preloading(functions: Sequence[FunctionProfile], capacity: Capacity) -> PreloadPlan:
    """Plan which artifacts to hold, greedily by value density under precedence and budgets."""
    problem = _prepare(functions, capacity)
    groups = [group for f, chain in enumerate(problem.chains)
              for group in _hull(chain, 0, len(chain), f, 0)]
    best = _run(problem, groups)
    value, bounds = best.value(), problem.bounds
    seed = max(range(len(bounds)), key=bounds.__getitem__, default=None)
    if seed is not None and bounds[seed] > SEED_SHARE * value:
        seeded = _run(problem, groups, seed)
        best = seeded if seeded.value() > value else best
    return _plan(functions, best.held, problem.accelerators)


def _plan(functions: Sequence[FunctionProfile], chosen: list[list[Option]],
          accelerators: Mapping[str, int]) -> PreloadPlan:
    """The plan of the chosen options, with its value and memory per budget."""
    names: list[str | None] = [None] * (len(accelerators) + 1)
    for name, bucket in accelerators.items():
        names[bucket] = name
    # one Placement per (bucket, kind), shared by every function, to keep this loop cheap
    table = [[Placement(kind, Tier.ACCELERATOR if b else Tier.HOST, names[b])
              for kind in ArtifactKind] for b in range(len(names))]
    used = [0] * len(names)
    value = 0.0
    holdings: dict[str, tuple[Placement, ...]] = {}
    for profile, held in zip(functions, chosen):
        if held:
            holdings[profile.key] = tuple(table[o[2]][k] for k, o in enumerate(held))
            for option in held:
                used[option[2]] += option[3]
                value += option[0]
    return PreloadPlan(holdings, value, used[0],
                       {name: used[b] for name, b in accelerators.items()}, len(holdings))


def plan_preloading_exact(functions: Sequence[FunctionProfile], capacity: Capacity
                          ) -> PreloadPlan:
    """The optimal plan by exhaustive search: exponential, for tests and a handful of functions.

    Every prefix of every chain in every combination of tiers is a candidate; branch and bound
    on the best value each remaining function could add prunes without losing the optimum.
    """
    problem = _prepare(functions, capacity)
    search = _Search([_configurations(chain) for chain in problem.chains], problem.budgets)
    search.run(0, problem.max_containers, 0.0)
    return _plan(functions, [list(c) for c in search.best], problem.accelerators)


def _configurations(chain: Chain) -> list[tuple[float, tuple[Option, ...]]]:
    """Every prefix of a chain in every combination of tiers, most valuable first."""
    configs: list[tuple[float, tuple[Option, ...]]] = [(0.0, ())]
    frontier: list[tuple[Option, ...]] = [()]
    for options in chain:
        frontier = [prefix + (option,) for prefix in frontier for option in options]
        configs.extend((sum(o[0] for o in c), c) for c in frontier)
    configs.sort(key=itemgetter(0), reverse=True)
    return configs


class _Search:
    """Depth-first branch and bound over one configuration per function."""

    def __init__(self, configs: list[list[tuple[float, tuple[Option, ...]]]],
                 budgets: list[int]) -> None:
        self.configs = configs
        self.free = list(budgets)
        self.path: list[tuple[Option, ...]] = []
        self.best: list[tuple[Option, ...]] = [() for _ in configs]
        self.best_value = 0.0
        # the most that functions i and later can add, memory aside
        self.bound = [sum(c[0][0] for c in configs[i:]) for i in range(len(configs) + 1)]

    def run(self, i: int, containers_left: int, value: float) -> None:
        """Try every configuration of function i that fits, then the next function."""
        if i == len(self.configs):
            if value > self.best_value:
                self.best_value, self.best = value, list(self.path)
            return
        for config_value, options in self.configs[i]:
            if value + config_value + self.bound[i + 1] <= self.best_value:
                break  # sorted by value: no later configuration can do better
            if (options and containers_left <= 0) or not self._hold(options):
                continue
            self.path.append(options)
            self.run(i + 1, containers_left - bool(options), value + config_value)
            self.path.pop()
            self._release(options)

    def _hold(self, options: tuple[Option, ...]) -> bool:
        """Take the options' memory if all of it fits."""
        for n, option in enumerate(options):
            if option[3] > self.free[option[2]]:
                self._release(options[:n])
                return False
            self.free[option[2]] -= option[3]
        return True

    def _release(self, options: tuple[Option, ...]) -> None:
        """Give the options' memory back."""
        for option in options:
            self.free[option[2]] += option[3]
