"""Deleting an action while another is created from the same zip never loses the files.

Before artifacts were published and removed under their registry row's lock, the new
action was left without its files in 22 of 30 tries (GET gave 500, invokes failed). Each
test runs the two at the same moment, round after round: through one platform's API (on
SQLite and on PostgreSQL), and through two controllers, each with its own engine, sharing
one PostgreSQL database and one artifact store, as two platform instances do.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone_specs import BackboneSpec
from lorafaas.controller.action_service import ActionService
from lorafaas.controller.appkeys import actions_key
from lorafaas.controller.backbones import Backbone, BackboneCatalog, Published
from lorafaas.controller.protocol import ActionBody
from lorafaas.errors import NotFound
from lorafaas.names import QualifiedName
from lorafaas.registry.artifacts import UPLOAD_NAME, ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions, upgrade
from lorafaas.registry.namespaces import Identity, create_namespace, find_namespace
from tests.db_fixtures import fresh_postgres_database, postgres_server_url
from tests.integration.test_adapter_refusals import body, registry_counts, stored_files

ROUNDS = 30


def adapter_files_present(store: ArtifactStore, digest: str) -> bool:
    """Whether the artifact's zip and unpacked adapter are in the store."""
    folder = store.folder(digest)
    return store.zip_path(digest).is_file() and (folder / "adapter_config.json").is_file() \
        and (folder / "adapter_model.safetensors").is_file()


@pytest.mark.docker
async def test_delete_and_create_from_one_zip_at_once_keeps_the_files(platform, demo_models,  # type: ignore[no-untyped-def]
                                                                      make_zip):
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    actions = "/api/v1/namespaces/_/actions"
    for round_ in range(ROUNDS):
        created = await platform.request("PUT", f"{actions}/old", json=body(zip_bytes))
        assert created.status == 200, await created.json()
        deleted, made = await asyncio.gather(
            platform.request("DELETE", f"{actions}/old"),
            platform.request("PUT", f"{actions}/new", json=body(zip_bytes)))
        assert (deleted.status, made.status) == (200, 200), (round_, await made.json())
        got = await platform.request("GET", f"{actions}/new")
        assert got.status == 200, (round_, await got.json())
        assert base64.b64decode((await got.json())["exec"]["code"]) == zip_bytes
        store = platform.app[actions_key].store
        digests = [p.name for p in store.root.iterdir() if p.is_dir() and p.name != ".staging"]
        assert len(digests) == 1 and adapter_files_present(store, digests[0]), round_
        assert (await platform.request("DELETE", f"{actions}/new")).status == 200
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL registry migrated to head (two instances share one)."""
    with fresh_postgres_database(postgres_server_url()) as url:
        upgrade(url)
        yield url


@pytest.fixture
async def two_controllers(postgres_url: str, demo_models, tmp_path: Path  # type: ignore[no-untyped-def]
                          ) -> AsyncIterator[tuple[ActionService, ActionService, Identity]]:
    """Two action services, each with its own engine, on one database and one store."""
    engines = [make_engine(postgres_url) for _ in range(2)]
    sessions = [make_sessions(engine) for engine in engines]
    spec = BackboneSpec("demo-backbone", demo_models.backbone_dir)
    catalog = BackboneCatalog([Backbone.read(spec, Published("float32", 0), default=True)])
    services = [ActionService(s, ArtifactStore(tmp_path / "artifacts"), catalog,
                              256 << 20, history=5) for s in sessions]
    yield services[0], services[1], await _guest(sessions[0])
    for engine in engines:
        await engine.dispose()


async def _guest(sessions: async_sessionmaker[AsyncSession]) -> Identity:
    async with sessions() as session, session.begin():
        await create_namespace(session, "guest")
        namespace = await find_namespace(session, "guest")
    assert namespace is not None
    return Identity("guest", "guest", namespace.id, "key")


def _name(identity: Identity, name: str) -> QualifiedName:
    return QualifiedName.of(identity.namespace, None, name)


async def _put(service: ActionService, identity: Identity, name: str, zip_bytes: bytes) -> None:
    with service.store.staging() as folder:
        (folder / UPLOAD_NAME).write_bytes(zip_bytes)
        body = ActionBody(folder / UPLOAD_NAME, [], [], {}, False)
        await service.put(identity, _name(identity, name), body, overwrite=False)


@pytest.mark.postgres
async def test_two_instances_on_one_postgres_keep_the_files(two_controllers, demo_models,  # type: ignore[no-untyped-def]
                                                            make_zip):
    first, second, identity = two_controllers
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    for round_ in range(ROUNDS):
        old, new = f"old-{uuid.uuid4().hex[:6]}", f"new-{round_}"
        await _put(first, identity, old, zip_bytes)
        await asyncio.gather(first.delete(identity, _name(identity, old)),
                             _put(second, identity, new, zip_bytes))
        action = await first.get(identity, _name(identity, new))
        assert adapter_files_present(first.store, action.artifact_digest), round_
        await second.delete(identity, _name(identity, new))
        with pytest.raises(NotFound):
            await first.get(identity, _name(identity, new))
    assert [p for p in first.store.root.rglob("*") if p.is_file()] == []
