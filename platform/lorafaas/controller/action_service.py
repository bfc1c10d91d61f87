"""Creating, updating and deleting actions: adapter validation, artifact store, registry.

A failed create leaves nothing behind: the upload is validated in a staging folder that
always goes, and its files are moved into the store only inside the transaction that adds
their reference. Each version of an action holds one reference to its artifact (see
`registry.actions`); an artifact's files are removed after the commit that dropped its last
reference, under the artifact row's lock, only while nothing references it again (see
`registry.artifacts`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.backbones import BackboneCatalog
from lorafaas.controller.function_refs import function_ref
from lorafaas.controller.protocol import LORA_KIND, ActionBody
from lorafaas.controller.uploads import UploadSlots
from lorafaas.invoking.client import InvokerClient
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.artifacts import (
    ArtifactStore,
    add_reference,
    claim_unreferenced,
    drop_reference,
)
from lorafaas.registry.models import Action, ActionVersion, Namespace
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.packages import Resolved

logger = logging.getLogger(__name__)


class ActionService:
    """The logic behind the actions resource, callable without HTTP."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ArtifactStore,
                 backbones: BackboneCatalog, max_adapter_bytes: int, history: int,
                 invoker: InvokerClient | None = None, max_uploads: int = 4) -> None:
        self.sessions = sessions
        self.store = store
        self.backbones = backbones
        self.max_adapter_bytes = max_adapter_bytes
        self.history = history
        self.invoker = invoker  # profiles a new adapter rank before its first request
        self.uploads = UploadSlots(max_uploads)  # uploads received and validated at once

    async def put(self, identity: Identity, name: QualifiedName, body: ActionBody,
                  overwrite: bool) -> Action:
        """Validate the staged adapter zip (`body.code`), then create or update the action."""
        backbone = self.backbones.get(body.annotation("backbone"))
        stored = await asyncio.to_thread(self.store.stage, body.code, backbone.linear_shapes,
                                         self.max_adapter_bytes)
        annotations = _with_annotations(body.annotations, {
            "backbone": backbone.name, "adapter": stored.summary.as_dict(), "exec": LORA_KIND})
        spec = action_rows.ActionSpec(LORA_KIND, stored.digest, body.parameters, annotations,
                                      dict(body.limits), body.publish)
        try:
            async with self.sessions() as session, session.begin():
                namespace = await session.get(Namespace, identity.namespace_id)
                assert namespace is not None
                await package_rows.writable_package(session, namespace.id, name)
                await add_reference(session, stored)  # the new version's; locks the row
                await asyncio.to_thread(self.store.publish, stored)
                action, pruned = await action_rows.put_action(session, namespace, name, spec,
                                                              overwrite, self.history)
                orphaned = await _drop_references(session, pruned)
        except BaseException:
            # Files this upload may have moved into the store go unless referenced meanwhile.
            await self._collect({stored.digest})
            raise
        await self._collect(orphaned)
        if self.invoker is not None:
            self.invoker.prepare(function_ref(identity.namespace, action,
                                              self.store.folder(action.artifact_digest)))
        return action

    async def delete(self, identity: Identity, name: QualifiedName) -> Action:
        """Delete the action and its versions; each artifact goes with its last reference."""
        async with self.sessions() as session, session.begin():
            if name.package is not None:
                await package_rows.writable_package(session, identity.namespace_id, name)
            action, digests = await action_rows.delete_action(session, identity.namespace_id,
                                                              name)
            orphaned = await _drop_references(session, digests)
        await self._collect(orphaned)
        return action

    async def versions(self, identity: Identity, name: QualifiedName) -> list[ActionVersion]:
        """The action's kept versions, newest first (NotFound without the action)."""
        async with self.sessions() as session:
            action = await action_rows.get_action(session, identity.namespace_id, name)
            return await action_rows.list_versions(session, action.id)

    async def _collect(self, digests: set[str]) -> None:
        """Remove the files of each artifact that no version references (any more)."""
        for digest in sorted(digests):
            async with self.sessions() as session, session.begin():
                if await claim_unreferenced(session, digest):
                    # Before the commit: the row lock keeps a new reference waiting meanwhile.
                    await asyncio.to_thread(self.store.remove, digest)

    async def get(self, identity: Identity, name: QualifiedName) -> Action:
        """The action, or NotFound."""
        async with self.sessions() as session:
            return await action_rows.get_action(session, identity.namespace_id, name)

    async def resolve(self, identity: Identity, name: QualifiedName,
                      found: Action | None = None) -> Resolved:
        """The action `name` reaches for the caller: its own, or one of a package through a
        binding (NotFound when none); `found`: the row already read in its own namespace."""
        if name.package is None and found is not None:
            return Resolved(found, name, name)
        async with self.sessions() as session:
            found = found or await action_rows.find_action(session, identity.namespace_id, name)
            return await package_rows.resolve_action(session, name, found)


async def _drop_references(session: AsyncSession, digests: list[str]) -> set[str]:
    """Drop one reference per digest; return the digests that have none left."""
    return {digest for digest in digests if await drop_reference(session, digest)}


def _with_annotations(annotations: list[dict[str, Any]],
                      system: dict[str, Any]) -> list[dict[str, Any]]:
    # The platform's own annotations replace any the user sent under the same keys.
    kept = [a for a in annotations if a["key"] not in system]
    return kept + [{"key": key, "value": value} for key, value in system.items()]
