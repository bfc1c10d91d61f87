"""The invoke path's registry access: one query for key, namespace and action, with nothing
cached, so that what one controller changes the next invocation on another one sees; and
commits that do not wait for the disk leave no connection behind that does not either."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.errors import Unauthorized
from lorafaas.names import QualifiedName
from lorafaas.registry.db import commit_unsynced, make_engine, make_sessions
from lorafaas.registry.models import Activation
from lorafaas.registry.namespaces import authenticate_with_action, create_namespace, rotate_key
from tests.integration.test_registry import delete, new_namespace, put


@pytest.fixture
async def two_controllers(database_url: str
                          ) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], ...]]:
    """Two session factories on two engines: two controllers sharing one registry."""
    engines = [make_engine(database_url), make_engine(database_url)]
    yield tuple(make_sessions(engine) for engine in engines)
    for engine in engines:
        await engine.dispose()


async def lookup(sessions: async_sessionmaker[AsyncSession], credential: str,
                 name: str) -> tuple[str, str | None, str | None]:
    """Namespace, and the action's version and digest (None when there is no such action)."""
    async with sessions() as session:
        identity, action = await authenticate_with_action(
            session, credential, QualifiedName.parse(name, "_"))
    if action is None:
        return identity.namespace, None, None
    return identity.namespace, action.version, action.artifact_digest


async def test_each_lookup_sees_the_other_controllers_changes(  # type: ignore[no-untyped-def]
        two_controllers) -> None:
    writer, reader = two_controllers
    namespace = await new_namespace(writer, "alice")
    async with writer() as session, session.begin():
        credential = await rotate_key(session, "alice")
        await put(session, namespace, "summarize", digest="a" * 64)
    assert await lookup(reader, credential, "summarize") == ("alice", "0.0.1", "a" * 64)
    assert await lookup(reader, credential, "other") == ("alice", None, None)

    async with writer() as session, session.begin():
        await put(session, namespace, "summarize", digest="b" * 64, overwrite=True)
    assert await lookup(reader, credential, "summarize") == ("alice", "0.0.2", "b" * 64)

    async with writer() as session, session.begin():
        await delete(session, namespace, "summarize")
        await put(session, namespace, "summarize", digest="a" * 64)  # a new action, same name
    assert await lookup(reader, credential, "summarize") == ("alice", "0.0.1", "a" * 64)

    async with writer() as session, session.begin():
        await delete(session, namespace, "summarize")
    assert await lookup(reader, credential, "summarize") == ("alice", None, None)

    async with writer() as session, session.begin():
        rotated = await rotate_key(session, "alice")
    with pytest.raises(Unauthorized):
        await lookup(reader, credential, "summarize")
    assert (await lookup(reader, rotated, "x"))[0] == "alice"


async def test_a_lookup_finds_only_the_callers_namespaces_action(  # type: ignore[no-untyped-def]
        two_controllers) -> None:
    writer, reader = two_controllers
    bob = await new_namespace(writer, "bob")
    async with writer() as session, session.begin():
        await put(session, bob, "mine")
        carol_key = await create_namespace(session, "carol")
    assert await lookup(reader, carol_key, "mine") == ("carol", None, None)
    user, _, key = carol_key.partition(":")
    for wrong in (f"{user}:{'0' * 64}", f"{'0' * 8}:{key}", user, ""):
        with pytest.raises(Unauthorized):
            await lookup(reader, wrong, "mine")


async def test_an_unsynced_commit_is_committed_and_resets_the_connection(  # type: ignore[no-untyped-def]
        database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    try:
        async with commit_unsynced(sessions) as session:
            session.add(Activation(activation_id="a" * 32, namespace="n", name="x",
                                   version="0.0.1", subject="n", start_ms=1, end_ms=2,
                                   status_code=0, response={}, logs=["line"], annotations=[]))
        async with sessions() as session:
            assert (await session.get(Activation, "a" * 32)) is not None
            if session.get_bind().dialect.name == "sqlite":
                assert (await session.scalar(text("PRAGMA journal_mode"))) == "wal"
                # FULL (2) again on the connection the unsynced commit used (the pool's only
                # idle one), so that other writes still wait for the disk.
                assert (await session.scalar(text("PRAGMA synchronous"))) == 2
            else:
                assert (await session.scalar(text("SHOW synchronous_commit"))) == "on"
    finally:
        await engine.dispose()
