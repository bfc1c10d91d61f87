"""Routing between functions' own containers and their namespaces' containers
(`lorafaas.invoker.sharing`): which functions may share, and which container each
request goes to; the pool starts one namespace container per namespace and backbone,
never from a stem cell."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from lorafaas.invoker.containers import is_namespace_key
from lorafaas.invoker.metrics import Gauges, InvokerMetrics, render
from lorafaas.invoker.namespace_containers import NamespaceFolders
from lorafaas.invoker.placement import PlacementConfig, SharedContainers
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from lorafaas.invoker.sharing import NamespaceSharing, SharingConfig, shareable
from lorafaas.invoking.activations import ActivationRequest, FunctionRef
from lorafaas.names import QualifiedName
from tests.unit.test_invoker_metrics import parse, value

MOUNTS = BackboneMounts(Path("/run/bb/attach.sock"), Path("/dev/shm/lorafaas/demo"))


def adapter(folder: Path, **config: object) -> Path:
    """An adapter folder with this config (no weights: only the config is read)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
    return folder


def request(namespace: str, name: str, adapter_dir: Path) -> ActivationRequest:
    """A request of `namespace`'s function `name`."""
    function = FunctionRef(f"{namespace}/{name}@0.0.1:x", QualifiedName.from_path(f"{namespace}/{name}"), adapter_dir,
                           1024)
    return ActivationRequest(f"{name}-1", namespace, name, "0.0.1", namespace, function, {},
                             {"timeout": 1000, "max_tokens": 4}, 0.0)


def sharing(mode: SharedContainers, tmp_path: Path) -> NamespaceSharing:
    config = PoolConfig(invoker_id="unit", image="img", run_dir=tmp_path / "run",
                        pids_limit=8, start_timeout_s=1, max_instances=4)
    pool = ContainerPool(None, config, MOUNTS)  # type: ignore[arg-type]
    # Thresholds no unit traffic reaches: every function that may share shares.
    placement = PlacementConfig(mode=mode, own_at=1000.0, share_at=999.0)
    return NamespaceSharing(SharingConfig(placement, memory_mb=3000), pool)


def test_only_plain_lora_without_a_tokenizer_shares(tmp_path: Path) -> None:
    assert shareable(adapter(tmp_path / "plain", r=8, bias="none"))
    assert not shareable(adapter(tmp_path / "dora", use_dora=True))
    assert not shareable(adapter(tmp_path / "bias", bias="all"))
    assert not shareable(adapter(tmp_path / "prefix", peft_type="PREFIX_TUNING"))
    tokenizer = adapter(tmp_path / "tokenizer")
    (tokenizer / "tokenizer.json").write_text("{}")
    assert not shareable(tokenizer)
    assert not shareable(tmp_path / "missing")


def test_each_namespace_has_its_own_container_and_the_others_keep_theirs(
        tmp_path: Path) -> None:
    routes = sharing(SharedContainers.NAMESPACE, tmp_path)
    plain = adapter(tmp_path / "plain")
    a, b = routes.route(request("alice", "a", plain)), routes.route(request("alice", "b", plain))
    c = routes.route(request("bob", "c", plain))
    assert a == b and is_namespace_key(a.key) and a.memory_mb == 3000
    assert is_namespace_key(c.key) and c.key != a.key  # never across namespaces
    dora = request("alice", "d", adapter(tmp_path / "dora", use_dora=True))
    assert routes.route(dora) == dora.function  # not servable there: its own containers
    assert set(routes.placements()) == {"alice/a@0.0.1:x", "alice/b@0.0.1:x", "bob/c@0.0.1:x"}
    routes.forget("alice/a@")
    assert set(routes.placements()) == {"alice/b@0.0.1:x", "bob/c@0.0.1:x"}


def test_off_keeps_every_function_on_its_own_containers(tmp_path: Path) -> None:
    routes = sharing(SharedContainers.OFF, tmp_path)
    one = request("alice", "a", adapter(tmp_path / "plain"))
    assert routes.route(one) == one.function


def test_the_pool_starts_a_namespace_container_with_its_folders_and_no_stem_cell(
        tmp_path: Path) -> None:
    routes = sharing(SharedContainers.NAMESPACE, tmp_path)
    target = routes.route(request("alice", "a", adapter(tmp_path / "plain")))
    pool = routes.pool
    assert pool._claim_stem(target) is None and not pool._stem_coming(target)
    assert pool.namespace_start is not None
    folders, spec = pool.namespace_start(tmp_path / "ns", target, MOUNTS)
    assert isinstance(folders, NamespaceFolders) and folders.namespace == "alice"
    assert spec.environment["LORAFAAS_RUNTIME_MODE"] == "namespace"
    assert spec.memory_mb == 3000
    with pytest.raises(PermissionError):
        folders.add("bob", "bob/c@0.0.1:x", tmp_path / "plain")


