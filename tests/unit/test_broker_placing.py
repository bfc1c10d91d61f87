"""The controller's placement over the broker: heartbeats read as the balancer's reports,
the balancer's choice first and the overflow order after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorafaas.balancer.reports import NamespaceContainer
from lorafaas.balancer.ring import probe_order, stable_hash
from lorafaas.broker.heartbeats import Heartbeat, LiveInvokers
from lorafaas.broker.placing import Placer, report_of
from lorafaas.invoking.activations import FunctionRef
from lorafaas.invoking.client import InvokerSnapshot
from lorafaas.names import QualifiedName

NOW = 100.0
INVOKERS = ("a", "b", "c")


def function(name: str = "f") -> FunctionRef:
    return FunctionRef(key=f"ns/{name}@0.0.1:d", name=QualifiedName("ns", None, name),
                       adapter_dir=Path("/store/d"), memory_mb=512, backbone="demo")


def container(function_path: str, state: str, memory_mb: int = 512,
              kind: str = "function") -> dict[str, Any]:
    return {"container": f"c-{function_path}-{state}", "state": state, "memoryMB": memory_mb,
            "backbone": "demo", "function": function_path, "kind": kind, "pid": 1}


def beat(invoker_id: str, *containers: dict[str, Any], inflight: int = 0,
         at: float = NOW, pool_mb: int | None = 4096) -> Heartbeat:
    return Heartbeat(invoker_id, at, inflight, 8,
                     InvokerSnapshot(list(containers), pool_mb, []))


def home_order(f: FunctionRef) -> list[str]:
    return [INVOKERS[i] for i in probe_order(stable_hash("ns", f.path), len(INVOKERS))]


def placer(*beats: Heartbeat) -> Placer:
    """A placer following these heartbeats, and idle ones of every other invoker."""
    p = Placer(clock=lambda: NOW)
    given = {b.invoker_id for b in beats}
    for b in [*beats, *(beat(i) for i in INVOKERS if i not in given)]:
        p.seen(b)
    return p


def test_a_heartbeat_reads_as_the_balancers_report() -> None:
    report = report_of(beat(
        "a", container("ns/warm", "warm"), container("ns/busy", "busy"),
        container("ns/ahead", "preloaded"), container("", "prewarmed", 256),
        container("", "prewarmed", 256), container("ns/starting", "starting", 1024),
        container("ns/(namespace container)", "warm", kind="namespace"), inflight=3))
    assert (report.slots, report.slots_free, report.at) == (8, 5, NOW)
    assert report.warm == {"ns/warm", "ns/busy"}
    assert report.preloaded == {"ns/ahead"}
    assert report.stem_cells == {"demo": 2}
    assert report.namespace_containers == (NamespaceContainer("ns", "demo", frozenset()),)
    # The functions whose adapters a namespace container holds come with it.
    holding = {**container("ns/(namespace container)", "busy", kind="namespace"),
               "functions": ["ns/f", "ns/g"]}
    assert report_of(beat("a", holding)).namespace_containers == (
        NamespaceContainer("ns", "demo", frozenset({"ns/f", "ns/g"})),)
    # Idle containers' memory is free for a new one; busy and starting ones hold theirs.
    assert report.memory_free_mb == 4096 - 512 - 1024
    assert report_of(beat("a", pool_mb=None)).memory_free_mb > 1 << 20


def test_the_order_starts_at_home_then_overflows_along_the_probe_order() -> None:
    f = function()
    order = placer().order(f)
    assert order == home_order(f)
    assert placer().order(function("g"))[0] == home_order(function("g"))[0]


def test_a_warm_invoker_comes_first_and_the_rest_follow_in_overflow_order() -> None:
    f = function()
    away = home_order(f)[-1]
    order = placer(beat(away, container(f.path, "warm"))).order(f)
    assert order[0] == away
    assert order[1:] == [i for i in home_order(f) if i != away]


def test_a_full_invoker_is_passed_over() -> None:
    f = function()
    home, second = home_order(f)[:2]
    assert placer(beat(home, inflight=8)).order(f)[0] == second


def test_a_namespace_container_draws_its_namespaces_functions() -> None:
    f = function()
    away = home_order(f)[-1]
    shared = container("ns/(namespace container)", "warm", kind="namespace")
    assert placer(beat(away, shared)).order(f)[0] == away
    # Only its own namespace's: another namespace's container is no locality of f.
    other = container("other/(namespace container)", "warm", kind="namespace")
    assert placer(beat(away, other)).order(f)[0] == home_order(f)[0]


def test_what_was_sent_counts_until_it_ends_or_the_next_heartbeat() -> None:
    f = function()
    home, second = home_order(f)[:2]
    p = placer(beat(home, container(f.path, "warm"), inflight=7))
    assert p.order(f)[0] == home  # its last free slot
    assert p.order(f)[0] != home  # taken by the first until it ends
    p.ended(home)
    p.seen(beat(second, inflight=8))  # its report: full now (what was sent there is in it)
    assert p.order(f)[0] == home


def test_a_departed_or_silent_invoker_takes_no_work() -> None:
    f = function()
    home = home_order(f)[0]
    p = placer()
    p.gone(home)
    assert home not in p.order(f)
    assert placer(beat(home, at=NOW - 10)).order(f)[0] != home
    assert Placer(clock=lambda: NOW).order(f) == []


def test_live_invokers_tell_their_follower() -> None:
    p = Placer(clock=lambda: NOW)
    live = LiveInvokers(clock=lambda: NOW, follower=p)
    live.seen(beat("a", at=NOW - 60))  # sent by a clock a minute behind: placed all the same
    assert p.order(function()) == ["a"]
    live.gone("a")
    assert p.order(function()) == []
