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
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.backbones import BackboneCatalog
from lorafaas.controller.function_refs import action_backbone, code_digest, function_ref
from lorafaas.controller.protocol import (
    LORA_KIND,
    SEQUENCE_KIND,
    ActionBody,
    ActionContent,
    LimitRange,
    annotation_value,
    code_limit_ranges,
    create_content,
    merge_update,
)
from lorafaas.controller.sequence_actions import (
    SequenceBody,
    parse_component,
    put_sequence,
)
from lorafaas.controller.uploads import UploadSlots
from lorafaas.errors import BadRequest, Conflict
from lorafaas.invoking.client import InvokerClient
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.artifacts import (
    ArtifactStore,
    StoredAdapter,
    add_reference,
    claim_unreferenced,
    drop_reference,
    keep_reference,
)
from lorafaas.registry.code_artifacts import CodeExec, StoredCode, stage_code
from lorafaas.registry.models import Action, ActionVersion, Namespace
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.packages import Resolved

logger = logging.getLogger(__name__)
# The platform's own annotations, set again on every write (`backbone` is the user's choice).
PLATFORM_ANNOTATIONS = ("adapter", "exec")


class ActionService:
    """The logic behind the actions resource, callable without HTTP."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ArtifactStore,
                 backbones: BackboneCatalog, max_adapter_bytes: int, history: int,
                 invoker: InvokerClient | None = None, max_uploads: int = 4,
                 ranges: dict[str, LimitRange] | None = None) -> None:
        self.sessions = sessions
        self.store = store
        self.backbones = backbones
        self.max_adapter_bytes = max_adapter_bytes
        self.history = history
        self.invoker = invoker  # profiles a new adapter rank before its first request
        self.uploads = UploadSlots(max_uploads)  # uploads received and validated at once
        self.ranges = ranges or {}  # the limits' ranges and defaults (protocol.limit_ranges)

    async def put(self, identity: Identity, name: QualifiedName, body: ActionBody,
                  overwrite: bool) -> Action:
        """Create the action, or with `overwrite` update it merged with its current fields
        (`protocol.merge_update`): a new zip (`body.code`, staged) is validated against the
        action's backbone, a code action's code staged; an update without exec keeps the
        stored artifact as it is."""
        current = await self._find(identity, name) if overwrite else None
        if current is not None and current.exec_kind == SEQUENCE_KIND and body.code is None:
            return await self.put_sequence(
                identity, name, _merged_sequence(body, current, identity.namespace), overwrite)
        kind = body.kind or (LORA_KIND if current is None else current.exec_kind)
        content = self._content(body, kind, current)
        backbone: str | None = None
        stored: StoredAdapter | StoredCode | None = None
        if kind == LORA_KIND:
            served = self.backbones.get(content.annotation("backbone"))
            if current is not None and content.code is None and \
                    served.name != self.backbones.get(action_backbone(current)).name:
                raise BadRequest("a new backbone needs the adapter again: send 'exec' with it")
            backbone = served.name
            if content.code is not None:
                stored = await asyncio.to_thread(self.store.stage, content.code,
                                                 served.linear_shapes, self.max_adapter_bytes)
        elif content.code is not None:
            stored = await asyncio.to_thread(self._stage_code, body, kind)
        try:
            action, orphaned = await self._write(identity, name, content, kind, backbone,
                                                 stored, current, overwrite)
        except BaseException:
            # Files this upload may have moved into the store go unless referenced meanwhile.
            if stored is not None:
                await self._collect({stored.digest})
            raise
        await self._collect(orphaned)
        if self.invoker is not None and kind == LORA_KIND:
            self.invoker.prepare(function_ref(identity.namespace, action,
                                              self.store.folder(code_digest(action))))
        return action

    async def put_sequence(self, identity: Identity, name: QualifiedName, body: SequenceBody,
                           overwrite: bool) -> Action:
        """Create or update a sequence (see `sequence_actions`): it holds no artifact."""
        async with self.sessions() as session, session.begin():
            await package_rows.writable_package(session, identity.namespace_id, name)
            action, pruned = await put_sequence(session, identity, name, body, overwrite,
                                                self.history)
            orphaned = await _drop_references(session, pruned)
        await self._collect(orphaned)
        return action

    def _content(self, body: ActionBody, kind: str, current: Action | None) -> ActionContent:
        if current is None:
            return create_content(body, self.ranges)
        ranges = self.ranges if kind == LORA_KIND else code_limit_ranges(self.ranges)
        defaults = {name: bounds.default for name, bounds in ranges.items()}
        return merge_update(body, list(current.parameters), _user_annotations(current),
                            {**defaults, **current.limits}, current.publish)

    async def _write(self, identity: Identity, name: QualifiedName, content: ActionContent,
                     kind: str, backbone: str | None, stored: StoredAdapter | StoredCode | None,
                     current: Action | None, overwrite: bool) -> tuple[Action, set[str]]:
        async with self.sessions() as session, session.begin():
            namespace = await session.get(Namespace, identity.namespace_id)
            assert namespace is not None
            await package_rows.writable_package(session, namespace.id, name)
            if stored is not None:
                await add_reference(session, stored)  # the new version's; locks the row
                await asyncio.to_thread(self.store.publish, stored)
                digest = stored.digest
                summary = stored.summary.as_dict() if isinstance(stored, StoredAdapter) else None
            else:
                digest, summary = await self._kept_artifact(session, identity, name, current)
            system: dict[str, Any] = {"exec": kind}
            if kind == LORA_KIND:
                system.update(backbone=backbone, adapter=summary)
            annotations = _with_annotations(content.annotations, system)
            spec = action_rows.ActionSpec(kind, digest, content.parameters, annotations,
                                          dict(content.limits), content.publish)
            action, pruned = await action_rows.put_action(session, namespace, name, spec,
                                                          overwrite, self.history)
            return action, await _drop_references(session, pruned)

    async def _kept_artifact(self, session: AsyncSession, identity: Identity, name: QualifiedName,
                             merged_from: Action | None) -> tuple[str, Any]:
        """The digest and adapter summary an update without exec keeps; one more reference
        to it, for the new version. Conflict when the action changed since it was merged."""
        action = await action_rows.find_action(session, identity.namespace_id, name)
        if action is None or merged_from is None or action.version != merged_from.version:
            raise Conflict("the action changed during the update; send it again")
        await keep_reference(session, code_digest(action))
        return code_digest(action), annotation_value(action.annotations, "adapter")

    async def _find(self, identity: Identity, name: QualifiedName) -> Action | None:
        async with self.sessions() as session:
            return await action_rows.find_action(session, identity.namespace_id, name)

    def _stage_code(self, body: ActionBody, kind: str) -> StoredCode:
        """A code action's source or zip, staged (its source text written to a file in the
        upload's staging folder first: see `api.actions`)."""
        if not isinstance(body.code, Path):
            raise TypeError("a code action's code is staged as a file first")
        code_exec = CodeExec(kind, body.main or "main", binary=body.binary)
        return stage_code(body.code, code_exec, self.max_adapter_bytes)

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

    async def resolve_shared(self, identity: Identity, name: QualifiedName) -> Resolved:
        """The action of another namespace's published package `name` reaches for the
        caller (403 unless one may reach it, 404 when the package has no such action)."""
        async with self.sessions() as session:
            return await package_rows.resolve_shared(session, identity.namespace, name)


