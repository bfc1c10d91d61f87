"""Sequences over the invoker seam: the orchestration and the create checks, on a real
SQLite registry and the seam's fake invoker (tests/integration/test_sequences_web.py runs
them on Docker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.protocol import LORA_KIND
from lorafaas.controller.sequence_actions import (
    Component,
    SequenceBody,
    parse_component,
    put_sequence,
)
from lorafaas.controller.sequences import lora_parameters
from lorafaas.errors import BadRequest, Forbidden
from lorafaas.invoking.activations import ActivationRequest, ActivationResult, DeltaSink
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Action, Activation, Artifact, Namespace, PendingInvocation
from lorafaas.registry.namespaces import Identity
from tests.unit.test_invoker_seam import DIGEST, FakeInvoker, service, sessions

__all__ = ["service", "sessions"]  # the seam test's fixtures, used here

LIMITS = {"memory": 256, "timeout": 60_000, "max_tokens": 64}


class FailingFake(FakeInvoker):
    """The seam's fake, answering an application error for a prompt holding `fail`."""

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        result = await super().run(request, on_delta)
        if "fail" not in str(request.parameters.get("prompt")):
            return result
        return ActivationResult(result.start_ms, result.end_ms, 1,
                                {"status": "application error", "statusCode": 1,
                                 "success": False, "result": {"error": "it failed"}},
                                [], result.annotations)


@pytest.fixture
def fake() -> FakeInvoker:
    """The fake invoker that fails on request."""
    return FailingFake()


@pytest.fixture
async def guest(sessions: async_sessionmaker[AsyncSession]) -> Identity:
    """The namespace `guest` with two echo actions, `a` (256 MB) and `b` (512 MB)."""
    async with sessions() as session, session.begin():
        namespace = Namespace(name="guest", created_ms=0)
        session.add_all([namespace, Artifact(digest=DIGEST, size_bytes=1, ref_count=2,
                                             created_ms=0)])
        await session.flush()
        for name, memory in (("a", 256), ("b", 512)):
            await action_rows.put_action(
                session, namespace, QualifiedName("guest", None, name), action_rows.ActionSpec(
                    LORA_KIND, DIGEST, [{"key": "max_tokens", "value": 8}], [],
                    {**LIMITS, "memory": memory}, False), False, 5)
        return Identity(subject="guest", namespace="guest", namespace_id=namespace.id,
                        key_uuid="u")


async def create(sessions: async_sessionmaker[AsyncSession], identity: Identity, name: str,
                 components: list[str], overwrite: bool = False) -> Action:
    """Store a sequence through the create checks."""
    body = SequenceBody([parse_component(c, identity.namespace) for c in components], [], [],
                        dict(LIMITS), False)
    async with sessions() as session, session.begin():
        action, _ = await put_sequence(session, identity,
                                       QualifiedName(identity.namespace, None, name), body,
                                       overwrite, 5)
        return action


async def records(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Activation]:
    """Every stored activation record by id."""
    async with sessions() as session:
        return {row.activation_id: row for row in await session.scalars(select(Activation))}


def annotations_of(row: Activation) -> dict[str, Any]:
    """A record's annotations as a dict."""
    return {a["key"]: a["value"] for a in row.annotations}


