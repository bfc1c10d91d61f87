"""The console's API reference in headless Chromium, at desktop and phone widths.

Reached from the navigation; Swagger UI (served by the platform from the swagger-ui-bundle
package) draws every operation of `/api/v1/openapi.json`, and no request leaves the
platform's own address; an operation tried from the page with the namespace's key answers
200. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_console import Shots, browser_page  # noqa: F401  (a fixture)
from tests.browser.test_function_page import WIDTHS, sign_in

pytestmark = [pytest.mark.docker, pytest.mark.browser]


async def operations(platform: Any) -> int:
    """How many operations the OpenAPI document describes."""
    response = await platform.client.get("/api/v1/openapi.json")
    assert response.status == 200
    return sum(len(methods) for methods in (await response.json())["paths"].values())


async def test_the_api_reference_draws_the_openapi_document_from_this_host(  # type: ignore[no-untyped-def]
        platform, browser_page) -> None:  # noqa: F811  (the fixture imported above)
    from playwright.async_api import expect

    page = browser_page
    base = str(platform.client.make_url("")).rstrip("/")
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:")
            else elsewhere.append(r.url))
    await sign_in(page, base, platform.credential)
    shots = Shots(page, "api-reference")
    expected = await operations(platform)
    assert expected > 10

    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{base}/console/functions")
        await page.click(".nav nav a:has-text('API reference')")
        await expect(page).to_have_url(re.compile(r"/console/api-reference$"))
        await expect(page.locator(".nav nav a[aria-current=page]")).to_have_text(
            "API reference")
        await expect(page.locator("#swagger-ui .info .title")).to_contain_text(
            "LoRAFaaS REST API")
        await expect(page.locator("#swagger-ui .opblock")).to_have_count(expected)
        await expect(page.locator("#renderer")).to_have_text(re.compile(r"^Swagger UI \d+\."))
        overflow = await page.evaluate("""() => [document.documentElement.scrollWidth,
                                                 window.innerWidth]""")
        assert overflow[0] <= overflow[1], (width_name, overflow)
        await shots.take(width_name)

    # Try an operation from the page with the namespace's key: the answer is the real one.
    await page.set_viewport_size({"width": 1200, "height": 900})
    uuid, key = platform.credential.split(":", 1)
    await page.click("#swagger-ui .btn.authorize")
    dialog = page.locator("#swagger-ui .dialog-ux")
    await dialog.locator("input[type=text]").fill(uuid)
    await dialog.locator("input[type=password]").fill(key)
    await dialog.locator("button.authorize").click()
    await dialog.locator("button.btn-done").click()
    path = page.locator(".opblock-summary-path[data-path='/api/v1/namespaces']")
    operation = page.locator("#swagger-ui .opblock-get", has=path)
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    await expect(status).to_have_text("200")
    body = operation.locator(".live-responses-table .response .response-col_description pre")
    await expect(body.first).to_contain_text(f'"{platform.settings.guest_namespace}"')
    await shots.take("tried")
    assert elsewhere == [], elsewhere  # everything came from the platform itself
