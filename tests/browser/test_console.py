"""The web console in Debian's headless Chromium, driven by Playwright, against a real platform.

Sign in (a wrong key first), upload a bad file and then the demo adapter's folder, run the
playground and watch the output stream, open the activation and the usage page and find the
new cost. Screenshots of each step go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# No network here beyond package registries: keep Chromium from dialling out.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
STEP_TIMEOUT_MS = 240_000  # a cold start loads torch, attaches the backbone, warms kernels


@pytest.fixture
async def browser_page(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """A fresh page of headless Chromium."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./deploy/test (ensure_browser installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS, headless=True)
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(30_000)
        yield page
        await context.close()
        await browser.close()


class Shots:
    """Numbered screenshots of one test run."""

    def __init__(self, page: object, prefix: str) -> None:
        self.page, self.prefix, self.count = page, prefix, 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def path(self, step: str) -> Path:
        """The next numbered screenshot's file."""
        self.count += 1
        return SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"

    async def take(self, step: str) -> Path:
        path = self.path(step)
        await self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


async def test_console_from_sign_in_to_usage(platform, browser_page, demo_models,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, request: pytest.FixtureRequest
                                             ) -> None:
    from playwright.async_api import expect

    page = browser_page
    base = str(platform.client.make_url("")).rstrip("/")
    backend = request.node.callspec.id if hasattr(request.node, "callspec") else "run"
    shots = Shots(page, f"console-{backend}")

    # Signed out, the console leads to the sign-in page; a wrong key says so next to the field.
    await page.goto(f"{base}/console/functions")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.fill("#key", "00000000-0000-0000-0000-000000000000:wrong")
    await page.click("button[type=submit]")
    await expect(page.locator("#key-error")).to_contain_text("This key was not accepted")
    await shots.take("wrong-key")

    await page.fill("#key", platform.credential)
    await page.click("form.card button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions$"))
    await expect(page.locator("#namespace")).to_have_text(platform.settings.guest_namespace)
    cookie = next(c for c in await page.context.cookies() if c["name"] == "lorafaas_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert platform.credential.split(":")[1] not in cookie["value"]
    await shots.take("functions-empty")

    # A bad upload: the error is shown next to the adapter field, in plain words.
    not_a_zip = tmp_path / "adapter.zip"
    not_a_zip.write_text("this is not a zip archive")
    await page.goto(f"{base}/console/upload")
    await page.fill("#name", "broken")
    await page.set_input_files("#adapter-zip", str(not_a_zip))
    await page.click("#upload button[type=submit]")
    await expect(page.locator("#adapter-error")).to_contain_text("not a zip archive")
    await expect(page.locator("#name-error")).to_be_hidden()
    await shots.take("bad-upload")

    # The demo adapter's folder, with the progress bar.
    await page.goto(f"{base}/console/upload")
    await page.fill("#name", "pirate")
    await page.set_input_files("#adapter-folder", str(demo_models.adapters["pirate"]))
    await page.click("#upload button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions/pirate$"), timeout=60_000)
    assert await page.locator("#upload-progress").count() == 0  # left the upload page
    await shots.take("function-page")

    # The playground: count how often the output grows while the stream runs.
    await page.evaluate("""() => {
        window.outputChanges = 0;
        new MutationObserver(() => { window.outputChanges += 1; })
            .observe(document.getElementById('output'),
                     {childList: true, characterData: true, subtree: true});
    }""")
    await page.fill("input[name=max_tokens]", "16")
    await page.click("#playground button[type=submit]")
    await expect(page.locator("#run-stats")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    await expect(page.locator("#playground-error")).to_be_hidden()
    output = await page.locator("#output").text_content()
    assert output and output.strip(), "the playground showed no output"
    assert await page.evaluate("window.outputChanges") > 1, "the output did not stream"
    completion_tokens = int(await page.locator("#stat-completion-tokens").text_content() or 0)
    assert completion_tokens > 0
    await expect(page.locator("#stat-start-kind")).not_to_have_text("—")
    await expect(page.locator("#stat-ttft")).to_contain_text("ms")
    playground_cost = (await page.locator("#stat-cost").text_content() or "").strip()
    assert playground_cost.startswith("$"), playground_cost
    await shots.take("playground")

    # The activation's page: the record, the cost, the init breakdown of the cold start.
    activation_id = (await page.locator("#stat-activation").text_content() or "").strip()
    await page.click("#stat-activation")
    await expect(page).to_have_url(re.compile(f"/console/activations/{activation_id}$"))
    await expect(page.locator("#cost")).to_have_text(playground_cost)
    await expect(page.locator("#status")).to_have_text("success")
    await expect(page.locator("#init-breakdown li").first).to_be_visible()
    await shots.take("activation")

    # The API's record holds the same cost, and it is not zero.
    response = await platform.request("GET", f"/api/v1/namespaces/_/activations/{activation_id}")
    record = await response.json()
    cost = next(a["value"] for a in record["annotations"] if a["key"] == "cost")
    assert cost["total"] > 0 and f"${cost['total']:.6f}" == playground_cost

    # The usage page: the new cost on pirate's line, drawn charts, and the CSV download.
    await page.goto(f"{base}/console/usage")
    line = page.locator("#usage-lines tbody tr", has_text="pirate")
    await expect(line).to_have_count(1)
    await expect(line.locator("td").nth(2)).to_have_text("1")
    await expect(line.locator("td").nth(5)).to_have_text(playground_cost)
    await expect(page.locator("#total-cost")).to_have_text(playground_cost)
    drawn = await page.evaluate("() => Chart.getChart('chart-cost') !== undefined")
    assert drawn, "Chart.js did not draw the cost chart"
    await shots.take("usage")
    async with page.expect_download() as download_info:
        await page.click("#csv")
    download = await download_info.value
    csv_text = Path(await download.path()).read_text()
    assert activation_id in csv_text

    # The functions list shows the warm instance and today's request.
    await page.goto(f"{base}/console/functions")
    row = page.locator("#functions tbody tr", has_text="pirate")
    await expect(row.locator(".state")).to_have_text("warm")
    await expect(row.locator("td").nth(5)).to_have_text("1")  # requests today
    await shots.take("functions")

    # The admin's platform page, then signing out.
    await page.goto(f"{base}/console/platform")
    await expect(page.locator("#containers tbody tr").first).to_contain_text("pirate")
    await shots.take("platform")
    await page.click(".sign-out button")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.goto(f"{base}/console/usage")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))


async def test_console_errors_are_html_and_api_errors_stay_json(platform) -> None:  # type: ignore[no-untyped-def]
    from html.parser import HTMLParser

    response = await platform.client.get("/console/nowhere", allow_redirects=False)
    assert response.status == 303  # signed out: to the sign-in page first
    response = await platform.client.post("/console/sign-in", data={"key": "x:y"})
    assert response.status == 403 and "text/html" in response.headers["Content-Type"]
    texts: list[str] = []

    class Text(HTMLParser):
        def handle_data(self, data: str) -> None:
            texts.append(data)

    Text().feed(await response.text())
    assert any("did not come from this console" in t for t in texts)
    response = await platform.client.get("/api/v1/namespaces/_/actions")
    assert response.status == 401
    assert set(await response.json()) == {"error", "code"}
