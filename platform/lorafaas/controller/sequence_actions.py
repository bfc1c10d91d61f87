"""Creating and updating sequence actions: `exec: {kind: "sequence", components: [...]}`.

As OpenWhisk's controller checks them on PUT: at least one component, each a fully
qualified name (`/namespace/[package/]action`, `_` for the caller's namespace), each existing when the
sequence is stored, none the sequence itself (directly or through a component that is a
sequence), and at most `SEQUENCE_LIMIT` actions once nested sequences are inlined. A
component of another namespace must be one the caller may read (an action of a published
package, OpenWhisk's entitlement; 403 otherwise); it runs for the sequence's caller, as an
invocation by its full name does. A sequence holds no code: its row and versions carry no
artifact, only the components' names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.controller.protocol import SEQUENCE_KIND, LimitRange, parse_limits
from lorafaas.errors import BadRequest, Forbidden, NotFound
from lorafaas.names import InvalidName, QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Action, Namespace
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.packages import Resolved

# OpenWhisk's default `actionSequence.maxLength`: atomic actions in a sequence, inlined.
SEQUENCE_LIMIT = 50
TOO_LONG = "Too many actions in the sequence."
NO_COMPONENT = "No component specified for the sequence."
CYCLIC = "Sequence may not refer to itself."
NOT_FOUND = "Sequence component does not exist."
MALFORMED_NAME = ("The fully qualified name of the entity must contain at least the namespace "
                  "and the name of the entity.")


@dataclass(frozen=True)
class Component:
    """One component's fully qualified name: its namespace, package and action."""

    qualified: QualifiedName

    @property
    def namespace(self) -> str:
        """The component's namespace."""
        return self.qualified.namespace

    def __str__(self) -> str:
        return self.qualified.absolute


def parse_component(text: Any, namespace: str) -> Component:
    """`/ns/name` or `/ns/pkg/name` (or without the leading slash; `_` is the caller's
    namespace) as a component; a 400 naming the component when it is not one."""
    if not isinstance(text, str):
        raise BadRequest(f"{MALFORMED_NAME} (component {text!r})")
    parts = text.strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadRequest(f"{MALFORMED_NAME} (component {text!r})")
    try:
        return Component(QualifiedName.parse("/" + "/".join(parts), namespace))
    except InvalidName as error:
        raise BadRequest(f"{MALFORMED_NAME} (component {text!r})") from error


async def find_component(session: AsyncSession, identity: Identity, component: Component,
                         owner: Resolved | None = None) -> Resolved | None:
    """The action a component reaches for `identity` (through its package or a binding, or
    a published package of another namespace, as an invocation does), if any. A component in
    the namespace of the sequence `owner` is that namespace's own, whoever calls: OpenWhisk
    resolves a sequence's components by their fully qualified names (checked when stored)."""
    if owner is not None and component.namespace == owner.name.namespace:
        return await package_rows.reach_action(session, owner.action.namespace_id,
                                               component.qualified)
    if component.namespace == identity.namespace:
        return await package_rows.reach_action(session, identity.namespace_id,
                                               component.qualified)
    try:
        return await package_rows.resolve_shared(session, identity.namespace,
                                                 component.qualified)
    except (Forbidden, NotFound):
        return None


def is_sequence_body(fields: Any) -> bool:
    """Whether a PUT body creates a sequence (its `exec.kind` is `sequence`, read trimmed and
    in any case as every kind)."""
    if not (isinstance(fields, dict) and isinstance(fields.get("exec"), dict)):
        return False
    kind = fields["exec"].get("kind")
    return isinstance(kind, str) and kind.strip().lower() == SEQUENCE_KIND


@dataclass(frozen=True)
class SequenceBody:
    """A parsed PUT body of a sequence: its components and the rest of the action."""

    components: list[Component]
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, int]
    publish: bool


def parse_sequence_body(fields: dict[str, Any], namespace: str,
                        ranges: dict[str, LimitRange]) -> SequenceBody:
    """Validate a PUT body of kind sequence (its components' existence is checked later)."""
    components = fields["exec"].get("components")
    if components is None or components == []:
        raise BadRequest(NO_COMPONENT)
    if not isinstance(components, list):
        raise BadRequest("exec.components must be a list of fully qualified action names")
    if len(components) > SEQUENCE_LIMIT:
        raise BadRequest(TOO_LONG)
    return SequenceBody([parse_component(c, namespace) for c in components],
                        _key_values(fields.get("parameters", []), "parameters"),
                        _key_values(fields.get("annotations", []), "annotations"),
                        parse_limits(fields.get("limits") or {}, ranges),
                        bool(fields.get("publish", False)))


def _key_values(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(kv, dict) and
                                              isinstance(kv.get("key"), str) and "value" in kv
                                              for kv in value):
        raise BadRequest(f"'{field}' must be a list of {{\"key\", \"value\"}} objects")
    return value


async def check_components(session: AsyncSession, identity: Identity, name: QualifiedName,
                           components: list[Component]) -> None:
    """Refuse (400) a component that does not exist, a cycle back to `name`, or more than
    `SEQUENCE_LIMIT` actions inlined, with OpenWhisk's bare messages (its Actions.scala names
    no component); (403) a component of another namespace the caller may not read."""
    for component in components:
        if component.namespace != identity.namespace:
            with contextlib.suppress(NotFound):  # absent from a shared package: the 400 below
                await package_rows.resolve_shared(session, identity.namespace,
                                                  component.qualified)
    if await _atomic_count(session, identity, name, components, set()) > SEQUENCE_LIMIT:
        raise BadRequest(TOO_LONG)


async def _atomic_count(session: AsyncSession, identity: Identity, name: QualifiedName,
                        components: list[Component], seen: set[QualifiedName]) -> int:
    count = 0
    for component in components:
        if component.qualified == name:  # its own namespace's: checked above
            raise BadRequest(CYCLIC)
        resolved = await find_component(session, identity, component)
        if resolved is None:
            raise BadRequest(NOT_FOUND)
        action = resolved.action
        if action.exec_kind != SEQUENCE_KIND:
            count += 1
        elif resolved.name not in seen:  # a nested sequence: inline its components
            inner = [parse_component(c, identity.namespace) for c in action.components or []]
            count += await _atomic_count(session, identity, name, inner,
                                         seen | {resolved.name})
        else:
            raise BadRequest(CYCLIC)
        if count > SEQUENCE_LIMIT:
            raise BadRequest(TOO_LONG)
    return count


async def put_sequence(session: AsyncSession, identity: Identity, name: QualifiedName,
                       body: SequenceBody, overwrite: bool,
                       history: int) -> tuple[Action, list[str]]:
    """Check the components and store the sequence in one transaction; return it and the
    digests of the versions pruned (the caller drops those references)."""
    namespace = await session.get(Namespace, identity.namespace_id)
    assert namespace is not None
    await check_components(session, identity, name, body.components)
    annotations = [a for a in body.annotations if a["key"] != "exec"] + \
        [{"key": "exec", "value": SEQUENCE_KIND}]
    spec = action_rows.ActionSpec(SEQUENCE_KIND, None, body.parameters, annotations,
                                  dict(body.limits), body.publish,
                                  components=[str(c) for c in body.components])
    return await action_rows.put_action(session, namespace, name, spec, overwrite, history)
