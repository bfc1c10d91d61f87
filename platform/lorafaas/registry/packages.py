"""Packages in the registry, as OpenWhisk's controller keeps them (`Packages.scala`).

A package holds actions (`pkg/action`) and parameters and annotations for them; a binding
names a package (of its own namespace, or a published one of another) and adds parameters
of its own. Invoking `binding/action` runs the bound package's action for the caller, in the
caller's namespace. OpenWhisk's rules kept here: `default` is reserved, a binding may not
name a binding, a package does not become a binding, a package with actions is not deleted
(409), and a package and an action of the default package do not share a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import BadRequest, Conflict, Forbidden, NotFound
from lorafaas.names import QualifiedName
from lorafaas.registry.actions import FIRST_VERSION, find_action, next_version
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Action, Namespace, Package

RESERVED_NAMES = frozenset({"default"})
NOT_FOUND = "The requested resource does not exist."
NOT_IN_COLLECTION = "Resource by this name exists but is not in this collection."
BINDING_DOES_NOT_EXIST = "Binding references a package that does not exist."
BINDING_OF_BINDING = "Cannot bind to another package binding."
PACKAGE_NOT_BINDING = "Resource is a package and cannot be converted into a binding."
NOT_ON_BINDING = "Operation not permitted on package binding."


@dataclass(frozen=True)
class PackageSpec:
    """A PUT's content; None: not sent (an update keeps what is stored)."""

    parameters: list[dict[str, Any]] | None = None
    annotations: list[dict[str, Any]] | None = None
    publish: bool | None = None
    binding: QualifiedName | None = None  # the bound package: (namespace, None, name)


@dataclass(frozen=True)
class Resolved:
    """The action a name reaches, and what it runs with.

    `package` is the action's own package and `binding` the caller's binding it was reached
    through: their parameters come under the action's, in OpenWhisk's order.
    """

    action: Action
    invoked: QualifiedName  # the name called, in the caller's namespace: what it runs under
    name: QualifiedName  # the action's own name (its owner's namespace)
    package: Package | None = None
    binding: Package | None = None

    def inherited(self) -> list[dict[str, Any]]:
        """Package parameters, then the binding's over them: what the action's override."""
        merged = {p["key"]: p for p in (self.package.parameters if self.package else [])}
        merged |= {p["key"]: p for p in (self.binding.parameters if self.binding else [])}
        return list(merged.values())

    def parameters(self) -> list[dict[str, Any]]:
        """What the action runs with: package < binding < action (OpenWhisk's `inherit`)."""
        merged = {p["key"]: p for p in self.inherited()}
        merged |= {p["key"]: p for p in self.action.parameters}
        return list(merged.values())


def binding_of(package: Package) -> QualifiedName | None:
    """The package a binding binds; None for a package."""
    if package.binding_namespace is None or package.binding_name is None:
        return None
    return QualifiedName(package.binding_namespace, None, package.binding_name)


async def find_package(session: AsyncSession, namespace_id: int, name: str) -> Package | None:
    """The package `name` of a namespace, if any."""
    return await session.scalar(select(Package).where(Package.namespace_id == namespace_id,
                                                      Package.name == name))


async def get_package(session: AsyncSession, namespace_id: int, name: str) -> Package:
    """The package, or NotFound."""
    package = await find_package(session, namespace_id, name)
    if package is None:
        raise NotFound(NOT_FOUND)
    return package


async def put_package(session: AsyncSession, namespace: Namespace, name: str,
                      spec: PackageSpec, overwrite: bool) -> Package:
    """Create, or with `overwrite` update (merging what is not sent), a package or binding."""
    if name in RESERVED_NAMES:
        raise BadRequest(f"Package name '{name}' is reserved.", param="name")
    package = await find_package(session, namespace.id, name)
    if package is not None and not overwrite:
        raise Conflict("resource already exists (PUT with ?overwrite=true updates it)")
    if package is None and await _default_package_action(session, namespace.id, name):
        raise Conflict(NOT_IN_COLLECTION)
    if spec.binding is not None:
        if package is not None and binding_of(package) is None:
            raise Conflict(PACKAGE_NOT_BINDING)
        await check_binding(session, namespace.name, spec.binding)
    if package is None:
        package = Package(namespace_id=namespace.id, name=name, version=FIRST_VERSION,
                          parameters=[], annotations=[], publish=False)
        session.add(package)
    else:
        package.version = next_version(package.version)
    _apply(package, spec)
    await session.flush()
    return package


