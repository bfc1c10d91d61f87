"""The controller's invoker placement on fake reports: OpenWhisk's home invoker and
co-prime probe sequence, overflow when full, locality weighed against load, what was
dispatched since a report, and invokers whose heartbeat went stale."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

import lorafaas.balancer
from lorafaas.balancer.placement import Balancer, BalancerConfig, Placement
from lorafaas.balancer.reports import InvokerReport, Locality, NamespaceContainer, Target
from lorafaas.balancer.ring import coprime_steps, probe_order, stable_hash
from lorafaas.invoking.activations import FunctionRef
from lorafaas.names import QualifiedName

INVOKERS = [f"inv{i:02d}" for i in range(10)]
CHAT = Target("alice", "alice/chat", "demo", memory_mb=1024)
CODE = Target("alice", "alice/code", "demo", memory_mb=1024)


def report(invoker: str, at: float = 0.0, *, free: int = 4, memory: int = 8192,
           stems: int = 0, **loaded: object) -> InvokerReport:
    """A heartbeat of a 4-slot invoker."""
    return InvokerReport(invoker, at, slots=4, slots_free=free, memory_free_mb=memory,
                         stem_cells={"demo": stems}, **loaded)  # type: ignore[arg-type]


def balancer(*reports: InvokerReport, **config: object) -> Balancer:
    """A balancer that has seen these reports (idle ones for every other invoker)."""
    given = {r.invoker_id: r for r in reports}
    result = Balancer(BalancerConfig(**config))  # type: ignore[arg-type]
    for invoker in INVOKERS:
        result.update(given.get(invoker, report(invoker)))
    return result


def order(target: Target) -> list[str]:
    """The target's probe sequence over INVOKERS, home first."""
    return [INVOKERS[i] for i in probe_order(stable_hash(target.namespace, target.action),
                                             len(INVOKERS))]


def test_steps_are_pairwise_coprime_with_the_count() -> None:
    assert coprime_steps(10) == (1, 3, 7)
    assert coprime_steps(12) == (1, 5, 7, 11)
    assert coprime_steps(1) == (1,)


@pytest.mark.parametrize("n", [1, 2, 7, 10, 12, 100])
def test_every_probe_sequence_visits_each_invoker_once(n: int) -> None:
    for hashed in range(0, 5000, 37):
        assert sorted(probe_order(hashed, n)) == list(range(n))


def test_the_hash_is_the_same_in_every_process() -> None:
    # Python's hash() of a str changes per process; the home invoker must not: every
    # controller, in every process, computes this value.
    assert stable_hash("alice", "alice/chat") == 0xB9C88A108FA42A36
    assert stable_hash("alice", "alice/chat") != stable_hash("alice", "alice/code")
    assert stable_hash("a", "b/c") != stable_hash("a/b", "c")


def test_a_function_goes_home_and_its_burst_follows_it() -> None:
    b = balancer()
    first = b.place(CHAT, now=1.0)
    assert first == Placement(order(CHAT)[0], Locality.COLD)
    assert b.place(CHAT, now=1.0) == Placement(order(CHAT)[0], Locality.WARM)


def test_a_full_home_overflows_along_the_step() -> None:
    home, second, third = order(CHAT)[:3]
    b = balancer(report(home, free=0), report(second, free=0))
    placed = b.place(CHAT, now=1.0)
    assert placed is not None and placed.invoker_id == third


def test_sends_since_the_report_fill_an_invoker_until_the_next_one() -> None:
    home, second = order(CHAT)[:2]
    b = balancer(report(home, free=1), load_weight=0.0)
    assert b.place(CHAT, 1.0) == Placement(home, Locality.COLD)
    assert b.place(CHAT, 1.0) == Placement(second, Locality.COLD)
    b.update(report(home, at=1.5, free=1, warm=frozenset({CHAT.action})))
    assert b.place(CHAT, 2.0) == Placement(home, Locality.WARM)


def test_a_release_frees_the_slot_before_the_next_report() -> None:
    home = order(CHAT)[0]
    b = balancer(report(home, free=1), load_weight=0.0)
    b.place(CHAT, 1.0)
    b.release(home)
    assert b.place(CHAT, 1.0) == Placement(home, Locality.WARM)


def test_a_warm_invoker_wins_over_home() -> None:
    away = order(CHAT)[-1]
    b = balancer(report(away, free=2, warm=frozenset({CHAT.action})))
    assert b.place(CHAT, 1.0) == Placement(away, Locality.WARM)


def test_plain_hashing_ignores_where_the_function_is_warm() -> None:
    home, away = order(CHAT)[0], order(CHAT)[-1]
    b = balancer(report(away, warm=frozenset({CHAT.action})), locality=False)
    assert b.place(CHAT, 1.0) == Placement(home, Locality.COLD)


def test_a_busy_warm_invoker_loses_to_an_idle_stem_cell() -> None:
    home, away = order(CHAT)[0], order(CHAT)[-1]
    # 3 of 4 slots busy plus a queue of 1: load 1.0 + warm 0.0 > idle 0.0 + stem cell 0.6.
    b = balancer(report(away, free=1, queued=1, warm=frozenset({CHAT.action})),
                 report(home, stems=1))
    assert b.place(CHAT, 1.0) == Placement(home, Locality.STEM)
    # Half busy: 0.5 < 0.6, it stays warm.
    b = balancer(report(away, free=2, warm=frozenset({CHAT.action})), report(home, stems=1))
    assert b.place(CHAT, 1.0) == Placement(away, Locality.WARM)


