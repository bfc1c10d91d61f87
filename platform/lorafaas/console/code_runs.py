"""What a function page shows beyond a lora function's: a sequence's components as links, a
web action's URL, and the JSON form that runs a code action or sequence."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import ComponentLink, RunResult
from lorafaas.controller.appkeys import actions_key, invocations_key
from lorafaas.controller.protocol import check_invoke_parameters
from lorafaas.errors import BadRequest
from lorafaas.names import InvalidName, QualifiedName
from lorafaas.registry.models import Action

MAX_PARAMETERS_CHARS = 100_000  # the form's JSON; the API takes larger bodies


def component_links(components: list[str] | None, namespace: str) -> tuple[ComponentLink, ...]:
    """Each component with the console page showing it: its function's page (the default
    package), the packages page (a package's action), none (another namespace's)."""
    return tuple(ComponentLink(name, _component_href(name, namespace))
                 for name in components or [])


def _component_href(component: str, namespace: str) -> str | None:
    try:
        name = QualifiedName.parse(component, namespace)
    except InvalidName:
        return None
    if name.namespace != namespace:
        return None
    if name.package is not None:
        return f"/console/packages#package-{name.package}"
    return f"/console/functions/{name.name}"


def web_url(endpoint: str, namespace: str, action: Action) -> str | None:
    """`{endpoint}/api/v1/web/{namespace}/default/{name}` when the action is web-exported."""
    exported = any(a.get("key") == "web-export" and a.get("value") is True
                   for a in action.annotations)
    return f"{endpoint}/api/v1/web/{namespace}/default/{action.name}" if exported else None


def form_parameters(text: str) -> dict[str, Any]:
    """The JSON form's parameters: a JSON object (blank: none); a 400 naming the problem."""
    if len(text) > MAX_PARAMETERS_CHARS:
        raise BadRequest(f"The parameters are longer than {MAX_PARAMETERS_CHARS} characters.")
    if not text.strip():
        return {}
    try:
        parameters = json.loads(text)
    except ValueError as error:
        raise BadRequest(f"The parameters are not JSON: {error}") from error
    if not isinstance(parameters, dict):
        raise BadRequest('The parameters must be a JSON object, such as {"name": "world"}.')
    return parameters


async def run_action(request: web.Request, action: Action,
                     parameters: dict[str, Any]) -> RunResult:
    """A blocking invocation as the API's (package parameters merged, `final` enforced)."""
    identity = request[console_identity_key]
    name = QualifiedName.of(identity.namespace, None, action.name)
    resolved = await request.app[actions_key].resolve(identity, name, action)
    check_invoke_parameters(resolved.parameters(), resolved.action.annotations, parameters)
    invocation = await request.app[invocations_key].start(
        identity, resolved.action, parameters, durable=False, resolved=resolved)
    row = await invocation.task
    response = row.response or {}
    return RunResult(row.activation_id, bool(response.get("success")),
                     str(response.get("status", "")),
                     json.dumps(response.get("result"), indent=2, ensure_ascii=False))
