"""The console's packages page: each package or binding, its parameters and its actions."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import PackageRow, PackagesPage
from lorafaas.console.render import render_page
from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Package


async def list_packages(request: web.Request) -> web.Response:
    """The namespace's packages and bindings (the first 200)."""
    identity = request[console_identity_key]
    async with request.app[sessions_key]() as session:
        packages = await package_rows.list_packages(session, identity.namespace_id, 200, 0)
        rows = [await _row(session, identity.namespace_id, package) for package in packages]
    return await render_page(request, PackagesPage(sorted(rows, key=lambda row: row.name)))


async def _row(session: AsyncSession, namespace_id: int,
               package: Package) -> PackageRow:
    bound = package_rows.binding_of(package)
    actions = [] if bound is not None else [
        action.name for action in await package_rows.package_actions(session, namespace_id,
                                                                     package.name)]
    return PackageRow(package.name, package.version, package.publish,
                      None if bound is None else f"{bound.namespace}/{bound.name}",
                      [str(p["key"]) for p in package.parameters], actions)