async def _drop_references(session: AsyncSession, digests: list[str]) -> set[str]:
    """Drop one reference per digest; return the digests that have none left."""
    return {digest for digest in digests if await drop_reference(session, digest)}


def _user_annotations(action: Action) -> list[dict[str, Any]]:
    """The action's annotations but the platform's own (set again on every write)."""
    return [a for a in action.annotations if a["key"] not in PLATFORM_ANNOTATIONS]


def _with_annotations(annotations: list[dict[str, Any]],
                      system: dict[str, Any]) -> list[dict[str, Any]]:
    # The platform's own annotations replace any the user sent under the same keys.
    kept = [a for a in annotations if a["key"] not in system]
    return kept + [{"key": key, "value": value} for key, value in system.items()]


def _merged_sequence(body: ActionBody, current: Action, namespace: str) -> SequenceBody:
    """An update without `exec` of a sequence: its components kept, and each other field
    the update leaves out (OpenWhisk merges a sequence's update as any action's)."""
    return SequenceBody(
        components=[parse_component(c, namespace) for c in current.components or []],
        parameters=list(current.parameters) if body.parameters is None else body.parameters,
        annotations=_user_annotations(current) if body.annotations is None
        else body.annotations,
        limits={**current.limits, **(body.limits or {})},
        publish=current.publish if body.publish is None else body.publish)
