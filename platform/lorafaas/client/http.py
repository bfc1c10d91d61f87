"""A small synchronous client of the platform's REST API (OpenWhisk's), on `requests`."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests

from lorafaas.names import QualifiedName

ACTIVATION_HEADER = "x-openwhisk-activation-id"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # a blocking invoke may wait for a cold start and the generation


class ClientError(Exception):
    """A request failed: the server's `error` text and `code`, or why no answer came (status 0)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status, JSON body and activation id header."""

    status: int
    body: Any
    activation_id: str | None


def api_base_url(apihost: str) -> str:
    """`<apihost>/api/v1`; a host without a scheme is https, or http on a loopback address."""
    apihost = apihost.strip().rstrip("/")
    if not apihost:
        return ""
    if "://" not in apihost:
        host = urlsplit(f"//{apihost}").hostname or ""
        apihost = f"{'http' if _is_loopback(host) else 'https'}://{apihost}"
    return apihost if apihost.endswith("/api/v1") else f"{apihost}/api/v1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class ApiClient:
    """The REST resources the verbs use, with Basic auth `uuid:key`."""

    def __init__(self, apihost: str, auth: str) -> None:
        self.base_url = api_base_url(apihost)
        self.session = requests.Session()
        if auth:
            user, _, key = auth.partition(":")
            self.session.auth = (user, key)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self.session.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, accept: tuple[int, ...] = (200,)) -> Reply:
        """Send one request; a status outside `accept` raises ClientError with the server's text."""
        if not self.base_url:
            raise ClientError(0, "The API host is not valid: An API host must be provided "
                                 "(lorafaas property set --apihost HOST).")
        url = self.base_url + path
        try:
            response = self.session.request(method, url, params=params, json=body,
                                            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as error:
            raise ClientError(0, f"{method} {url} failed: {_why(error)}") from error
        payload = _json_or_none(response)
        if response.status_code not in accept:
            raise _error(response, payload)
        return Reply(response.status_code, payload, response.headers.get(ACTIVATION_HEADER))

    def info(self) -> dict[str, Any]:
        """What the API is (`GET /api/v1`): description, api_version, build."""
        result: dict[str, Any] = self.request("GET", "").body
        return result

    def put_action(self, name: QualifiedName, action: dict[str, Any],
                   overwrite: bool) -> dict[str, Any]:
        """Create (or with `overwrite` update) an action."""
        return self._body("PUT", _action_path(name), body=action,
                          params={"overwrite": _flag(overwrite)})

    def get_action(self, name: QualifiedName, code: bool = False) -> dict[str, Any]:
        """One action, its zip as base64 only when `code`."""
        return self._body("GET", _action_path(name), params={"code": _flag(code)})

    def list_backbones(self) -> list[dict[str, Any]]:
        """The backbones the platform serves, the default first."""
        return self._body("GET", "/backbones")

    def list_actions(self, namespace: str, limit: int, skip: int) -> list[dict[str, Any]]:
        """The namespace's actions."""
        return self._body("GET", f"{_namespace_path(namespace)}/actions",
                          params={"limit": limit, "skip": skip})

    def delete_action(self, name: QualifiedName) -> dict[str, Any]:
        """Delete an action; the deleted action."""
        return self._body("DELETE", _action_path(name))

    def invoke(self, name: QualifiedName, parameters: dict[str, Any], blocking: bool,
               result: bool) -> Reply:
        """Invoke: 202 with the id, 200 with the record (or result), 502 when the action failed."""
        return self.request("POST", _action_path(name), body=parameters,
                            params={"blocking": _flag(blocking), "result": _flag(result)},
                            accept=(200, 202, 502))

    def put_package(self, name: QualifiedName, package: dict[str, Any],
                    overwrite: bool) -> dict[str, Any]:
        """Create (or with `overwrite` update) a package or binding (`name.name` is its name)."""
        return self._body("PUT", _package_path(name), body=package,
                          params={"overwrite": _flag(overwrite)})

    def get_package(self, name: QualifiedName) -> dict[str, Any]:
        """One package with its actions."""
        return self._body("GET", _package_path(name))

    def list_packages(self, namespace: str, limit: int, skip: int) -> list[dict[str, Any]]:
        """The namespace's packages and bindings."""
        return self._body("GET", f"{_namespace_path(namespace)}/packages",
                          params={"limit": limit, "skip": skip})

    def delete_package(self, name: QualifiedName) -> dict[str, Any]:
        """Delete a package or binding; the deleted one."""
        return self._body("DELETE", _package_path(name))

    def list_activations(self, name: str | None, limit: int, skip: int
                         ) -> list[dict[str, Any]]:
        """Activation records, newest first, optionally of one action."""
        params: dict[str, Any] = {"limit": limit, "skip": skip}
        if name:
            params["name"] = name
        return self._body("GET", f"{_namespace_path('_')}/activations", params=params)

    def get_activation(self, activation_id: str) -> dict[str, Any]:
        """One activation record."""
        return self._body("GET", _activation_path(activation_id))

    def activation_logs(self, activation_id: str) -> dict[str, Any]:
        """`{"logs": [...]}` of an activation."""
        return self._body("GET", f"{_activation_path(activation_id)}/logs")

    def activation_result(self, activation_id: str) -> dict[str, Any]:
        """The `response` of an activation: status, statusCode, success, result."""
        return self._body("GET", f"{_activation_path(activation_id)}/result")

    def _body(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).body


def _why(error: requests.RequestException) -> str:
    if isinstance(error, requests.ConnectionError):
        return "the API host does not answer (connection refused or unreachable)"
    if isinstance(error, requests.Timeout):
        return f"no answer within {READ_TIMEOUT_S:.0f} seconds"
    return str(error)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: requests.Response, payload: Any) -> ClientError:
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        code = payload.get("code")
        return ClientError(response.status_code, payload["error"],
                           str(code) if code is not None else None)
    text = response.text.strip()[:200] or response.reason
    return ClientError(response.status_code, f"{response.status_code} {text}")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _namespace_path(namespace: str) -> str:
    return f"/namespaces/{quote(namespace, safe='')}"


def _action_path(name: QualifiedName) -> str:
    # OpenWhisk's path of an action in a package: actions/{package}/{action}.
    parts = [name.name] if name.package is None else [name.package, name.name]
    return f"{_namespace_path(name.namespace)}/actions/" + "/".join(quote(p, safe="")
                                                                    for p in parts)


def _package_path(name: QualifiedName) -> str:
    return f"{_namespace_path(name.namespace)}/packages/{quote(name.name, safe='')}"


def _activation_path(activation_id: str) -> str:
    return f"{_namespace_path('_')}/activations/{quote(activation_id, safe='')}"