def test_preloaded_beats_a_stem_cell_and_a_stem_cell_beats_cold() -> None:
    home, second, away = order(CHAT)[0], order(CHAT)[1], order(CHAT)[-1]
    b = balancer(report(away, preloaded=frozenset({CHAT.action})), report(home, stems=1))
    assert b.place(CHAT, 1.0) == Placement(away, Locality.PRELOADED)
    b = balancer(report(second, stems=1))
    assert b.place(CHAT, 1.0) == Placement(second, Locality.STEM)


def test_a_stem_cell_taken_is_not_counted_twice() -> None:
    home = order(CHAT)[0]
    other, third = [t for t in (Target("bob", f"bob/f{i}", "demo") for i in range(100))
                    if order(t)[0] == home][:2]
    b = balancer(report(home, stems=1))
    assert b.place(CHAT, 1.0) == Placement(home, Locality.STEM)
    placed = b.place(other, 1.0)
    assert placed is not None and placed.locality == Locality.COLD
    # The next report says what is left: a new stem cell is there to take.
    b.update(report(home, at=1.5, stems=1, warm=frozenset({CHAT.action})))
    assert b.place(third, 2.0) == Placement(home, Locality.STEM)


def test_the_namespace_container_takes_its_namespaces_functions() -> None:
    away = order(CODE)[-1]
    shared = NamespaceContainer("alice", "demo", frozenset({CHAT.action}))
    b = balancer(report(away, namespace_containers=(shared,)))
    assert b.place(CHAT, 1.0) == Placement(away, Locality.WARM)  # its adapter is loaded
    assert b.place(CODE, 1.0) == Placement(away, Locality.NAMESPACE)  # it loads the adapter
    # Another namespace's function, or one that runs owner code, never goes by it.
    for target in (Target("bob", "bob/code", "demo"),
                   Target("alice", "alice/handler", "demo", shareable=False)):
        placed = b.place(target, 1.0)
        assert placed is not None and placed.locality == Locality.COLD


def test_a_cold_start_needs_the_memory_of_a_new_container() -> None:
    home, second = order(CHAT)[:2]
    b = balancer(report(home, memory=512))
    assert b.place(CHAT, 1.0) == Placement(second, Locality.COLD)


def test_a_stale_invoker_takes_no_work_and_leaves_the_index() -> None:
    away = order(CHAT)[-1]
    fresh = [report(i, at=20.0) for i in INVOKERS if i != away]
    b = balancer(report(away, at=0.0, warm=frozenset({CHAT.action})), *fresh)
    placed = b.place(CHAT, now=25.0)
    assert placed is not None and placed.invoker_id != away
    assert away not in b.live(25.0) and len(b.live(25.0)) == len(INVOKERS) - 1
    # Its next heartbeat brings it back.
    b.update(report(away, at=26.0, warm=frozenset({CHAT.action})))
    assert b.place(CHAT, 26.0) == Placement(away, Locality.WARM)


def test_no_live_invoker_places_nothing() -> None:
    b = balancer()
    assert b.place(CHAT, now=100.0) is None
    assert b.live(100.0) == []


def test_forgotten_and_removed_invokers_leave_the_ring() -> None:
    b = balancer()
    b.remove(INVOKERS[0])
    assert b.live(1.0) == INVOKERS[1:]
    b.sweep(1000.0)
    assert b.live(1000.0) == []
    b.update(report("new", at=1000.0))
    assert b.place(CHAT, 1000.0) == Placement("new", Locality.COLD)


def test_all_full_forces_the_least_loaded() -> None:
    reports = [report(i, free=0, queued=q) for i, q in zip(INVOKERS, itertools.cycle([3, 1]))]
    least = reports[1].invoker_id
    b = balancer(*reports)
    assert b.place(CHAT, 1.0) == Placement(least, Locality.COLD, forced=True)


def test_the_target_of_a_function_ref() -> None:
    ref = FunctionRef("alice/pkg/chat@1:ab", QualifiedName("alice", "pkg", "chat"),
                      Path("/x"), 2048, backbone="demo")
    assert Target.of(ref) == Target("alice", "alice/pkg/chat", "demo", 2048, True)
    handler = FunctionRef("k", QualifiedName("alice", None, "h"), Path("/x"), 512,
                          has_handler=True)
    assert not Target.of(handler).shareable


def test_a_function_warm_everywhere_is_weighed_on_a_rotating_few() -> None:
    everywhere = [report(i, warm=frozenset({CHAT.action})) for i in INVOKERS]
    b = balancer(*everywhere, max_indexed=2, probes=1)
    chosen = [b.place(CHAT, 1.0) for _ in range(10)]
    assert all(p is not None and p.locality == Locality.WARM for p in chosen)
    # Home plus a window of 2 that does not move would give at most 3 invokers.
    assert len({p.invoker_id for p in chosen if p is not None}) >= 5


def test_the_balancer_imports_only_the_seams_types_and_itself() -> None:
    # Pure logic: the controller and the broker both use it, so it reaches neither.
    imported = set()
    for path in Path(lorafaas.balancer.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    ours = {m for m in imported if m.startswith("lorafaas")}
    assert ours and all(m.startswith(("lorafaas.balancer", "lorafaas.invoking")) for m in ours)