def _apply(package: Package, spec: PackageSpec) -> None:
    if spec.binding is not None:
        package.binding_namespace, package.binding_name = spec.binding.namespace, spec.binding.name
    if spec.parameters is not None:
        package.parameters = spec.parameters
    annotations = package.annotations if spec.annotations is None else spec.annotations
    # The controller sets the `binding` annotation; any sent is replaced (as OpenWhisk does).
    package.annotations = [a for a in annotations if a["key"] != "binding"]
    bound = binding_of(package)
    if bound is not None:
        package.annotations.append({"key": "binding", "value": {"namespace": bound.namespace,
                                                               "name": bound.name}})
    if spec.publish is not None:
        package.publish = spec.publish
    package.updated_ms = now_ms()


async def check_binding(session: AsyncSession, caller: str, bound: QualifiedName) -> Package:
    """The package a new binding may bind: it exists, is not a binding, and is the caller's
    own or published."""
    target = await _package_named(session, bound.namespace, bound.name)
    if target is None:
        if await _action_named(session, bound):
            raise Conflict("Cannot bind to a resource that is not a package.")
        raise BadRequest(BINDING_DOES_NOT_EXIST, param="binding")
    if bound.namespace != caller and not target.publish:
        raise Forbidden("The supplied authentication is not authorized to access "
                        f"'{bound.namespace}/{bound.name}'.")
    if binding_of(target) is not None:
        raise BadRequest(BINDING_OF_BINDING, param="binding")
    return target


async def delete_package(session: AsyncSession, namespace_id: int, name: str) -> Package:
    """Delete a binding, or a package without actions (409 while it holds any)."""
    package = await get_package(session, namespace_id, name)
    if binding_of(package) is None:
        count = await session.scalar(select(func.count()).select_from(Action).where(
            Action.namespace_id == namespace_id, Action.package == name)) or 0
        if count:
            raise Conflict(f"Package not empty (contains {count} "
                           f"{'entity' if count == 1 else 'entities'})")
    await session.delete(package)
    await session.flush()
    return package


async def list_packages(session: AsyncSession, namespace_id: int, limit: int,
                        skip: int, *, published_only: bool = False) -> list[Package]:
    """Packages and bindings of a namespace, most recently updated first; `published_only`:
    its published packages alone (what another namespace sees, OpenWhisk's public view)."""
    query = select(Package).where(Package.namespace_id == namespace_id)
    if published_only:
        query = query.where(Package.publish.is_(True), Package.binding_name.is_(None))
    query = query.order_by(Package.updated_ms.desc(), Package.name).limit(limit).offset(skip)
    return list(await session.scalars(query))


async def count_packages(session: AsyncSession, namespace_id: int, skip: int, *,
                         published_only: bool = False) -> int:
    """How many packages and bindings the namespace has, past the first `skip` (OpenWhisk's
    count); `published_only` as in `list_packages`."""
    query = select(func.count()).select_from(Package).where(Package.namespace_id == namespace_id)
    if published_only:
        query = query.where(Package.publish.is_(True), Package.binding_name.is_(None))
    total = await session.scalar(query)
    return max(0, int(total or 0) - skip)


async def package_actions(session: AsyncSession, namespace_id: int,
                          package: str) -> list[Action]:
    """The actions of a package, by name."""
    return list(await session.scalars(select(Action).where(
        Action.namespace_id == namespace_id, Action.package == package).order_by(Action.name)))


