"""The controller reaches invokers only through `lorafaas.invoking`: no handler imports the
invoker, and a second implementation of the interface drives the controller's invoke path."""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.billing.prices import price_sheet
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.throttle import InvocationThrottle, NamespaceLimits
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
)
from lorafaas.invoking.client import FunctionView, InvokerClient, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions, upgrade
from lorafaas.registry.models import Action, Activation, PendingInvocation, UsageRecord
from lorafaas.registry.namespaces import Identity
from lorafaas.settings import load_settings

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "lorafaas"
WIRING = PACKAGE / "controller" / "app.py"  # builds the in-process invoker, and only it
DIGEST = "d" * 64


def imported_modules(source: Path) -> set[str]:
    """Every module a source file imports, at its top or inside a function."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def reaching(sources: Iterator[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """The sources that import any of the forbidden packages, with what they import."""
    found = {}
    for source in sources:
        bad = sorted(m for m in imported_modules(source)
                     if any(m == p or m.startswith(p + ".") for p in forbidden))
        if bad:
            found[str(source.relative_to(PACKAGE))] = bad
    return found


def test_the_import_check_sees_the_wiring_modules_imports() -> None:
    # The one exception exists and is caught by the check, so the check can fail.
    assert "lorafaas.invoker.local" in imported_modules(WIRING)


def test_no_controller_or_console_module_imports_the_invoker_but_the_wiring() -> None:
    sources = [*(PACKAGE / "controller").rglob("*.py"), *(PACKAGE / "console").rglob("*.py")]
    found = reaching(iter(s for s in sources if s != WIRING), ("lorafaas.invoker",))
    assert found == {}


def test_the_seams_package_imports_neither_side() -> None:
    found = reaching((PACKAGE / "invoking").rglob("*.py"),
                     ("lorafaas.invoker", "lorafaas.controller", "lorafaas.console",
                      "lorafaas.registry", "lorafaas.billing"))
    assert found == {}


class FakeInvoker:
    """A second implementation of the seam: echoes the prompt, word by word when streamed."""

    def __init__(self) -> None:
        self.requests: list[ActivationRequest] = []
        self.prepared: list[FunctionRef] = []
        self.retired: list[str] = []

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        self.requests.append(request)
        words = str(request.parameters["prompt"]).split()
        if on_delta is not None:
            for word in words:
                await on_delta(word + " ")
        started = int(time.time() * 1000)
        result = {"text": " ".join(words), "finish_reason": "stop",
                  "usage": {"prompt_tokens": len(words), "completion_tokens": len(words)}}
        return ActivationResult(started, started + 7, 0,
                                {"status": "success", "statusCode": 0, "success": True,
                                 "result": result},
                                ["fake: ran"], [{"key": "startKind", "value": "warm"},
                                                {"key": "waitTime", "value": 1},
                                                {"key": "limits", "value": request.limits}],
                                timings={"ttft": 2.0, "prefill": 1.0, "decode": 4.0})

    async def retire(self, name: QualifiedName) -> None:
        self.retired.append(str(name))

    def prepare(self, function: FunctionRef) -> None:
        self.prepared.append(function)

    def describe_function(self, function: FunctionRef) -> FunctionView:
        return FunctionView([], {}, {})

    def snapshot(self) -> InvokerSnapshot:
        return InvokerSnapshot([], None, [])

    def metrics(self) -> MetricsText:
        return MetricsText("", "text/plain")


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A registry in a SQLite file, built by the migrations."""
    url = f"sqlite:///{tmp_path}/registry.db"
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    yield make_sessions(engine)
    await engine.dispose()


@pytest.fixture
def fake() -> FakeInvoker:
    """The fake invoker."""
    return FakeInvoker()


@pytest.fixture
def service(sessions: async_sessionmaker[AsyncSession], fake: FakeInvoker,
            tmp_path: Path) -> InvocationService:
    """The controller's invocation service on the fake invoker."""
    invoker: InvokerClient = fake  # it implements the whole interface
    prices = price_sheet(load_settings({"LORAFAAS_HOME": str(tmp_path)}))
    return InvocationService(sessions, ArtifactStore(tmp_path / "artifacts"), invoker,
                             InvocationThrottle(NamespaceLimits(60, 10)), set(), prices=prices)


GUEST = Identity(subject="guest", namespace="guest", namespace_id=1, key_uuid="u")
ECHO = Action(name="echo", version="0.0.3", artifact_digest=DIGEST, exec_kind="lora",
              limits={"memory": 256, "timeout": 60_000, "max_tokens": 64},
              parameters=[{"key": "max_tokens", "value": 8}],
              annotations=[{"key": "backbone", "value": "tiny"},
                           {"key": "adapter", "value": {"rank": 8}}])


async def test_an_invocation_is_run_by_the_invoker_and_its_record_stored(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    invocation = await service.start(GUEST, ECHO, {"prompt": "over the seam"}, durable=False)
    row = await invocation.task
    (request,) = fake.requests
    assert request.activation_id == invocation.activation_id
    assert request.function == FunctionRef(
        key=f"guest/echo@0.0.3:{DIGEST}", name=QualifiedName.from_path("guest/echo"),
        adapter_dir=tmp_path / "artifacts" / DIGEST, memory_mb=256, adapter_digest=DIGEST,
        backbone="tiny", adapter_rank=8)
    assert request.parameters == {"max_tokens": 8, "prompt": "over the seam"}
    async with sessions() as session:
        stored = await session.scalar(select(Activation))
        usage = list(await session.scalars(select(UsageRecord)))
    assert stored is not None and stored.activation_id == row.activation_id
    assert stored.response["result"]["text"] == "over the seam"
    assert stored.logs == ["fake: ran"]
    assert "cost" in {a["key"] for a in stored.annotations}
    assert [u.activation_id for u in usage] == [invocation.activation_id]


async def test_a_streamed_invocation_hands_each_delta_to_the_caller(
        service: InvocationService) -> None:
    deltas: list[str] = []

    async def sink(text: str) -> None:
        deltas.append(text)

    invocation = await service.start(GUEST, ECHO, {"prompt": "one two three"}, sink,
                                     durable=False)
    await invocation.task
    assert deltas == ["one ", "two ", "three "]


async def test_a_durable_invocations_pending_row_goes_with_its_record(
        service: InvocationService, sessions: async_sessionmaker[AsyncSession]) -> None:
    invocation = await service.start(GUEST, ECHO, {"prompt": "kept"})
    await invocation.task
    async with sessions() as session:
        assert list(await session.scalars(select(PendingInvocation))) == []
        assert await session.get(Activation, invocation.activation_id) is not None


async def test_the_answer_comes_before_the_record_is_committed_and_reads_wait_for_it(
        service: InvocationService, sessions: async_sessionmaker[AsyncSession]) -> None:
    invocation = await service.start(GUEST, ECHO, {"prompt": "answered first"}, durable=False)
    answered = await invocation.answer
    assert answered.response["result"]["text"] == "answered first"
    assert not invocation.task.done()  # the record is still to be committed
    # A read that follows the answer waits for the commit, and so finds the record.
    await service.settled("guest", invocation.activation_id)
    assert invocation.task.done()
    async with sessions() as session:
        stored = await session.get(Activation, invocation.activation_id)
    assert stored is not None and stored.response == answered.response
    await service.settled("guest")  # nothing left to wait for
