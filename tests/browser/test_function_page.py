"""A function's page in headless Chromium at desktop and phone widths, on one real platform.

How to call it (curl, OpenAI Python, the CLI) with the real name and the endpoint, copied to
the clipboard; the latency table without a request refused before it ran; limits edited
through the action service; the playground's chat mode with turns and stop sequences, its
max_tokens bounded by the function's limit; the latency table and the charts over time
(requests, TTFT, cold-start share, cost per hour) taking each run in without a reload; the
activation pages; the platform page's RSS and PSS and its recent evictions, refreshed live;
every page at a phone's width without sideways scrolling; a function deleted after typing
its name. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from typing import Any

import pytest

from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry.models import Activation
from tests.browser.test_console import (  # noqa: F401  (browser_page: a fixture)
    STEP_TIMEOUT_MS,
    Shots,
    browser_page,
)

pytestmark = [pytest.mark.docker, pytest.mark.browser]
WIDTHS = {"desktop": 1200, "phone": 390}
# An error as long as a wrong-rank one, which once filled a 5,110 px page.
LONG_ERROR = "The adapter's rank 8 does not fit the backbone's layers:\n" + "\n".join(
    f"model.layers.{i}.self_attn.q_proj: lora_A is [8, 64], the layer's input is 128"
    for i in range(120))


async def create(platform: Any, name: str, zip_bytes: bytes) -> None:
    """Create a function from the demo adapter's zip through the API."""
    response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                      data=io.BytesIO(zip_bytes),
                                      headers={"Content-Type": "application/zip"})
    assert response.status == 200, await response.text()


async def store_refused(platform: Any, name: str) -> str:
    """A record of a request refused before it ran: no container, no start kind, 90 s."""
    now_ms = int(time.time() * 1000)
    activation_id = uuid.uuid4().hex
    row = Activation(activation_id=activation_id, namespace=platform.settings.guest_namespace,
                     name=name, version="0.0.1", subject="guest", start_ms=now_ms - 90_000,
                     end_ms=now_ms, status_code=1, logs=[],
                     response={"status": "application error", "success": False,
                               "result": {"error": LONG_ERROR}},
                     annotations=[{"key": "startKind", "value": None}])
    async with platform.app[sessions_key]() as session, session.begin():
        session.add(row)
    return activation_id


# The sum of a chart's first series (Chart.js draws the function page's charts).
CHART_SUM = ("Chart.getChart('%s').data.datasets[0].data"
             ".reduce((a, b) => a + (b || 0), 0)")


async def chart_sum(page: Any, chart: str) -> float:
    """The sum of a chart's first series, as drawn."""
    return float(await page.evaluate(CHART_SUM % chart))


async def chart_values(page: Any, chart: str) -> list[float]:
    """Every value of a chart's series that is not a gap (null), as drawn."""
    return list(await page.evaluate(
        f"Chart.getChart('{chart}').data.datasets.flatMap((d) => d.data)"
        ".filter((v) => v !== null)"))


async def sign_in(page: Any, base: str, credential: str) -> None:
    """Sign the browser in with the guest's key."""
    from playwright.async_api import expect

    await page.goto(f"{base}/console/sign-in")
    await page.fill("#key", credential)
    await page.click("form.card button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions$"))


