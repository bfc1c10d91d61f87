"""A namespace container's runtime serves several functions in one continuous decode: each
request's greedy tokens equal peft's for its function alone, whether the requests arrive
together or join a decode already running; a bad adapter fails only its own requests; the
loaded adapters stay within their byte budget."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lorafaas.runtime.generation import GenerationRequest
from lorafaas.runtime.namespace import (
    FunctionUnavailable,
    NamespacePaths,
    NamespaceRuntime,
    load_namespace,
)
from tests.namespace_cases import CONFIGS, PROMPTS, TOKENS, make_adapters, peft_tokens


@pytest.fixture(scope="module")
def namespace(demo_models: Any, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, Path]:
    """The published backbone and a namespace's folder of eight adapters (f0..f7)."""
    from tests.integration.test_family_checkpoints import publish

    root = tmp_path_factory.mktemp("namespace")
    publish(demo_models.backbone_dir, root / "published")
    make_adapters(demo_models.backbone_dir, root / "adapters")
    return root / "published", root / "adapters"


@pytest.fixture(scope="module")
def alone(demo_models: Any, namespace: tuple[Path, Path]) -> list[list[int]]:
    """Each request's tokens from peft with its function's adapter alone."""
    return peft_tokens(demo_models.backbone_dir,
                       [namespace[1] / f"f{i}" for i in range(len(CONFIGS))])


def runtime_of(namespace: tuple[Path, Path], budget: int = 1 << 30) -> NamespaceRuntime:
    """A namespace runtime on a private copy of the published backbone."""
    return load_namespace(NamespacePaths(None, *namespace), "test", budget)


def request(index: int) -> GenerationRequest:
    """Function `index`'s request."""
    return GenerationRequest(PROMPTS[index], max_tokens=TOKENS[index], ignore_eos=True,
                             return_token_ids=True)


def run_one(runtime: NamespaceRuntime, index: int) -> list[int]:
    """One request of function `index`, its adapter pinned while it runs."""
    acquired = runtime.acquire(f"f{index}")
    try:
        result, _ = runtime.view(acquired).run(request(index))
    finally:
        runtime.release(f"f{index}")
    return list(result["token_ids"])


def test_eight_functions_decode_together_as_each_alone(namespace: tuple[Path, Path],
                                                        alone: list[list[int]]) -> None:
    runtime = runtime_of(namespace)
    try:
        views = [runtime.view(runtime.acquire(f"f{i}")) for i in range(8)]
        # Held while they are submitted: the eight are admitted in one prefill.
        futures = runtime.engine.exclusive(
            lambda: [view.submit(request(i)) for i, view in enumerate(views)])
        outcomes = [f.result(timeout=300) for f in futures]
    finally:
        runtime.close()
    assert [o[0]["token_ids"] for o in outcomes] == alone
    assert runtime.steps.max_functions == 8
    assert {o[1]["container"] for o in outcomes} == {"namespace"}
    assert [o[1]["adapterLoaded"] for o in outcomes] == [False] * 8
    assert all(o[1]["adapterLoad"] > 0 for o in outcomes)


def test_staggered_arrivals_join_the_running_decode(namespace: tuple[Path, Path],
                                                     alone: list[list[int]]) -> None:
    runtime = runtime_of(namespace)
    views = [runtime.view(runtime.acquire(f"f{i}")) for i in range(8)]
    later: list[Any] = []
    joined = threading.Event()

    def on_token(ids: list[int]) -> None:  # on the engine's thread, between steps
        if not joined.is_set() and len(ids) == 1:
            tokens_seen.append(ids[0])
            if len(tokens_seen) == 3:  # function 4's third token: the others join now
                joined.set()
                later.extend(views[i].submit(request(i)) for i in (1, 3, 5, 7))

    tokens_seen: list[int] = []
    try:
        first = {i: views[i].submit(request(i), on_token if i == 4 else None)
                 for i in (0, 2, 4, 6)}
        outcomes = {i: f.result(timeout=300) for i, f in first.items()}
        joined.wait(timeout=300)
        outcomes |= {i: f.result(timeout=300) for i, f in zip((1, 3, 5, 7), later,
                                                              strict=True)}
    finally:
        runtime.close()
    assert {i: o[0]["token_ids"] for i, o in outcomes.items()} == dict(enumerate(alone))
    assert runtime.steps.max_functions == 8, "the late four joined the first four's decode"
    assert [outcomes[i][1]["adapterLoaded"] for i in range(8)] == [False] * 8


def test_a_bad_adapter_fails_only_its_own_requests(namespace: tuple[Path, Path],
                                                   alone: list[list[int]],
                                                   tmp_path: Path) -> None:
    runtime = runtime_of(namespace)
    broken = namespace[1] / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "adapter_config.json").write_text((namespace[1] / "f0" / "adapter_config.json")
                                                .read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    try:
        with pytest.raises(FunctionUnavailable, match="broken"):
            runtime.acquire("broken")
        with pytest.raises(FunctionUnavailable, match="not a function's folder"):
            runtime.acquire("../f0")
        with pytest.raises(FunctionUnavailable, match="no adapter"):
            runtime.acquire("missing")
        assert runtime.adapters.loaded() == {}
        assert run_one(runtime, 2) == alone[2]
    finally:
        runtime.close()
        for part in broken.iterdir():
            part.unlink()
        broken.rmdir()


def test_adapters_stay_within_the_budget_and_reload(namespace: tuple[Path, Path],
                                                    alone: list[list[int]]) -> None:
    probe = runtime_of(namespace)
    try:
        sizes = {}
        for i in range(8):
            run_one(probe, i)
            sizes[i] = probe.adapters.loaded()[f"f{i}"]
    finally:
        probe.close()
    budget = sizes[2] + sizes[3]  # the two largest but one fit, not all eight
    runtime = runtime_of(namespace, budget)
    try:
        tokens = [run_one(runtime, i) for i in (2, 3, 0, 1, 2)]
        assert runtime.adapters.bytes <= budget
        # f2 went first (least recently used) when f0 came, and was loaded again at the end.
        assert runtime.adapters.loads == 5 and runtime.adapters.drops >= 2
        assert "f2" in runtime.adapters.loaded(), "the last one used is kept"
    finally:
        runtime.close()
    assert tokens == [alone[2], alone[3], alone[0], alone[1], alone[2]]
