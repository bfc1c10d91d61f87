"""The registry's logic on SQLite and PostgreSQL, called directly with an async session.

Each test gets a fresh database migrated by Alembic (`database_url`, see tests/db_fixtures.py).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from lorafaas.errors import Conflict, NotFound, Unauthorized
from lorafaas.invoker.artifact_loads import ArtifactLoad, LoadEstimate, next_estimate
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import activations as activation_rows
from lorafaas.registry.activations import list_activations
from lorafaas.registry.artifacts import StoredAdapter, add_reference, drop_reference
from lorafaas.registry.db import downgrade, make_engine, make_sessions, sync_url, upgrade
from lorafaas.registry.models import (
    Action,
    ActionVersion,
    Activation,
    Artifact,
    AuthKey,
    Namespace,
)
from lorafaas.registry.namespaces import (
    authenticate,
    create_namespace,
    find_namespace,
    list_namespaces,
    rotate_key,
)
from lorafaas.registry.profiles import (
    all_estimates,
    function_profiles,
    profile_json,
    record_loads,
)

REGISTRY_TABLES = {"namespaces", "auth_keys", "artifacts", "actions", "action_versions",
                   "activations", "pending_invocations", "usage_records", "artifact_profiles",
                   "prefill_profiles", "packages", "triggers", "rules", "alarms", "alarm_ticks"}
HISTORY = 3
DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test's registry."""
    engine = make_engine(database_url)
    yield make_sessions(engine)
    await engine.dispose()


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make each action update one millisecond later than the previous one."""
    ticks = itertools.count(1_700_000_000_000)
    monkeypatch.setattr(action_rows, "now_ms", lambda: next(ticks))
    yield


def stored(digest: str) -> StoredAdapter:
    """An artifact as the store would report it (only digest and size reach the registry)."""
    return StoredAdapter(digest=digest, directory=None, size_bytes=1024,  # type: ignore[arg-type]
                         summary=None, created=True)  # type: ignore[arg-type]


def named(namespace: Namespace, name: str) -> QualifiedName:
    """The action `name` (or `pkg/name`) of a namespace."""
    return QualifiedName.parse(name, namespace.name)


async def put(session: AsyncSession, namespace: Namespace, name: str, digest: str = DIGEST_A,
              overwrite: bool = False) -> Action:
    """Create or update an action the way the action service does: reference first."""
    spec = action_rows.ActionSpec("lora", digest, [{"key": "p", "value": 1}],
                                  [{"key": "backbone", "value": "demo"}], {"timeout": 1000}, False)
    await add_reference(session, stored(digest))
    action, pruned = await action_rows.put_action(session, namespace, named(namespace, name),
                                                  spec, overwrite, HISTORY)
    for previous in pruned:
        await drop_reference(session, previous)
    return action


async def delete(session: AsyncSession, namespace: Namespace, name: str) -> bool:
    """Delete an action and drop its versions' references; True when an artifact went."""
    _, digests = await action_rows.delete_action(session, namespace.id, named(namespace, name))
    return any([await drop_reference(session, digest) for digest in digests])


async def new_namespace(sessions: async_sessionmaker[AsyncSession], name: str) -> Namespace:
    """Create a namespace and return its row."""
    async with sessions() as session, session.begin():
        await create_namespace(session, name)
        namespace = await find_namespace(session, name)
    assert namespace is not None
    return namespace


async def ref_count(sessions: async_sessionmaker[AsyncSession], digest: str) -> int | None:
    """The artifact's reference count as committed, None when it has no row."""
    async with sessions() as session:
        return await session.scalar(select(Artifact.ref_count).where(Artifact.digest == digest))


# Namespaces and keys