@pytest.mark.unshared  # the platform page's container of the function, evicted on update
async def test_function_page_calls_limits_and_delete(  # type: ignore[no-untyped-def]
        platform, browser_page, demo_models, make_zip) -> None:  # noqa: F811  (a fixture)
    from playwright.async_api import expect

    page = browser_page
    base = str(platform.client.make_url("")).rstrip("/")
    namespace = platform.settings.guest_namespace
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    await create(platform, "pirate", zip_bytes)
    await create(platform, "doomed", zip_bytes)
    refused = await store_refused(platform, "pirate")
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in(page, base, platform.credential)
    shots = Shots(page, "function-page")

    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{base}/console/functions/pirate")
        await expect(page.locator("#endpoint")).to_have_text(f"{base}/v1")
        for key in ("curl", "python", "cli"):
            code = await page.locator(f"#code-{key}").inner_text()
            assert base in code, (key, code)
            assert ("pirate" in code) and (key == "cli" or f"{namespace}/pirate" in code), code
        await page.click("#snippet-curl button.copy")
        await expect(page.locator("#snippet-curl button.copy")).to_have_text("Copied")
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert copied == await page.locator("#code-curl").inner_text()
        # The refused request is listed, but has no latency to count.
        await expect(page.locator(f"a[href='/console/activations/{refused}']")).to_have_count(1)
        duration = page.locator("#latency tbody tr", has_text="duration")
        await expect(duration.locator("td").last).to_have_text("0")
        # The charts count it as a request, with no latency and no start.
        assert await chart_sum(page, "chart-fn-requests") == 1
        assert await chart_values(page, "chart-fn-ttft") == []
        assert await chart_values(page, "chart-fn-cold") == []
        await shots.take(width_name)

    # Limits: a new version with the same adapter and the edited limits.
    await page.set_viewport_size({"width": 1200, "height": 900})
    await page.fill("#limits input[name=max_tokens]", "300")
    await page.fill("#limits input[name=timeout]", "240000")  # a cold start on a busy host
    await page.click("#limits button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions/pirate$"))
    await expect(page.locator("#limits input[name=max_tokens]")).to_have_value("300")
    await expect(page.locator("h1 small")).to_have_text("version 0.0.2")
    response = await platform.request("GET", "/api/v1/namespaces/_/actions/pirate?code=false")
    limits = (await response.json())["limits"]
    assert (limits["max_tokens"], limits["timeout"]) == (300, 240000)
    await shots.take("limits-saved")

    # The playground: max_tokens bounded by the function's own limit, in the form and behind it.
    max_tokens = page.locator("#playground input[name=max_tokens]")
    await expect(max_tokens).to_have_attribute("max", "300")
    await max_tokens.fill("400")
    assert await max_tokens.evaluate("input => input.validity.rangeOverflow")
    refused_run = await page.evaluate("""async () => {
        const form = document.getElementById('playground');
        const response = await fetch(form.dataset.stream, {method: 'POST',
            headers: {'Content-Type': 'application/json', 'Accept': 'application/json',
                      'X-CSRF-Token': form.querySelector('input[name=csrf]').value},
            body: JSON.stringify({prompt: 'hi', max_tokens: '400'})});
        return [response.status, (await response.json()).error];
    }""")
    assert refused_run[0] == 400 and "over the limit of 300" in refused_run[1], refused_run
    await max_tokens.fill("12")

    # Chat mode: a system prompt and turns; the second message carries the first turn.
    await page.check("#playground input[name=mode][value=chat]")
    await expect(page.locator("#prompt")).to_be_hidden()
    await page.fill("#system", "You are a pirate.")
    await page.fill("#message", "Where is the treasure?")
    await page.click("#playground button[type=submit]")
    await expect(page.locator("#run-stats")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    await expect(page.locator("#playground-error")).to_be_hidden()
    first = await page.locator("#output").text_content()
    assert first and first.strip(), "the chat showed no output"
    await expect(page.locator("#turns li")).to_have_count(2)
    await expect(page.locator("#turns li").last).to_have_text(first)
    chat_activation = (await page.locator("#stat-activation").text_content() or "").strip()
    # The latency table and the charts take the run in without a reload.
    await expect(duration.locator("td").last).to_have_text("1")
    await page.wait_for_function(f"{CHART_SUM % 'chart-fn-requests'} === 2")
    # Stop sequences: the output ends before the first "e" (the run stops there).
    await page.fill("#message", "And then?")
    await page.fill("#playground textarea[name=stop]", "e")
    await page.click("#playground button[type=submit]")
    await expect(page.locator("#stat-activation")).not_to_have_text(chat_activation,
                                                                    timeout=STEP_TIMEOUT_MS)
    await expect(page.locator("#playground-error")).to_be_hidden()
    await expect(page.locator("#turns li")).to_have_count(4)
    assert "e" not in (await page.locator("#output").text_content() or "")
    stopped_activation = (await page.locator("#stat-activation").text_content() or "").strip()
    # The two runs count in the latency table (refreshed after each run, no reload); the
    # refused request still does not. The charts: 3 requests, 2 with a TTFT, 1 cold start.
    await expect(duration.locator("td").last).to_have_text("2")
    await expect(page.locator(f"#recent-activations a[href='/console/activations/"
                              f"{stopped_activation}']")).to_have_count(1)
    await page.wait_for_function(f"{CHART_SUM % 'chart-fn-requests'} === 3")
    ttfts = await chart_values(page, "chart-fn-ttft")
    assert ttfts and all(v > 0 for v in ttfts), ttfts
    cold = await chart_values(page, "chart-fn-cold")
    assert cold and 0 < max(cold) <= 100 and min(cold) < 100, cold  # one cold, one warm
    assert await chart_sum(page, "chart-fn-cost") > 0  # from the billing ledger
    table = page.locator("#timeline-table tbody tr td.requests")
    assert sum([int(t) for t in await table.all_text_contents()]) == 3  # folded: no inner text
    await page.check("#playground input[name=mode][value=chat]")
    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await shots.take(f"chat-{width_name}")
    await page.set_viewport_size({"width": 1200, "height": 900})

    # The last hour, per minute; a window the page does not offer is refused in words.
    await page.click("nav.windows a[href='?window=1h#timeline']")
    await expect(page.locator("nav.windows a[aria-current]")).to_have_text(
        "last hour, per minute")
    assert len(await page.evaluate("Chart.getChart('chart-fn-requests').data.labels")) == 60
    assert await chart_sum(page, "chart-fn-requests") == 3
    await page.locator("#timeline summary").click()
    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.locator("#timeline").screenshot(
            path=str(shots.path(f"timeline-{width_name}")))
    await page.set_viewport_size({"width": 1200, "height": 900})
    response = await page.goto(f"{base}/console/functions/pirate?window=2h")
    assert response is not None and response.status == 400
    await expect(page.locator("main")).to_contain_text("one of 1h, 24h, 7d, not '2h'")

    # The activation pages: parameters, wait/init/batch size, the timeline, the start.
    for activation_id, cold in ((chat_activation, True), (stopped_activation, False)):
        await page.goto(f"{base}/console/activations/{activation_id}")
        parameters = await page.locator("#parameters").inner_text()
        assert "You are a pirate." in parameters and '"max_tokens": 12' in parameters
        assert ('"stop": [\n    "e"\n  ]' in parameters) != cold, parameters
        await expect(page.locator("#wait-time")).to_have_text(re.compile(r"^\d+ ms$"))
        await expect(page.locator("#batch-size")).to_have_text(re.compile(r"^\d+$"))
        kinds = await page.locator("#timeline-legend li").evaluate_all(
            "items => items.map((item) => item.dataset.kind)")
        assert {"prefill", "decode"} <= set(kinds), kinds
        assert ("init" in kinds) == cold, kinds
        if cold:
            await expect(page.locator("#init-time")).to_have_text(re.compile(r"^\d+ ms$"))
            await expect(page.locator("#init-breakdown li").first).to_be_visible()
        else:
            await expect(page.locator("#init-note")).to_contain_text("warm container")
        await shots.take("activation-cold" if cold else "activation-warm")
    # A failed one: no talk of a warm container, the long error folded, no \u0027 escapes.
    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{base}/console/activations/{refused}")
        await expect(page.locator("#init-note")).to_contain_text("failed before it ran")
        await expect(page.locator("#init-note")).not_to_contain_text("warm")
        summary = page.locator("#error summary")
        await expect(summary).to_have_text("The adapter's rank 8 does not fit the backbone's "
                                           "layers:")
        assert not await page.locator("#error").evaluate("details => details.open")
        assert await page.evaluate("document.documentElement.scrollHeight") < 2500
        await summary.click()
        await expect(page.locator("#error pre")).to_contain_text("model.layers.119")
        html = await page.content()
        assert "\\u0027" not in html and "The adapter's rank" in html
        await summary.click()
        await shots.take(f"activation-failed-{width_name}")
    await page.set_viewport_size({"width": 1200, "height": 900})

    # The platform page: the warm container's and the backbone server's RSS and PSS, the
    # pool's stem cells and pre-loaded containers, refreshed while it is open.
    await page.goto(f"{base}/console/platform")
    container = page.locator("#containers tbody tr", has_text="guest/pirate")
    await expect(container).to_have_count(1)
    rss = float((await container.locator("td.rss").inner_text()).removesuffix(" MB"))
    pss = float((await container.locator("td.pss").inner_text()).removesuffix(" MB"))
    assert 0 < pss <= rss, (rss, pss)
    server = page.locator("#backbones tbody tr").first
    server_rss = float((await server.locator("td.rss").inner_text()).removesuffix(" MB"))
    assert server_rss > 0
    for label in ("stem cells", "pre-loaded containers", "warm containers"):
        row = page.locator("#pool tr", has_text=label)
        await expect(row.locator("td")).to_have_text(re.compile(r"^\d+$"))
    await expect(page.locator("#pool tr", has_text="warm containers").locator("td")
                 ).to_have_text("1")
    updated = await page.locator("#updated").inner_text()
    await expect(page.locator("#updated")).not_to_have_text(updated, timeout=30_000)
    await expect(page.locator("#containers tbody tr", has_text="guest/pirate")).to_have_count(1)
    await expect(page.locator("#evictions tbody")).not_to_contain_text("guest/pirate")
    # A new version of pirate, through the API: its warm container goes, and the open page
    # lists the eviction at its next refresh: what, when, why.
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/pirate?overwrite=true",
                                      data=io.BytesIO(zip_bytes),
                                      headers={"Content-Type": "application/zip"})
    assert response.status == 200, await response.text()
    eviction = page.locator("#evictions tbody tr", has_text="guest/pirate")
    await expect(eviction).to_have_count(1, timeout=30_000)
    await expect(eviction.locator("td.state")).to_have_text("warm")
    await expect(eviction.locator("td.reason")).to_have_text("action changed")
    await expect(eviction.locator("td.when")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    await expect(page.locator("#containers tbody tr", has_text="guest/pirate")).to_have_count(0)
    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await shots.take(f"platform-{width_name}")

    # Every page at phone width: no sideways page scroll; wide tables scroll in their box.
    await page.set_viewport_size({"width": 390, "height": 900})
    for path in ("/console/functions", "/console/functions/pirate", "/console/upload",
                 f"/console/activations/{chat_activation}", f"/console/activations/{refused}",
                 "/console/usage", "/console/platform"):
        await page.goto(f"{base}{path}")
        overflow = await page.evaluate("""() => [document.documentElement.scrollWidth,
                                                 document.body.scrollWidth, window.innerWidth]""")
        assert max(overflow[:2]) <= overflow[2], (path, overflow)
        for link in await page.locator(".nav nav a").all():
            box = await link.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, (path, box)
        await shots.take("phone-" + path.strip("/").replace("/", "-")[:40])
    wide = page.locator(".table-scroll").first
    await page.goto(f"{base}/console/functions/pirate")
    scroll = await page.locator(".table-scroll:has(table.activations)").evaluate(
        "box => [box.scrollWidth, box.clientWidth]")
    assert scroll[0] > scroll[1], scroll  # the activations table scrolls inside its box
    assert await wide.count() > 0
    await page.set_viewport_size({"width": 1200, "height": 900})

    # Delete: a wrong name is refused and keeps the function; the right one deletes it.
    await page.goto(f"{base}/console/functions/doomed")
    await page.fill("#confirm", "pirate")
    await page.click("#delete button[type=submit]")
    await expect(page.locator("#function-error")).to_contain_text("Type the name 'doomed'")
    await shots.take("delete-refused")
    response = await platform.request("GET", "/api/v1/namespaces/_/actions/doomed?code=false")
    assert response.status == 200
    await page.fill("#confirm", "doomed")
    await page.click("#delete button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions$"))
    await expect(page.locator("#functions tbody tr", has_text="doomed")).to_have_count(0)
    response = await platform.request("GET", "/api/v1/namespaces/_/actions/doomed?code=false")
    assert response.status == 404


