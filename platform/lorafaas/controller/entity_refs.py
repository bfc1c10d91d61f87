"""Qualified names of the entities a rule names (`/ns/trigger`, `pkg/action`, `action`), and
the one function that finds a rule's action.

Until the registry's qualified-name type and packages land, a rule's action is looked up by
namespace and name as an invocation looks it up; `find_rule_action` is the one place to
swap when they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.controller.api.params import ENTITY_NAME, MAX_NAME_LENGTH
from lorafaas.errors import BadRequest
from lorafaas.names import QualifiedName
from lorafaas.registry import packages as package_rows
from lorafaas.registry.namespaces import find_namespace
from lorafaas.registry.packages import Resolved

DEFAULT_NAMESPACE = "_"


@dataclass(frozen=True)
class EntityRef:
    """A fully qualified name: `path` is the namespace, or `namespace/package`."""

    path: str
    name: str

    @property
    def namespace(self) -> str:
        """The namespace the entity is in."""
        return self.path.split("/", 1)[0]

    @property
    def package(self) -> str | None:
        """The package the entity is in, if any."""
        parts = self.path.split("/", 1)
        return parts[1] if len(parts) == 2 else None

    def as_string(self) -> str:
        """OpenWhisk's `asString`: `path/name`, no leading slash."""
        return f"{self.path}/{self.name}"

    def with_slash(self) -> str:
        """`/path/name`, as OpenWhisk's messages write it."""
        return f"/{self.as_string()}"

    def json(self) -> dict[str, str]:
        """OpenWhisk's serialized form: `{"path", "name"}`."""
        return {"path": self.path, "name": self.name}


def parse_ref(value: Any, namespace: str, field: str) -> EntityRef:
    """A name as OpenWhisk resolves one (`resolveName`): `/ns/name` or `/ns/pkg/name` is
    qualified; `name` and `pkg/name` are in the caller's namespace; `_` is the caller's.
    An object `{"path", "name"}` is taken as written."""
    if isinstance(value, dict) and isinstance(value.get("path"), str) \
            and isinstance(value.get("name"), str):
        value = f"/{value['path']}/{value['name']}"
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{field}' must be a name: NAME, PACKAGE/NAME or /NAMESPACE/NAME",
                         param=field)
    slash = value.startswith("/")
    parts = value.strip("/").split("/") if slash else value.split("/")
    if not 1 <= len(parts) <= 3 or (slash and len(parts) == 1) or \
            not all(_valid_segment(part) for part in parts):
        raise BadRequest(f"'{field}' {value[:300]!r} is not a valid qualified name", param=field)
    if not slash and len(parts) < 3:
        parts = [namespace, *parts]
    if parts[0] == DEFAULT_NAMESPACE:
        parts[0] = namespace
    return EntityRef("/".join(parts[:-1]), parts[-1])


def _valid_segment(part: str) -> bool:
    return len(part) <= MAX_NAME_LENGTH and ENTITY_NAME.match(part) is not None


async def find_rule_action(session: AsyncSession, ref: EntityRef, own: str) -> Resolved | None:
    """The action a rule of namespace `own` names (`pkg/action` through its package or a
    binding, as an invocation resolves it), or None when there is none: a rule runs only its
    own namespace's actions (it runs them as the subject that fires the trigger, billed to
    that namespace)."""
    if ref.namespace != own:
        return None
    namespace = await find_namespace(session, ref.namespace)
    if namespace is None:
        return None
    return await package_rows.reach_action(session, namespace.id,
                                           QualifiedName(ref.namespace, ref.package, ref.name))