async def test_each_components_result_is_the_next_ones_parameters(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/_/b"])
    assert sequence.components == ["/guest/a", "/guest/b"] and sequence.artifact_digest is None
    invocation = await service.start(guest, sequence, {"prompt": "ahoy there"}, durable=False)
    row = await invocation.task
    first, second = fake.requests
    assert second.parameters["prompt"] == "ahoy there"  # the first's text, as the prompt
    assert second.parameters["usage"] == {"prompt_tokens": 2, "completion_tokens": 2}
    assert row.logs == [first.activation_id, second.activation_id]
    assert row.response["result"]["text"] == "ahoy there" and row.status_code == 0
    assert annotations_of(row) == {"topmost": True, "path": "guest/chain", "kind": "sequence",
                                "limits": {"timeout": 60_000, "memory": 512, "logs": 10,
                                           "concurrency": 1}}
    stored = await records(sessions)
    assert set(stored) == {row.activation_id, first.activation_id, second.activation_id}
    for request in (first, second):
        component = stored[request.activation_id]
        assert component.cause == row.activation_id
        assert annotations_of(component)["causedBy"] == "sequence"
    assert stored[row.activation_id].cause is None
    assert row.start_ms <= stored[first.activation_id].start_ms <= row.end_ms
    assert row.duration_ms == 14  # OpenWhisk's: the components' durations (the fake's 7 ms)


async def test_a_component_in_a_package_runs_through_a_binding_with_its_parameters(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    async with sessions() as session, session.begin():
        namespace = await session.get(Namespace, guest.namespace_id)
        assert namespace is not None
        await package_rows.put_package(session, namespace, "p", package_rows.PackageSpec(
            parameters=[{"key": "temperature", "value": 0.5}]), False)
        await package_rows.put_package(session, namespace, "bound", package_rows.PackageSpec(
            parameters=[{"key": "top_p", "value": 0.9}],
            binding=QualifiedName("guest", None, "p")), False)
        await action_rows.put_action(session, namespace, QualifiedName("guest", "p", "c"),
                                     action_rows.ActionSpec(LORA_KIND, DIGEST, [], [],
                                                            dict(LIMITS), False), False, 5)
    sequence = await create(sessions, guest, "chain", ["/guest/p/c", "/_/bound/c"])
    assert sequence.components == ["/guest/p/c", "/guest/bound/c"]
    row = await (await service.start(guest, sequence, {"prompt": "ahoy"}, durable=False)).task
    first, second = fake.requests
    assert row.status_code == 0 and row.logs == [first.activation_id, second.activation_id]
    assert str(first.function.name) == "guest/p/c" and first.parameters["temperature"] == 0.5
    assert str(second.function.name) == "guest/bound/c"
    assert second.parameters["temperature"] == 0.5 and second.parameters["top_p"] == 0.9


async def test_a_sequence_in_a_package_runs_with_its_packages_parameters(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    async with sessions() as session, session.begin():
        namespace = await session.get(Namespace, guest.namespace_id)
        assert namespace is not None
        await package_rows.put_package(session, namespace, "p", package_rows.PackageSpec(
            parameters=[{"key": "temperature", "value": 0.5}, {"key": "top_p", "value": 0.1},
                        {"key": "seed", "value": 3}]), False)
        name = QualifiedName("guest", "p", "chain")
        body = SequenceBody([parse_component("/_/a", "guest")],
                            [{"key": "top_p", "value": 0.9}], [], dict(LIMITS), False)
        sequence, _ = await put_sequence(session, guest, name, body, False, 5)
        resolved = await package_rows.resolve_action(session, name, sequence)
    row = await (await service.start(guest, sequence, {"prompt": "ahoy", "seed": 4},
                                     durable=False, resolved=resolved)).task
    (first,) = fake.requests
    # OpenWhisk's order: package < the sequence's own < the invocation's.
    assert (first.parameters["temperature"], first.parameters["top_p"],
            first.parameters["seed"]) == (0.5, 0.9, 4)
    assert annotations_of(row)["path"] == "guest/p/chain" and row.status_code == 0


async def test_a_failing_component_ends_the_sequence_with_its_error(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/guest/b"])
    row = await (await service.start(guest, sequence, {"prompt": "fail now"},
                                     durable=False)).task
    (only,) = fake.requests
    assert row.logs == [only.activation_id]
    assert row.status_code == 1 and row.response["result"] == {"error": "it failed"}


async def test_a_deleted_component_ends_the_sequence_when_it_is_reached(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/guest/b"])
    async with sessions() as session, session.begin():
        await action_rows.delete_action(session, guest.namespace_id, QualifiedName("guest", None, "b"))
    row = await (await service.start(guest, sequence, {"prompt": "hi"}, durable=False)).task
    assert len(fake.requests) == 1 and len(row.logs) == 1
    assert row.response["result"] == {"error": "Sequence component does not exist."}


async def test_a_nested_sequence_has_its_own_record_caused_by_the_outer_one(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    await create(sessions, guest, "inner", ["/guest/a", "/guest/b"])
    outer = await create(sessions, guest, "outer", ["/guest/inner", "/guest/a"])
    row = await (await service.start(guest, outer, {"prompt": "deep"}, durable=False)).task
    assert len(fake.requests) == 3
    stored = await records(sessions)
    inner = stored[row.logs[0]]
    assert inner.name == "inner" and inner.cause == row.activation_id
    assert annotations_of(inner)["topmost"] is False
    assert annotations_of(inner)["causedBy"] == "sequence"
    assert inner.logs == [r.activation_id for r in fake.requests[:2]]
    assert row.logs[1] == fake.requests[2].activation_id


async def test_a_refused_first_component_refuses_the_sequence_before_it_runs(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/guest/b"])
    with pytest.raises(BadRequest, match="prompt"):
        await service.start(guest, sequence, {"max_tokens": 4}, durable=False)
    assert fake.requests == [] and await records(sessions) == {}
    assert service.throttle.in_flight("guest") == 0


async def test_the_components_run_under_the_sequences_admission(
        service: InvocationService, sessions: async_sessionmaker[AsyncSession],
        guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/guest/b"])
    service.throttle.limits = type(service.throttle.limits)(60, 1)  # one at a time
    row = await (await service.start(guest, sequence, {"prompt": "x"}, durable=False)).task
    assert row.status_code == 0 and len(row.logs) == 2
    assert service.throttle.in_flight("guest") == 0


@pytest.mark.parametrize(("components", "message"), [
    (["/guest/a", "/guest/missing"], "Sequence component does not exist."),
    (["/guest/a", "/guest/chain"], "Sequence may not refer to itself."),
    (["/guest/a", "guest"], "must contain at least the namespace and the name"),
    (["/guest/pkg/a"], "Sequence component does not exist."),  # no package pkg
    (["/guest/pkg/a/b"], "must contain at least the namespace and the name"),
])
async def test_create_refusals_name_the_problem_and_store_nothing(
        sessions: async_sessionmaker[AsyncSession], guest: Identity,
        components: list[str], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        await create(sessions, guest, "chain", components)
    # OpenWhisk's own messages, word for word; a malformed name is named in ours.
    got = refused.value.message
    assert got == message if message.endswith(".") else message in got, got
    async with sessions() as session:
        assert await action_rows.find_action(
            session, guest.namespace_id, QualifiedName("guest", None, "chain")) is None


async def test_an_update_making_a_cycle_through_a_nested_sequence_is_refused(
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    await create(sessions, guest, "inner", ["/guest/a"])
    await create(sessions, guest, "outer", ["/guest/inner"])
    with pytest.raises(BadRequest, match="may not refer to itself"):
        await create(sessions, guest, "inner", ["/guest/outer"], overwrite=True)


async def test_a_component_of_another_namespace_is_forbidden(
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    with pytest.raises(Forbidden, match="/other/a"):
        await create(sessions, guest, "chain", ["/other/a"])


async def other_namespace(sessions: async_sessionmaker[AsyncSession]) -> Namespace:
    """The namespace `other` with the action `c` in a published package `shared` and in an
    unpublished one `closed` (each with the parameter temperature 0.25)."""
    async with sessions() as session, session.begin():
        other = Namespace(name="other", created_ms=0)
        session.add(other)
        await session.flush()
        for package, publish in (("shared", True), ("closed", False)):
            await package_rows.put_package(session, other, package, package_rows.PackageSpec(
                parameters=[{"key": "temperature", "value": 0.25}], publish=publish), False)
            await action_rows.put_action(
                session, other, QualifiedName("other", package, "c"), action_rows.ActionSpec(
                    LORA_KIND, DIGEST, [], [], dict(LIMITS), False), False, 5)
        return other


async def unpublish(sessions: async_sessionmaker[AsyncSession], other: Namespace) -> None:
    """Stop sharing `other`'s package `shared`."""
    async with sessions() as session, session.begin():
        shared = await package_rows.find_package(session, other.id, "shared")
        assert shared is not None
        shared.publish = False


async def test_a_component_of_another_namespaces_published_package_runs_for_the_caller(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    other = await other_namespace(sessions)
    with pytest.raises(Forbidden, match="/other/closed/c"):
        await create(sessions, guest, "chain", ["/guest/a", "/other/closed/c"])
    with pytest.raises(BadRequest, match="does not exist"):
        await create(sessions, guest, "chain", ["/other/shared/absent"])
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/other/shared/c"])
    row = await (await service.start(guest, sequence, {"prompt": "ahoy"}, durable=False)).task
    assert row.status_code == 0, row.response
    _, second = fake.requests
    # Run for the caller, in the caller's namespace, with the package's parameters.
    assert second.namespace == "guest" and second.parameters["temperature"] == 0.25
    assert second.function.name.namespace == "guest"
    stored = (await records(sessions))[second.activation_id]
    assert stored.namespace == "guest" and annotations_of(stored)["path"] == "other/shared/c"
    assert "binding" not in annotations_of(stored)
    await unpublish(sessions, other)  # unshared since: no longer reached
    row = await (await service.start(guest, sequence, {"prompt": "again"}, durable=False)).task
    assert row.response["result"] == {"error": "Sequence component does not exist."}


async def test_more_components_than_the_limit_are_refused(
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    await create(sessions, guest, "ten", ["/guest/a"] * 10)
    with pytest.raises(BadRequest, match="Too many actions in the sequence."):
        await create(sessions, guest, "sixty", ["/guest/ten"] * 6)


def test_a_lora_components_prompt_is_the_previous_text_unless_one_is_given() -> None:
    lora = Action(name="x", exec_kind=LORA_KIND)
    other = Action(name="y", exec_kind="python:3")
    assert lora_parameters({"text": "t", "usage": {}}, lora) == \
        {"text": "t", "usage": {}, "prompt": "t"}
    assert lora_parameters({"text": "t", "prompt": "p"}, lora) == {"text": "t", "prompt": "p"}
    assert lora_parameters({"text": "t", "messages": []}, lora) == {"text": "t", "messages": []}
    assert lora_parameters({"text": "t"}, other) == {"text": "t"}
    assert str(Component(QualifiedName("guest", None, "a"))) == "/guest/a"
    assert str(Component(QualifiedName("guest", "p", "a"))) == "/guest/p/a"



async def test_a_non_blocking_sequence_is_durable_and_resumed_after_a_stop(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    sequence = await create(sessions, guest, "chain", ["/guest/a", "/guest/b"])
    accepted = await service.start(guest, sequence, {"prompt": "kept"})  # durable
    await accepted.task
    async with sessions() as session:
        assert list(await session.scalars(select(PendingInvocation))) == []
    async with sessions() as session, session.begin():  # as a crash leaves one behind
        session.add(PendingInvocation(activation_id="e" * 32, namespace="guest",
                                      action="chain", subject="guest",
                                      parameters={"prompt": "again"}, received_ms=1))
    assert await service.resume_pending() == 1
    await asyncio.gather(*service.tasks)
    stored = await records(sessions)
    assert stored["e" * 32].name == "chain" and len(stored["e" * 32].logs) == 2
    assert fake.requests[-1].parameters["prompt"] == "again"
    async with sessions() as session:
        assert list(await session.scalars(select(PendingInvocation))) == []


async def test_a_shared_actions_pending_invocation_resumes_by_its_full_name_while_shared(
        service: InvocationService, fake: FakeInvoker,
        sessions: async_sessionmaker[AsyncSession], guest: Identity) -> None:
    other = await other_namespace(sessions)
    name = QualifiedName("other", "shared", "c")
    async with sessions() as session:
        resolved = await package_rows.resolve_shared(session, "guest", name)
    accepted = await service.start(guest, resolved.action, {"prompt": "kept"},
                                   resolved=resolved)  # durable: its pending row first
    assert accepted.durability.pending.action == "/other/shared/c"  # resolved so again
    await accepted.task
    async with sessions() as session, session.begin():  # as a crash leaves them behind
        for letter in "ef":
            session.add(PendingInvocation(activation_id=letter * 32, namespace="guest",
                                          action="/other/shared/c", subject="guest",
                                          parameters={"prompt": "again"}, received_ms=1))
    assert await service.resume_pending() == 2
    await asyncio.gather(*service.tasks)
    stored = await records(sessions)
    assert {stored[i * 32].namespace for i in "ef"} == {"guest"}
    assert fake.requests[-1].function.name == fake.requests[0].function.name
    assert fake.requests[0].function.name.namespace == "guest"
    await unpublish(sessions, other)
    async with sessions() as session, session.begin():
        session.add(PendingInvocation(activation_id="d" * 32, namespace="guest",
                                      action="/other/shared/c", subject="guest",
                                      parameters={"prompt": "again"}, received_ms=1))
    assert await service.resume_pending() == 0  # unshared since: dropped, never run
    async with sessions() as session:
        assert list(await session.scalars(select(PendingInvocation))) == []
