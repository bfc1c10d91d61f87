"""Packages in the registry on SQLite and PostgreSQL: OpenWhisk's rules for packages and
bindings, resolution of a name through a binding, parameters in OpenWhisk's order, and
migration 0006 down and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.invocations import merged_parameters
from lorafaas.errors import BadRequest, Conflict, Forbidden, NotFound
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.artifacts import StoredAdapter, add_reference
from lorafaas.registry.db import downgrade, make_engine, make_sessions, sync_url, upgrade
from lorafaas.registry.models import Namespace, Package
from lorafaas.registry.namespaces import create_namespace, delete_namespace, find_namespace
from lorafaas.registry.packages import PackageSpec

DIGEST = "c" * 64
# As the store reports one (only digest and size reach the registry).
STORED = StoredAdapter(digest=DIGEST, directory=None, size_bytes=1,  # type: ignore[arg-type]
                       summary=None, created=True)  # type: ignore[arg-type]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test's registry."""
    engine = make_engine(database_url)
    yield make_sessions(engine)
    await engine.dispose()


async def namespace_row(session: AsyncSession, name: str) -> Namespace:
    """The namespace `name`, created when absent."""
    found = await find_namespace(session, name)
    if found is None:
        await create_namespace(session, name)
        found = await find_namespace(session, name)
    assert found is not None
    return found


async def put_action(session: AsyncSession, name: QualifiedName,
                     parameters: list[dict[str, object]] | None = None) -> None:
    """An action row as the action service writes one (its package checked first)."""
    namespace = await namespace_row(session, name.namespace)
    await package_rows.writable_package(session, namespace.id, name)
    await add_reference(session, STORED)
    spec = action_rows.ActionSpec("lora", DIGEST, parameters or [], [], {"memory": 256}, False)
    await action_rows.put_action(session, namespace, name, spec, overwrite=False, history=3)


def kv(**values: object) -> list[dict[str, object]]:
    """OpenWhisk's key-value list."""
    return [{"key": key, "value": value} for key, value in values.items()]


async def test_packages_hold_actions_and_refuse_what_openwhisk_refuses(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        guest = await namespace_row(session, "guest")
        created = await package_rows.put_package(session, guest, "sea",
                                                 PackageSpec(parameters=kv(a=1)), False)
        assert (created.version, created.publish, created.parameters) == ("0.0.1", False, kv(a=1))
        await put_action(session, QualifiedName("guest", "sea", "pirate"))
        await put_action(session, QualifiedName("guest", None, "solo"))
    for spec, name, overwrite, error, message in [
        (PackageSpec(), "sea", False, Conflict, "already exists"),
        (PackageSpec(), "default", False, BadRequest, "reserved"),
        (PackageSpec(), "solo", False, Conflict, "not in this collection"),
        (PackageSpec(binding=QualifiedName("guest", None, "absent")), "b", False, BadRequest,
         "does not exist"),
        (PackageSpec(binding=QualifiedName("guest", None, "solo")), "b", False, Conflict,
         "not a package"),
        (PackageSpec(binding=QualifiedName("guest", None, "sea")), "sea", True, Conflict,
         "cannot be converted into a binding"),
    ]:
        async with sessions() as session, session.begin():
            guest = await namespace_row(session, "guest")
            with pytest.raises(error, match=message):
                await package_rows.put_package(session, guest, name, spec, overwrite)
    async with sessions() as session, session.begin():
        guest = await namespace_row(session, "guest")
        with pytest.raises(Conflict, match=r"Package not empty \(contains 1 entity\)"):
            await package_rows.delete_package(session, guest.id, "sea")
        with pytest.raises(Conflict, match="not in this collection"):
            await put_action(session, QualifiedName("guest", None, "sea"))
        with pytest.raises(NotFound):
            await put_action(session, QualifiedName("guest", "nowhere", "x"))
        # An update merges: what it does not send is kept.
        updated = await package_rows.put_package(session, guest, "sea",
                                                 PackageSpec(publish=True), True)
        assert (updated.version, updated.publish, updated.parameters) == ("0.0.2", True, kv(a=1))
    async with sessions() as session:
        names = [p.name for p in await session.scalars(select(Package))]
        assert names == ["sea"]  # the refused ones left nothing


async def test_a_binding_reaches_a_shared_package_for_its_caller(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        guest = await namespace_row(session, "guest")
        bob = await namespace_row(session, "bob")
        await package_rows.put_package(session, guest, "sea",
                                       PackageSpec(parameters=kv(p=1, b=1, a=1, i=1)), False)
        await put_action(session, QualifiedName("guest", "sea", "pirate"), kv(a=3, i=3))
        with pytest.raises(Forbidden, match="guest/sea"):  # not published yet
            await package_rows.put_package(session, bob, "ocean", PackageSpec(
                binding=QualifiedName("guest", None, "sea"), parameters=kv(b=2, i=2)), False)
    async with sessions() as session, session.begin():
        guest, bob = await namespace_row(session, "guest"), await namespace_row(session, "bob")
        assert await package_rows.find_package(session, bob.id, "ocean") is None
        await package_rows.put_package(session, guest, "sea", PackageSpec(publish=True), True)
        binding = await package_rows.put_package(session, bob, "ocean", PackageSpec(
            binding=QualifiedName("guest", None, "sea"), parameters=kv(b=2, i=2)), False)
        assert package_rows.binding_of(binding) == QualifiedName("guest", None, "sea")
        assert {"key": "binding", "value": {"namespace": "guest", "name": "sea"}} in \
            binding.annotations
        with pytest.raises(BadRequest, match="another package binding"):
            await package_rows.put_package(session, bob, "again", PackageSpec(
                binding=QualifiedName("bob", None, "ocean")), False)
        with pytest.raises(BadRequest, match="binding"):
            await put_action(session, QualifiedName("bob", "ocean", "mine"))

    async with sessions() as session:
        called = QualifiedName("bob", "ocean", "pirate")
        resolved = await package_rows.resolve_action(session, called)
        assert resolved.invoked == called
        assert resolved.name == QualifiedName("guest", "sea", "pirate")
        # package < binding < action < invocation
        assert merged_parameters(resolved, {"i": 4}) == {"p": 1, "b": 2, "a": 3, "i": 4}
        with pytest.raises(NotFound):
            await package_rows.resolve_action(session, QualifiedName("bob", "ocean", "none"))

    async with sessions() as session, session.begin():
        guest = await namespace_row(session, "guest")
        await package_rows.put_package(session, guest, "sea", PackageSpec(publish=False), True)
    async with sessions() as session:
        with pytest.raises(NotFound):  # unshared since: the binding reaches nothing
            await package_rows.resolve_action(session, QualifiedName("bob", "ocean", "pirate"))
    async with sessions() as session, session.begin():
        bob = await namespace_row(session, "bob")
        assert (await package_rows.delete_package(session, bob.id, "ocean")).name == "ocean"
        await delete_namespace(session, "guest")
    async with sessions() as session:
        assert [p.name for p in await session.scalars(select(Package))] == []


def test_migration_0006_adds_packages_and_removes_them(database_url: str) -> None:
    engine = create_engine(sync_url(database_url))
    try:
        assert "packages" in inspect(engine).get_table_names()
        assert "package" in {c["name"] for c in inspect(engine).get_columns("actions")}
        downgrade(database_url, "0005")
        engine.dispose()
        assert "packages" not in inspect(engine).get_table_names()
        assert "package" not in {c["name"] for c in inspect(engine).get_columns("actions")}
        upgrade(database_url)
        engine.dispose()
        assert "packages" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
