"""The usage resource: a namespace's usage and cost report, and the admin view of all."""

from __future__ import annotations

from aiohttp import web

from lorafaas.billing.prices import price_sheet
from lorafaas.billing.reports import (
    ReportQuery,
    build_report,
    load_created,
    load_rows,
    report_csv,
)
from lorafaas.controller.api.params import epoch_ms
from lorafaas.controller.appkeys import invocations_key, sessions_key, settings_key
from lorafaas.controller.auth import identify, namespace_of
from lorafaas.errors import BadRequest, Forbidden


async def namespace_usage(request: web.Request) -> web.Response:
    """The caller's namespace's usage (`since`, `upto`, `groupBy`, `format=json|csv`)."""
    identity = await namespace_of(request)
    return await _report(request, identity.namespace, "action")


async def admin_usage(request: web.Request) -> web.Response:
    """Every namespace's usage, for keys of a namespace in LORAFAAS_ADMIN_NAMESPACES."""
    identity = await identify(request)
    if identity.namespace not in request.app[settings_key].admin_namespaces:
        raise Forbidden("Only keys of an admin namespace (LORAFAAS_ADMIN_NAMESPACES) may read "
                        "every namespace's usage.")
    return await _report(request, request.query.get("namespace"), "namespace")


async def _report(request: web.Request, namespace: str | None,
                  default_group: str) -> web.Response:
    output = request.query.get("format", "json")
    if output not in ("json", "csv"):
        raise BadRequest(f"'format' must be json or csv, not {output!r}")
    query = ReportQuery(namespace, epoch_ms(request, "since"), epoch_ms(request, "upto"),
                        request.query.get("groupBy", default_group))
    await request.app[invocations_key].settled(namespace)  # the usage just answered
    async with request.app[sessions_key]() as session:
        rows = await load_rows(session, query)
        created = await load_created(session, query.namespace)
    report = build_report(query, rows, price_sheet(request.app[settings_key]), created)
    if output == "csv":
        return web.Response(text=report_csv(report), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="usage.csv"'})
    return web.json_response(report)