HELLO = "def main(args):\n    return {'greeting': 'hello ' + args.get('name', 'world')}\n"
SHOUT = "def main(args):\n    return {'greeting': args['greeting'].upper() + '!'}\n"


async def put_json(platform: Any, path: str, body: dict[str, Any]) -> None:
    """PUT an entity of the guest's namespace through the API."""
    response = await platform.request("PUT", f"/api/v1/namespaces/_/{path}", json=body)
    assert response.status == 200, await response.text()


async def test_code_actions_and_sequences_show_their_kind_and_run_with_json(  # type: ignore[no-untyped-def]
        platform, browser_page) -> None:  # noqa: F811  (a fixture)
    from playwright.async_api import expect

    page = browser_page
    base = str(platform.client.make_url("")).rstrip("/")
    await put_json(platform, "actions/hello", {
        "exec": {"kind": "python:3", "code": HELLO},
        "annotations": [{"key": "web-export", "value": True}]})
    await put_json(platform, "packages/tools", {})
    await put_json(platform, "actions/tools/shout", {"exec": {"kind": "python:3",
                                                              "code": SHOUT}})
    await put_json(platform, "actions/chain", {"exec": {
        "kind": "sequence", "components": ["/_/hello", "/_/tools/shout"]}})
    await sign_in(page, base, platform.credential)
    shots = Shots(page, "code-actions")

    # The list shows each function's kind (a sequence's count of actions); no backbone.
    rows = page.locator("#functions tbody tr")
    await expect(rows.filter(has_text="chain").locator("td.kind")).to_have_text("sequence of 2")
    await expect(rows.filter(has_text="hello").locator("td.kind")).to_have_text("python:3")
    await expect(rows.filter(has_text="hello").locator("td").last).to_have_text("—")
    await shots.take("list")

    # A sequence's page links its components: a function's page, a package's row.
    await page.goto(f"{base}/console/functions/chain")
    await expect(page.locator("#function-kind code").first).to_have_text("sequence")
    links = page.locator("#components a")
    await expect(links).to_have_text(["/guest/hello", "/guest/tools/shout"])
    assert [await link.get_attribute("href") for link in await links.all()] == \
        ["/console/functions/hello", "/console/packages#package-tools"]
    await expect(page.locator("#playground")).to_have_count(0)  # the lora playground
    await page.fill("#parameters", '{"name": "browser"}')
    await page.click("#run button[type=submit]")
    await expect(page.locator("#run-status")).to_have_text("success")
    assert json.loads(await page.locator("#run-output").inner_text()) == \
        {"greeting": "HELLO BROWSER!"}
    await shots.take("sequence-run")
    activation = await page.locator("#run-activation").inner_text()
    await expect(page.locator(f"#recent-activations a[href='/console/activations/{activation}']")
                 ).to_have_count(1)

    # A code action: its web URL (it is web-exported), the form refusing what is not JSON.
    await links.first.click()
    await expect(page).to_have_url(re.compile(r"/console/functions/hello$"))
    await expect(page.locator("#web-url")).to_have_text(f"{base}/api/v1/web/guest/default/hello")
    await page.fill("#parameters", "[1, 2")
    await page.click("#run button[type=submit]")
    await expect(page.locator("#run-error")).to_contain_text("The parameters are not JSON")
    await expect(page.locator("#parameters")).to_have_value("[1, 2")
    await page.fill("#parameters", '{"name": "form"}')
    await page.click("#run button[type=submit]")
    assert json.loads(await page.locator("#run-output").inner_text()) == \
        {"greeting": "hello form"}
    await shots.take("code-action-run")
    await page.click("#web-action a")
    assert json.loads(await page.locator("body").inner_text()) == {"greeting": "hello world"}
