"""Creating, updating and deleting actions: adapter validation, artifact store, registry.

A failed create leaves nothing behind: the artifact's files are removed when this upload
created them and the registry transaction did not commit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.backbones import BackboneCatalog
from lorafaas.controller.protocol import LORA_KIND, ActionBody
from lorafaas.errors import NotFound
from lorafaas.registry import actions as action_rows
from lorafaas.registry.artifacts import ArtifactStore, add_reference, drop_reference
from lorafaas.registry.models import Action, Namespace
from lorafaas.registry.namespaces import Identity

logger = logging.getLogger(__name__)


class ActionService:
    """The logic behind the actions resource, callable without HTTP."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ArtifactStore,
                 backbones: BackboneCatalog, max_adapter_bytes: int) -> None:
        self.sessions = sessions
        self.store = store
        self.backbones = backbones
        self.max_adapter_bytes = max_adapter_bytes

    async def put(self, identity: Identity, name: str, body: ActionBody,
                  overwrite: bool) -> Action:
        """Validate and store the adapter, then create or update the action."""
        backbone = self.backbones.get(body.annotation("backbone"))
        stored = await asyncio.to_thread(self.store.put, body.code, backbone.linear_shapes,
                                         self.max_adapter_bytes)
        annotations = _with_annotations(body.annotations, {
            "backbone": backbone.name, "adapter": stored.summary.as_dict(), "exec": LORA_KIND})
        spec = action_rows.ActionSpec(LORA_KIND, stored.digest, body.parameters, annotations,
                                      dict(body.limits), body.publish)
        try:
            async with self.sessions() as session, session.begin():
                namespace = await session.get(Namespace, identity.namespace_id)
                assert namespace is not None
                await add_reference(session, stored)
                action, previous = await action_rows.put_action(session, namespace, name, spec,
                                                                overwrite)
                orphaned = previous is not None and await drop_reference(session, previous)
        except BaseException:
            if stored.created:
                self.store.remove(stored.digest)
            raise
        if orphaned and previous != stored.digest:
            assert previous is not None
            self.store.remove(previous)
        return action

    async def delete(self, identity: Identity, name: str) -> Action:
        """Delete the action; its artifact goes with its last reference."""
        async with self.sessions() as session, session.begin():
            action = await action_rows.get_action(session, identity.namespace_id, name)
            await session.delete(action)
            orphaned = await drop_reference(session, action.artifact_digest)
        if orphaned:
            self.store.remove(action.artifact_digest)
        return action

    async def get(self, identity: Identity, name: str) -> Action:
        """The action, or NotFound."""
        async with self.sessions() as session:
            action = await action_rows.find_action(session, identity.namespace_id, name)
        if action is None:
            raise NotFound("The requested resource does not exist.")
        return action


def _with_annotations(annotations: list[dict[str, Any]],
                      system: dict[str, Any]) -> list[dict[str, Any]]:
    # The platform's own annotations replace any the user sent under the same keys.
    kept = [a for a in annotations if a["key"] not in system]
    return kept + [{"key": key, "value": value} for key, value in system.items()]
