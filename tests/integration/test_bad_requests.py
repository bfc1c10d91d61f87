"""Bad requests of every class get a 4xx JSON error naming the parameter, and run nothing.

Bodies that are not UTF-8, nested too deep or holding what no database stores; query numbers
in Unicode digits or past a 64-bit column; header-level errors; invocations refused before
their activation exists (no record, no usage, no container).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.controller.appkeys import sessions_key

pytestmark = pytest.mark.docker
NS = "/api/v1/namespaces/_"
JSON_ROUTES = [("PUT", f"{NS}/actions/x"), ("POST", f"{NS}/actions/p"),
               ("POST", "/v1/completions"), ("POST", "/v1/chat/completions")]


async def error_text(response) -> str:  # type: ignore[no-untyped-def]
    """The message of a JSON error, in OpenWhisk's shape or (under /v1) OpenAI's."""
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    error = body["error"]
    return str(error["message"] if isinstance(error, dict) else error)


async def put_pirate(platform, demo_models, make_zip, name: str = "p") -> None:  # type: ignore[no-untyped-def]
    """Create the action `name` from the demo's pirate adapter."""
    code = base64.b64encode(make_zip(demo_models.adapters["pirate"])).decode()
    response = await platform.request("PUT", f"{NS}/actions/{name}",
                                      json={"exec": {"kind": "lora", "binary": True,
                                                     "code": code}})
    assert response.status == 200, await response.text()


async def nothing_ran(platform) -> None:  # type: ignore[no-untyped-def]
    """No activation, usage record or pending invocation stored, and no container started."""
    from sqlalchemy import func, select

    from lorafaas.registry.models import Activation, PendingInvocation, UsageRecord

    await asyncio.sleep(0)  # a wrongly started activation would have been scheduled by now
    async with platform.app[sessions_key]() as session:
        for model in (Activation, PendingInvocation, UsageRecord):
            assert await session.scalar(select(func.count()).select_from(model)) == 0, model
    assert platform.app[local_invoker_key].pool.containers() == []


BAD_BODIES = [
    (b'{"prompt": "\xff\xfe"}', "UTF-8"),
    (b"[" * 40 + b"]" * 40, "nested"),
    (b"[" * 100_000, "nested"),  # deeper than json's recursion: RecursionError, not a 500
    (b'{"prompt": "a", "temperature": NaN}', "NaN"),
    (b'{"prompt": "nul \\u0000"}', "NUL"),
    (b'{"prompt": "\\ud800"}', "surrogate"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "digits"),
]