def test_metrics_show_each_namespace_container_s_step_composition() -> None:
    steps = {"alice/demo": {"steps": 10, "stepRows": 25, "stepFunctions": 17,
                            "maxFunctionsPerStep": 3}}
    text = render(InvokerMetrics(), Gauges({}, 0, 2, {}, namespace_steps=steps))
    types, samples = parse(text)
    assert types["lorafaas_namespace_step_functions_total"] == "counter"
    assert value(samples, "lorafaas_namespace_steps_total", container="alice/demo") == 10
    assert value(samples, "lorafaas_namespace_step_requests_total", container="alice/demo") == 25
    assert value(samples, "lorafaas_namespace_step_functions_total",
                 container="alice/demo") == 17
    assert value(samples, "lorafaas_namespace_max_functions_per_step",
                 container="alice/demo") == 3


def test_one_function_linked_in_from_many_threads_at_once_appears_once_and_whole(
        tmp_path: Path) -> None:
    # The requests of one batch link their function in concurrently, each on its own thread.
    source = adapter(tmp_path / "src")
    folders = NamespaceFolders(tmp_path / "c" / "abc", "guest")
    folders.create()
    with ThreadPoolExecutor(8) as threads:
        slots = list(threads.map(lambda _: folders.add("guest", "guest/f@0.0.1", source),
                                 range(16)))
    assert len(set(slots)) == 1
    assert [p.name for p in folders.adapters.iterdir()] == slots[:1]  # no staging left
    assert sorted(p.name for p in (folders.adapters / slots[0]).iterdir()) == \
        sorted(p.name for p in source.iterdir())


def test_a_function_with_a_handler_or_a_code_action_never_shares(tmp_path: Path) -> None:
    # Thresholds make every function that may share go to its namespace's container.
    routes = sharing(SharedContainers.NAMESPACE, tmp_path)
    handled = adapter(tmp_path / "handled")
    (handled / "__main__.py").write_text("def main(args, llm):\n    return {}\n")
    assert not shareable(handled)  # the folder alone keeps it out
    with_handler = request("alice", "h", handled)
    with_handler = replace(with_handler, function=replace(with_handler.function,
                                                          has_handler=True))
    code = request("alice", "py", handled)
    code = replace(code, function=replace(code.function, kind="python:3"))
    for _ in range(50):
        assert routes.route(with_handler) == with_handler.function
        assert routes.route(code) == code.function
    assert routes.placements() == {}
    # Even asked directly, a namespace container refuses to link such a folder in.
    folders = NamespaceFolders(tmp_path / "c" / "ns", "alice")
    folders.create()
    with pytest.raises(PermissionError, match="handler"):
        folders.add("alice", with_handler.function.key, handled)


def test_shared_ref_names_the_namespace_that_last_invoked_a_shared_function(
        tmp_path: Path) -> None:
    shared = sharing(SharedContainers.NAMESPACE, tmp_path)
    folder = adapter(tmp_path / "f", r=4, target_modules=["q_proj"])
    alone = sharing(SharedContainers.OFF, tmp_path / "off")
    first = request("alice", "f", folder)
    assert shared.shared_ref(first.function) is None  # never invoked: nothing to pre-load
    shared.route(first)
    ref = shared.shared_ref(first.function)
    assert ref is not None and ref.key == "namespace:alice/default"
    alone.route(first)
    assert alone.shared_ref(first.function) is None


def test_a_record_s_batch_size_is_the_largest_step_the_runtime_counted() -> None:
    from lorafaas.invoker.batch_runner import step_batch_size

    assert step_batch_size({"batchSize": 5, "ttft": 1.0}, 1) == 5
    assert step_batch_size({"ttft": 1.0}, 3) == 3  # a batch form: the requests sent together
    assert step_batch_size({"batchSize": True}, 2) == 2  # not a count


def test_start_kinds_in_a_namespace_container() -> None:
    from lorafaas.invoker.invoker import _start_kind
    from lorafaas.invoker.pool import Lease

    def kind(start: str, **timings: object) -> str | None:
        return _start_kind(Lease(None, start, {}, 0.0), timings)  # type: ignore[arg-type]

    assert kind("warm", adapterLoaded=False) == "adapter"
    assert kind("preloaded", adapterLoaded=False) == "adapter"  # another's pre-load
    assert kind("warm", adapterLoaded=True, adapterPreloaded=True) == "preloaded"
    assert kind("preloaded", adapterLoaded=True, adapterPreloaded=True) == "preloaded"
    assert kind("warm", adapterLoaded=True) == "warm"
    assert kind("cold", adapterLoaded=False) == "cold"  # the container started for it
    assert kind("preloaded") == "preloaded"  # a function's own pre-loaded container