async def test_create_namespace_returns_a_credential_stored_only_hashed(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        credential = await create_namespace(session, "alice")
    key_uuid, _, key = credential.partition(":")
    assert str(uuid.UUID(key_uuid)) == key_uuid
    assert len(key) == 64 and int(key, 16) >= 0
    async with sessions() as session:
        row = await session.get(AuthKey, key_uuid)
        assert row is not None
        assert row.key_hash != key and key not in row.key_hash
        identity = await authenticate(session, credential)
    assert (identity.namespace, identity.subject, identity.key_uuid) == ("alice", "alice", key_uuid)


async def test_authenticate_rejects_wrong_unknown_and_malformed_credentials(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        credential = await create_namespace(session, "alice")
    key_uuid, _, key = credential.partition(":")
    wrong_key = f"{key_uuid}:{'0' * 64 if key != '0' * 64 else '1' * 64}"
    unknown_uuid = f"{uuid.uuid4()}:{key}"
    malformed = ["", ":", key_uuid, f"{key_uuid}:", f":{key}", key, "not a credential"]
    async with sessions() as session:
        for bad in [wrong_key, unknown_uuid, *malformed]:
            with pytest.raises(Unauthorized):
                await authenticate(session, bad)


async def test_creating_an_existing_namespace_is_a_conflict(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        with pytest.raises(Conflict, match="alice"):
            await create_namespace(session, "alice")


async def test_rotate_key_replaces_the_old_key(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        old = await create_namespace(session, "alice")
        other = await create_namespace(session, "bob")
    async with sessions() as session, session.begin():
        new = await rotate_key(session, "alice")
    assert new != old
    async with sessions() as session:
        with pytest.raises(Unauthorized):
            await authenticate(session, old)
        assert (await authenticate(session, new)).namespace == "alice"
        assert (await authenticate(session, other)).namespace == "bob"
        keys = await session.scalars(select(AuthKey.uuid).join(Namespace)
                                     .where(Namespace.name == "alice"))
        assert list(keys) == [new.partition(":")[0]]


async def test_rotate_key_of_an_unknown_namespace_is_not_found(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        with pytest.raises(NotFound, match="nobody"):
            await rotate_key(session, "nobody")


async def test_list_namespaces_by_name(sessions: async_sessionmaker[AsyncSession]) -> None:
    for name in ["carol", "alice", "bob"]:
        await new_namespace(sessions, name)
    async with sessions() as session:
        assert [n.name for n in await list_namespaces(session)] == ["alice", "bob", "carol"]


# Actions


async def test_create_update_and_conflict(sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        action = await put(session, namespace, "summarize")
    assert action.version == action_rows.FIRST_VERSION == "0.0.1"
    async with sessions() as session, session.begin():
        with pytest.raises(Conflict):
            await put(session, namespace, "summarize")
    versions = []
    for _ in range(2):
        async with sessions() as session, session.begin():
            versions.append((await put(session, namespace, "summarize", overwrite=True)).version)
    assert versions == ["0.0.2", "0.0.3"]
    async with sessions() as session:
        stored_action = await action_rows.get_action(session, namespace.id, named(namespace, "summarize"))
    assert stored_action.version == "0.0.3"
    assert stored_action.parameters == [{"key": "p", "value": 1}]
    assert stored_action.limits == {"timeout": 1000}


async def test_list_actions_newest_first_with_limit_and_skip(
        sessions: async_sessionmaker[AsyncSession], ticking_clock: None) -> None:
    namespace = await new_namespace(sessions, "alice")
    other = await new_namespace(sessions, "bob")
    async with sessions() as session, session.begin():
        for name in ["a", "b", "c", "d"]:
            await put(session, namespace, name)
        await put(session, other, "elsewhere")
        await put(session, namespace, "b", overwrite=True)  # updated last: listed first
    async with sessions() as session:
        def names(rows: list[Action]) -> list[str]:
            return [row.name for row in rows]

        assert names(await action_rows.list_actions(session, namespace.id, 30, 0)) == \
            ["b", "d", "c", "a"]
        assert names(await action_rows.list_actions(session, namespace.id, 2, 1)) == ["d", "c"]
        assert names(await action_rows.list_actions(session, namespace.id, 30, 4)) == []


async def test_delete_action(sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize")
    async with sessions() as session, session.begin():
        deleted, digests = await action_rows.delete_action(session, namespace.id, named(namespace, "summarize"))
    assert deleted.name == "summarize" and digests == [DIGEST_A]
    async with sessions() as session, session.begin():
        assert await action_rows.find_action(session, namespace.id, named(namespace, "summarize")) is None
        with pytest.raises(NotFound):
            await action_rows.delete_action(session, namespace.id, named(namespace, "summarize"))


async def test_deleting_a_namespace_deletes_its_keys_and_actions(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize")
    async with sessions() as session, session.begin():
        row = await session.get(Namespace, namespace.id)
        await session.delete(row)
    async with sessions() as session:
        assert await session.scalar(select(AuthKey)) is None


# Artifacts


async def test_artifact_shared_by_two_actions_is_counted_and_removed_with_the_last(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        await put(session, namespace, "first")
        await put(session, namespace, "second")
    async with sessions() as session:
        assert await session.scalar(select(Artifact.digest)) == DIGEST_A
        assert len(list(await session.scalars(select(Artifact)))) == 1
    assert await ref_count(sessions, DIGEST_A) == 2
    async with sessions() as session, session.begin():
        assert await delete(session, namespace, "first") is False
    assert await ref_count(sessions, DIGEST_A) == 1
    async with sessions() as session, session.begin():
        assert await delete(session, namespace, "second") is True
    assert await ref_count(sessions, DIGEST_A) is None


async def test_an_update_keeps_the_old_artifact_while_its_version_is_kept(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_A)
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_B, overwrite=True)
    assert await ref_count(sessions, DIGEST_A) == 1  # version 0.0.1 still uses it
    assert await ref_count(sessions, DIGEST_B) == 1
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_B, overwrite=True)
    assert await ref_count(sessions, DIGEST_B) == 2  # one per version


async def versions_of(sessions: async_sessionmaker[AsyncSession], namespace: Namespace,
                      name: str) -> list[tuple[str, str]]:
    """The kept versions of an action, newest first, with their digests."""
    async with sessions() as session:
        action = await action_rows.get_action(session, namespace.id, named(namespace, name))
        rows = await action_rows.list_versions(session, action.id)
    return [(row.version, row.artifact_digest) for row in rows]


async def test_versions_are_recorded_and_pruned_beyond_the_history(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    digests = [DIGEST_A, DIGEST_B, DIGEST_B, "c" * 64]
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", digests[0])
    for digest in digests[1:HISTORY]:
        async with sessions() as session, session.begin():
            await put(session, namespace, "summarize", digest, overwrite=True)
    assert await versions_of(sessions, namespace, "summarize") == [
        ("0.0.3", DIGEST_B), ("0.0.2", DIGEST_B), ("0.0.1", DIGEST_A)]
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", digests[HISTORY], overwrite=True)
    # 0.0.1 went beyond the history, and with it the last reference to DIGEST_A.
    assert await versions_of(sessions, namespace, "summarize") == [
        ("0.0.4", "c" * 64), ("0.0.3", DIGEST_B), ("0.0.2", DIGEST_B)]
    assert await ref_count(sessions, DIGEST_A) is None
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_A, overwrite=True)
    assert await ref_count(sessions, DIGEST_B) == 1  # 0.0.2 went, 0.0.3 still uses it
    assert await ref_count(sessions, DIGEST_A) == 1


async def test_deleting_an_action_deletes_its_versions_and_their_references(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace = await new_namespace(sessions, "alice")
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_A)
        await put(session, namespace, "other", DIGEST_B)
    async with sessions() as session, session.begin():
        await put(session, namespace, "summarize", DIGEST_B, overwrite=True)
    async with sessions() as session, session.begin():
        assert await delete(session, namespace, "summarize") is True
    assert await ref_count(sessions, DIGEST_A) is None
    assert await ref_count(sessions, DIGEST_B) == 1  # `other` still uses it
    async with sessions() as session:
        kept = list(await session.scalars(select(ActionVersion.version)))
    assert kept == ["0.0.1"]  # `other`'s


async def test_concurrent_references_are_all_counted(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await add_reference(session, stored(DIGEST_A))
    async with sessions() as first:
        async with first.begin():
            await add_reference(first, stored(DIGEST_A))
            await first.flush()
            # The second transaction reads and counts while the first is still open.
            second = asyncio.create_task(add_in_own_transaction(sessions, DIGEST_A))
            await asyncio.sleep(0.3)
        await second
    assert await ref_count(sessions, DIGEST_A) == 3


async def add_in_own_transaction(sessions: async_sessionmaker[AsyncSession], digest: str) -> None:
    """Add one reference and commit."""
    async with sessions() as session, session.begin():
        await add_reference(session, stored(digest))


async def test_concurrent_first_references_are_both_counted(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as first:
        async with first.begin():
            await add_reference(first, stored(DIGEST_A))
            await first.flush()
            second = asyncio.create_task(add_in_own_transaction(sessions, DIGEST_A))
            await asyncio.sleep(0.3)
        await second
    assert await ref_count(sessions, DIGEST_A) == 2


# Activations


def activation(name: str, start_ms: int, namespace: str = "alice") -> Activation:
    """An activation record that started at `start_ms`."""
    return Activation(activation_id=uuid.uuid4().hex, namespace=namespace, name=name,
                      version="0.0.1", subject=namespace, start_ms=start_ms,
                      end_ms=start_ms + 5, status_code=0,
                      response={"status": "success", "result": {"text": name}},
                      logs=[], annotations=[{"key": "startKind", "value": "warm"}])


@pytest.fixture
async def activations(sessions: async_sessionmaker[AsyncSession]) -> None:
    """alice's `a` at 1000, 3000, 5000 ms and `b` at 2000, 4000 ms; bob's `a` at 6000 ms."""
    async with sessions() as session, session.begin():
        session.add_all([activation("a", 1000), activation("b", 2000), activation("a", 3000),
                         activation("b", 4000), activation("a", 5000),
                         activation("a", 6000, namespace="bob")])


async def starts(session: AsyncSession, name: str | None = None, limit: int = 30, skip: int = 0,
                 **window: int) -> list[int]:
    """Start times of the listed activations of `alice`."""
    rows = await list_activations(session, "alice", name, limit, skip, **window)
    return [row.start_ms for row in rows]


async def test_list_activations_newest_first_by_name_with_paging(
        sessions: async_sessionmaker[AsyncSession], activations: None) -> None:
    async with sessions() as session:
        assert await starts(session) == [5000, 4000, 3000, 2000, 1000]
        assert await starts(session, "a") == [5000, 3000, 1000]
        assert await starts(session, "b", limit=1) == [4000]
        assert await starts(session, limit=2, skip=1) == [4000, 3000]
        assert await starts(session, "nothing") == []
        rows = await list_activations(session, "alice", "a", 1, 0)
    assert rows[0].response["result"] == {"text": "a"}
    assert rows[0].annotations == [{"key": "startKind", "value": "warm"}]


async def test_list_activations_since_and_upto_are_inclusive(
        sessions: async_sessionmaker[AsyncSession], activations: None) -> None:
    async with sessions() as session:
        assert await starts(session, since=3000) == [5000, 4000, 3000]
        assert await starts(session, upto=3000) == [3000, 2000, 1000]
        assert await starts(session, since=2000, upto=4000) == [4000, 3000, 2000]
        assert await starts(session, "a", since=2000, upto=4000) == [3000]
        assert await starts(session, since=2000, upto=4000, limit=1, skip=1) == [3000]
        assert await starts(session, since=6000) == []


async def test_a_name_filter_names_the_package_as_openwhisk_does(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    # `echo` of the default package at 1000, 3000, 5000; of package p (its own, or another
    # namespace's reached through a binding) at 2000, 4000, 6000; pages of 2 rows.
    monkeypatch.setattr(activation_rows, "PATH_PAGE", 2)
    paths = {1000: "alice/echo", 2000: "alice/p/echo", 3000: None, 4000: "bob/p/echo",
             5000: "alice/echo", 6000: "alice/p/echo"}
    async with sessions() as session, session.begin():
        for start, path in paths.items():
            row = activation("echo", start)
            if path is not None:
                row.annotations = [{"key": "path", "value": path}]
            session.add(row)

    async def listed(path: str, limit: int = 30, skip: int = 0) -> list[int]:
        rows = await activation_rows.list_by_path(session, "alice", path, limit, skip)
        return [row.start_ms for row in rows]

    async with sessions() as session:
        assert await listed("p/echo") == [6000, 4000, 2000]
        assert await listed("echo") == [5000, 3000, 1000]
        assert await listed("p/echo", limit=1, skip=1) == [4000]
        assert await listed("echo", limit=2, skip=1) == [3000, 1000]
        assert await listed("q/echo") == []
        assert await activation_rows.count_by_path(session, "alice", "p/echo", 1) == 2
        assert await activation_rows.count_by_path(session, "alice", "echo", 0,
                                                   since=2000) == 2
        assert len(await activation_rows.list_by_path(session, "alice", None, 30, 0)) == 6


# Migrations


def table_names(url: str) -> set[str]:
    """The tables the database holds."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_alembic_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    assert table_names(empty_database_url) & REGISTRY_TABLES == set()
    upgrade(empty_database_url)
    assert REGISTRY_TABLES <= table_names(empty_database_url)
    downgrade(empty_database_url, "base")
    assert table_names(empty_database_url) & REGISTRY_TABLES == set()
    upgrade(empty_database_url)
    assert REGISTRY_TABLES <= table_names(empty_database_url)


def test_migrations_build_what_the_models_describe(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lorafaas.registry.models import Base

    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_migration_0003_gives_each_action_its_version_and_back(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0002")
    engine = create_engine(sync_url(empty_database_url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO namespaces (id, name, created_ms) VALUES (1, 'alice', 1)"))
            connection.execute(text(
                "INSERT INTO artifacts (digest, size_bytes, ref_count, created_ms) "
                f"VALUES ('{DIGEST_A}', 1, 1, 1), ('{DIGEST_B}', 1, 1, 1)"))
            connection.execute(text(
                "INSERT INTO actions (id, namespace_id, name, version, exec_kind, "
                "artifact_digest, parameters, annotations, limits, publish, updated_ms) "
                f"VALUES (1, 1, 'a', '0.0.4', 'lora', '{DIGEST_A}', '[]', '[]', '{{}}', "
                "false, 7)"))
        upgrade(empty_database_url)
        with engine.begin() as connection:
            assert list(connection.execute(text(
                "SELECT action_id, version, artifact_digest, created_ms FROM action_versions"))
            ) == [(1, "0.0.4", DIGEST_A, 7)]
        downgrade(empty_database_url, "0002")
        with engine.begin() as connection:
            assert list(connection.execute(text(
                "SELECT digest, ref_count FROM artifacts"))) == [(DIGEST_A, 1)]
    finally:
        engine.dispose()


def test_migration_0004_adds_artifact_profiles_and_removes_them(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0003")
    assert "artifact_profiles" not in table_names(empty_database_url)
    upgrade(empty_database_url, "0004")
    assert "artifact_profiles" in table_names(empty_database_url)
    downgrade(empty_database_url, "0003")
    assert "artifact_profiles" not in table_names(empty_database_url)
    assert {"actions", "action_versions"} <= table_names(empty_database_url)


# Artifact profiles


def host_load(artifact: str, ms: float, size: int) -> ArtifactLoad:
    """A load into host memory."""
    return ArtifactLoad(artifact, "host", ms, size)


async def test_recorded_loads_become_profiles_updated_by_the_moving_mean(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await record_loads(session, "alice", "fn", DIGEST_A,
                           [host_load("adapter", 100.0, 1000), host_load("kernels", 8.0, 0)],
                           at_ms=1000)
    async with sessions() as session, session.begin():
        await record_loads(session, "alice", "fn", DIGEST_A, [host_load("adapter", 200.0, 2001)],
                           at_ms=2000)
        await record_loads(session, "alice", "fn", DIGEST_B, [host_load("adapter", 50.0, 10)],
                           at_ms=2000)
    expected = next_estimate(next_estimate(None, host_load("adapter", 100.0, 1000)),
                             host_load("adapter", 200.0, 2001))
    async with sessions() as session:
        rows = await function_profiles(session, "alice", "fn", DIGEST_A)
        stored = await all_estimates(session)
    assert [profile_json(row) for row in rows] == [
        {"artifact": "adapter", "tier": "host", "loadMs": expected.load_ms,
         "memoryBytes": expected.memory_bytes, "samples": 2, "updated": 2000},
        {"artifact": "kernels", "tier": "host", "loadMs": 8.0, "memoryBytes": 0, "samples": 1,
         "updated": 1000}]
    assert expected == LoadEstimate(125.0, 1250, 2)
    assert sorted((path, digest, artifact, estimate.samples)
                  for path, digest, artifact, _, estimate in stored) == [
        ("alice/fn", DIGEST_A, "adapter", 2), ("alice/fn", DIGEST_A, "kernels", 1),
        ("alice/fn", DIGEST_B, "adapter", 1)]


async def test_concurrent_writers_of_one_profile_add_samples_to_one_row(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async def record(ms: float) -> None:
        async with sessions() as session, session.begin():
            await record_loads(session, "alice", "fn", DIGEST_A,
                               [host_load("libraries", ms, 300), host_load("adapter", ms, 30)])

    await asyncio.gather(*(record(float(ms)) for ms in range(10, 90, 10)))
    async with sessions() as session:
        rows = await function_profiles(session, "alice", "fn", DIGEST_A)
    assert [(row.artifact, row.samples) for row in rows] == [("libraries", 8), ("adapter", 8)]
    assert all(10.0 <= row.load_ms <= 80.0 for row in rows)


def test_profile_rows_are_unique_per_key(database_url: str) -> None:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    insert = text("INSERT INTO artifact_profiles (namespace, action, adapter_digest, artifact, "
                  "tier, load_ms, memory_bytes, samples, updated_ms) "
                  f"VALUES ('alice', 'fn', '{DIGEST_A}', 'adapter', 'host', 1, 1, 1, 1)")
    try:
        with engine.begin() as connection:
            connection.execute(insert)
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert)
    finally:
        engine.dispose()