async def test_bad_json_bodies_are_400_on_every_json_route(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    await put_pirate(platform, demo_models, make_zip)
    for method, path in JSON_ROUTES:
        for raw, named in BAD_BODIES:
            response = await platform.request(method, path, data=raw,
                                              headers={"Content-Type": "application/json"})
            assert response.status == 400, (path, raw[:30], await response.text())
            message = await error_text(response)
            assert named.lower() in message.lower() and "malformed" in message, message
    await nothing_ran(platform)


BAD_QUERIES = [
    ({"since": "²"}, "since"),  # int() refuses it
    ({"since": "٣"}, "since"),  # int() takes it as 3
    ({"upto": "99999999999999999999999"}, "upto"),  # past a BIGINT
    ({"skip": "9223372036854775808"}, "skip"),
    ({"limit": "201"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"docs": "maybe"}, "docs"),
    ({"name": "a\x00b"}, "name"),
]


async def test_bad_query_values_are_400_naming_them(platform):  # type: ignore[no-untyped-def]
    for query, param in BAD_QUERIES:
        for path in (f"{NS}/activations", f"{NS}/usage", "/api/v1/admin/usage"):
            if param in ("limit", "skip", "docs", "name") and "usage" in path:
                continue
            response = await platform.request("GET", path, params=query)
            assert response.status == 400, (path, query, await response.text())
            assert f"'{param}'" in await error_text(response), (path, query)


async def test_refused_invocations_run_nothing(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    await put_pirate(platform, demo_models, make_zip)
    cases: list[tuple[dict[str, str], Any, str]] = [
        ({"blocking": "true", "timeout": "²"}, {"prompt": "hi"}, "timeout"),
        ({"blocking": "true", "timeout": "٣"}, {"prompt": "hi"}, "timeout"),
        ({"blocking": "true", "timeout": "0"}, {"prompt": "hi"}, "timeout"),
        ({"blocking": "true", "timeout": "600001"}, {"prompt": "hi"}, "timeout"),
        ({"blocking": "yes"}, {"prompt": "hi"}, "blocking"),
        ({"result": "1"}, {"prompt": "hi"}, "result"),
        ({}, {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({}, {"prompt": "hi", "max_tokens": 513}, "max_tokens"),  # over the action's limit
        ({}, {"prompt": "hi", "max_tokens": "4"}, "max_tokens"),
        ({}, {"prompt": "hi", "temperature": 2.5}, "temperature"),
        ({}, {"prompt": "hi", "top_p": True}, "top_p"),
        ({}, {"prompt": "hi", "seed": 2**64}, "seed"),
        ({}, {"prompt": "hi", "stop": [""]}, "stop"),
        ({}, {"prompt": "hi", "stream": "no"}, "stream"),
        ({}, {"messages": []}, "messages"),
        ({}, {"max_tokens": 2}, "prompt"),
        ({}, [1, 2], "JSON object"),
    ]
    for query, parameters, named in cases:
        response = await platform.request("POST", f"{NS}/actions/p", params=query,
                                          json=parameters)
        assert response.status == 400, (query, parameters, await response.text())
        assert named in await error_text(response), (query, parameters)
    for path, body in (("/v1/completions", {"model": "p", "prompt": "x", "max_tokens": 0}),
                       ("/v1/chat/completions", {"model": "p", "messages": [
                           {"content": "x"}], "temperature": 9})):
        response = await platform.request("POST", path, json=body)
        assert response.status == 400, await response.text()
    await nothing_ran(platform)


async def test_bad_names_and_ids_are_400(platform):  # type: ignore[no-untyped-def]
    from yarl import URL

    for path, named in ((f"{NS}/actions/{'n' * 257}", "'name'"), (f"{NS}/actions/-x", "'name'"),
                        (f"{NS}/actions/a%00b", "NUL"), (f"{NS}/activations/xyz", "'id'"),
                        (f"{NS}/activations/{'A' * 32}/logs", "'id'")):
        response = await platform.request("GET", URL(path, encoded=True))
        assert response.status == 400, (path, await response.text())
        assert named in await error_text(response), path


async def raw_exchange(platform, request: bytes) -> tuple[int, dict[str, str], bytes]:  # type: ignore[no-untyped-def]
    """Send raw bytes to the server; the status, headers and body of its answer."""
    reader, writer = await asyncio.open_connection(platform.client.host, platform.client.port)
    writer.write(request)
    await writer.drain()
    head, _, rest = (await reader.read(1 << 20)).partition(b"\r\n\r\n")
    writer.close()
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("Content-Length", len(rest)))
    while len(rest) < length:
        rest += await reader.read(length - len(rest)) or b""
    return int(lines[0].split()[1]), headers, rest


def _request(headers: bytes) -> bytes:
    return b"GET /api/v1/namespaces/_/actions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


async def test_header_level_errors_are_json(platform):  # type: ignore[no-untyped-def]
    import json

    auth = platform.headers["Authorization"].encode()
    for raw in (_request(b"Authorization: Basic \xff\xfe\xfd\r\n"),  # not UTF-8
                _request(b"Authorization: Bearer \xc3\x28:k\r\n"),
                _request(b"Authorization: Basic " + base64.b64encode(b"\xff:\xfe") + b"\r\n"),
                _request(b"Authorization: Basic " + base64.b64encode(b"a\x00b:c") + b"\r\n")):
        status, headers, body = await raw_exchange(platform, raw)
        assert status in (400, 401), body  # the parser may refuse the bytes itself
        assert headers["Content-Type"].startswith("application/json"), body
        assert set(json.loads(body)) == {"error", "code"}
    too_long = _request(auth.join([b"Authorization: ", b"\r\nX-Long: " + b"a" * 10_000 + b"\r\n"]))
    too_many = _request(b"".join(b"X-H%d: v\r\n" % i for i in range(200)))
    for raw in (too_long, too_many, b"GET /\x00 HTTP/1.1\r\n\r\n"):
        status, headers, body = await raw_exchange(platform, raw)
        assert 400 <= status < 500 and headers["Content-Type"].startswith("application/json"), \
            (status, body)
        assert set(json.loads(body)) == {"error", "code"}


async def test_405_names_the_allowed_methods_and_404_is_json(platform):  # type: ignore[no-untyped-def]
    response = await platform.request("PATCH", f"{NS}/actions/x")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) >= {"GET", "PUT", "DELETE", "POST"}
    await error_text(response)
    for path in ("/nothing", "/api/v2", "/v1/nothing"):
        response = await platform.request("GET", path)
        assert response.status == 404
        await error_text(response)


async def test_failed_logins_are_rate_limited(platform):  # type: ignore[no-untyped-def]
    import aiohttp

    burst = platform.settings.login_failures_burst
    for _ in range(burst * 2):  # successful ones take nothing
        assert (await platform.request("GET", f"{NS}/actions")).status == 200
    key_uuid = platform.credential.partition(":")[0]
    wrong = {"Authorization": aiohttp.encode_basic_auth(key_uuid, "wrong")}
    statuses = [(await platform.client.get(f"{NS}/actions", headers=wrong)).status
                for _ in range(burst)]
    assert statuses == [401] * burst
    refused = await platform.client.get(f"{NS}/actions", headers=wrong)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "sign-ins" in await error_text(refused)
    # The console's sign-in form is refused too: the address has used its failures up.
    page = await platform.client.get("/console/sign-in")
    form = {"csrf": hidden_field(await page.text(), "csrf"), "key": platform.credential}
    signed_in = await platform.client.post("/console/sign-in", data=form,
                                           allow_redirects=False)
    assert signed_in.status == 429 and int(signed_in.headers["Retry-After"]) >= 1


def hidden_field(html: str, name: str) -> str:
    """The value of the form input called `name`."""
    from html.parser import HTMLParser

    values: list[str] = []

    class Inputs(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            fields = dict(attrs)
            if tag == "input" and fields.get("name") == name:
                values.append(fields.get("value") or "")

    Inputs().feed(html)
    assert values, f"no input {name!r}"
    return values[0]