async def resolve_action(session: AsyncSession, name: QualifiedName,
                         found: Action | None = None) -> Resolved:
    """The action `name` reaches (NotFound when none): its own, through its package, or
    through a binding to a package its namespace may read. `found`: the action already read
    in `name`'s namespace and package, if any."""
    if name.package is None:
        if found is None:
            raise NotFound(NOT_FOUND)
        return Resolved(found, name, name)
    package = await _package_named(session, name.namespace, name.package)
    if package is None:
        raise NotFound(NOT_FOUND)
    bound = binding_of(package)
    if bound is None:
        action = found or await _action_named(session, name)
        if action is None:
            raise NotFound(NOT_FOUND)
        return Resolved(action, name, name, package)
    # Checked again at each use: the bound package may have been unpublished since.
    target = await _package_named(session, bound.namespace, bound.name)
    if target is None or (bound.namespace != name.namespace and not target.publish):
        raise NotFound(NOT_FOUND)
    own = QualifiedName(bound.namespace, bound.name, name.name)
    action = await _action_named(session, own)
    if action is None:
        raise NotFound(NOT_FOUND)
    return Resolved(action, name, own, target, package)


async def reach_action(session: AsyncSession, namespace_id: int,
                       name: QualifiedName) -> Resolved | None:
    """What invoking `name` (of the namespace `namespace_id`) reaches, as `resolve_action`
    finds it, or None: for callers that name actions in rules, sequences and web paths."""
    found = await find_action(session, namespace_id, name)
    try:
        return await resolve_action(session, name, found)
    except NotFound:
        return None


def not_authorized(name: QualifiedName) -> Forbidden:
    """OpenWhisk's 403 for an entity of another namespace the caller may not reach."""
    return Forbidden(f"The supplied authentication is not authorized to access '{name.absolute}'.")


def shared_run_name(caller: str, name: QualifiedName) -> QualifiedName:
    """The name an action of another namespace's published package runs under for `caller`:
    in the caller's namespace (as OpenWhisk runs it for the invoking namespace: its
    containers, profiles and records are the caller's), and no entity's own (its package
    part holds a slash, which no package name may)."""
    return QualifiedName(caller, f"{name.namespace}/{name.package}", name.name)


def is_shared_run_name(name: QualifiedName) -> bool:
    """Whether `name` is a `shared_run_name` (not an entity's name)."""
    return name.package is not None and "/" in name.package


async def shared_package(session: AsyncSession, name: QualifiedName) -> Package:
    """The package `name.package` of another namespace, when the caller may read it: a
    published package, not a binding (403 otherwise, whether or not it exists)."""
    package = None if name.package is None else \
        await _package_named(session, name.namespace, name.package)
    if package is None or binding_of(package) is not None or not package.publish:
        raise not_authorized(name)
    return package


async def resolve_shared(session: AsyncSession, caller: str, name: QualifiedName) -> Resolved:
    """The action `name` of another namespace reaches for `caller`, as OpenWhisk's
    entitlement allows it (read and activate): an action of a published package, not of a
    binding nor of the default package (403, whether or not it exists: nothing of another
    namespace leaks); 404 when the published package has no such action."""
    package = await shared_package(session, name)
    action = await _action_named(session, name)
    if action is None:
        raise NotFound(NOT_FOUND)
    return Resolved(action, shared_run_name(caller, name), name, package)


async def writable_package(session: AsyncSession, namespace_id: int,
                           name: QualifiedName) -> None:
    """Refuse a PUT or DELETE of an action in a package that is absent (404) or a binding
    (400), as OpenWhisk does."""
    if name.package is None:
        package = await find_package(session, namespace_id, name.name)
        if package is not None:
            raise Conflict(NOT_IN_COLLECTION)
        return
    package = await get_package(session, namespace_id, name.package)
    if binding_of(package) is not None:
        raise BadRequest(NOT_ON_BINDING, param="package")


async def _package_named(session: AsyncSession, namespace: str, name: str) -> Package | None:
    return await session.scalar(select(Package).join(Namespace, Namespace.id ==
                                                      Package.namespace_id)
                                .where(Namespace.name == namespace, Package.name == name))


async def _action_named(session: AsyncSession, name: QualifiedName) -> Action | None:
    return await session.scalar(select(Action).join(Namespace, Namespace.id == Action.namespace_id)
                                .where(Namespace.name == name.namespace,
                                       Action.package == (name.package or ""),
                                       Action.name == name.name))


async def _default_package_action(session: AsyncSession, namespace_id: int, name: str) -> bool:
    return await session.scalar(select(Action.id).where(
        Action.namespace_id == namespace_id, Action.package == "", Action.name == name)) is not None
