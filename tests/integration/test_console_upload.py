"""The console's upload takes a folder's files or a zip, refuses a bad adapter next to the
field leaving nothing behind, and is held to the same upload cap as the API."""

from __future__ import annotations

import io
import re

import aiohttp
import pytest

from lorafaas.controller.appkeys import actions_key
from tests.adapter_cases import files_of, with_config
from tests.integration.test_adapter_refusals import registry_counts, stored_files

pytestmark = pytest.mark.docker
JSON = {"Accept": "application/json"}


async def signed_in(platform) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Sign the console in with the guest's key; the CSRF header its script sends."""
    client = platform.client
    page = await (await client.get("/console/sign-in")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    form = {"key": platform.credential, "csrf": token[1] if token else ""}
    response = await client.post("/console/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await (await client.get("/console/upload")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    return {**JSON, "X-CSRF-Token": token[1]}


def folder_form(name: str, files: dict[str, bytes]) -> aiohttp.FormData:
    """The form a folder upload posts: each file under the folder's name."""
    form = aiohttp.FormData(quote_fields=False)  # as a browser sends a folder's paths
    form.add_field("name", name)
    for filename, data in files.items():
        form.add_field("adapter", io.BytesIO(data), filename=f"pirate/{filename}",
                       content_type="application/octet-stream")
    return form


async def test_console_upload_of_a_folder_bad_and_good(platform, demo_models):  # type: ignore[no-untyped-def]
    headers = await signed_in(platform)
    good = files_of(demo_models.adapters["pirate"])
    bad = await platform.client.post("/console/upload", headers=headers,
                                     data=folder_form("bad", with_config(good, r=4)))
    errors = (await bad.json())["errors"]
    assert bad.status == 400 and "rank" in errors["adapter"], errors
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []
    service = platform.app[actions_key]
    with service.uploads.slot(), service.uploads.slot(), service.uploads.slot(), \
            service.uploads.slot():
        busy = await platform.client.post("/console/upload", headers=headers,
                                          data=folder_form("pirate", good))
        assert busy.status == 429 and int(busy.headers["Retry-After"]) > 0
    made = await platform.client.post("/console/upload", headers=headers,
                                      data=folder_form("pirate", good))
    assert made.status == 200, await made.text()
    assert (await made.json())["location"] == "/console/functions/pirate"
    assert await registry_counts(platform) == (1, 1)
