"""Two backbones served at once by one deployment, all real: two backbone servers, Docker,
the registry and peft as the reference.

The second backbone is a smaller Llama (other sizes, grouped-query attention, another seed)
built here with the demo's own builder, with a seeded random adapter made with peft. Each
function runs on the backbone its `backbone` annotation names: its greedy tokens equal
peft's on that backbone, its stem cell is its backbone's, and an adapter made for one
backbone is refused on the other.
"""

from __future__ import annotations

import asyncio
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lorafaas.backbone_specs import BackboneSpec
from lorafaas.controller.app import local_invoker_key
from lorafaas.invoker.containers import ContainerState
from lorafaas.settings import Settings, replace
from tests.integration.test_cli import Cli
from tests.integration.test_end_to_end import action_body, annotation, invoke, peft_reference

pytestmark = pytest.mark.docker

PROMPT = "Tell me about the weather today."
MAX_TOKENS = 16
TINY_CONTEXT = 1024
BACKBONE_FIELDS = {"name", "default", "modelType", "architecture", "dtype", "bytes",
                   "parameters", "contextLength"}


@pytest.fixture(scope="module")
def tiny_models(shared_home: Path):  # type: ignore[no-untyped-def]
    """A second, smaller Llama and one random adapter for it (built once, then reused)."""
    from lorafaas.demo.adapters import AdapterSpec
    from lorafaas.demo.backbone import BackboneSpec as LlamaSpec
    from lorafaas.demo.build import DemoSpec, build_demo_models

    spec = DemoSpec(backbone=LlamaSpec(hidden_size=256, num_hidden_layers=4,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       intermediate_size=688,
                                       max_position_embeddings=TINY_CONTEXT, seed=7),
                    adapters=(AdapterSpec(name="tiny-random", question_response="(random)",
                                          other_response="(random)", seed=11, steps=0),),
                    random_adapters=True)
    return build_demo_models(shared_home / "models" / "test-second-backbone", spec)


@pytest.fixture
def two_backbones(settings: Settings, tiny_models) -> Settings:  # type: ignore[no-untyped-def]
    """The demo backbone (default, its own dtype) and the tiny one (float32 asked for), and
    one stem cell per backbone."""
    return replace(settings, backbones=(BackboneSpec("demo", settings.backbone_dir),
                                        BackboneSpec("tiny", tiny_models.backbone_dir,
                                                     "float32")),
                   prewarm_min=1, prewarm_max=1)


@pytest.fixture
async def platform(two_backbones: Settings, aiohttp_client):  # type: ignore[no-untyped-def]
    """The platform of the two backbones (the conftest's, on other settings)."""
    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.registry.db import upgrade
    from tests.conftest import PlatformClient

    upgrade(two_backbones.database_url)
    credential = await ensure_guest(two_backbones)
    client = await aiohttp_client(create_app(two_backbones))
    return PlatformClient(client, credential, two_backbones)


async def put(platform, name: str, adapter_dir: Path, make_zip,  # type: ignore[no-untyped-def]
              backbone: str | None) -> tuple[int, dict[str, Any]]:
    """Create an action, on `backbone` when one is named; the status and body."""
    extra = {"annotations": [{"key": "backbone", "value": backbone}]} if backbone else {}
    response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                      json=action_body(make_zip(adapter_dir), **extra))
    return response.status, await response.json()


async def stem_cells(platform, timeout_s: float = 600.0) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Backbone -> container id of its stem cell, once each backbone has one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stems = {c.backbone: c.info.id for c in platform.app[local_invoker_key].pool.containers()
                 if c.state is ContainerState.STEM}
        if set(stems) == {"demo", "tiny"}:
            return stems
        await asyncio.sleep(0.5)
    raise AssertionError("the maintenance started no stem cell for each backbone")


@pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
@pytest.mark.unshared  # each function served by a stem cell of its own backbone
async def test_functions_on_two_backbones_match_peft_on_their_own(  # type: ignore[no-untyped-def]
        platform, demo_models, tiny_models, make_zip, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny_adapter = tiny_models.adapters["tiny-random"]

    # The listing: both backbones, the default first, as published.
    response = await platform.request("GET", "/api/v1/backbones")
    listed = await response.json()
    assert response.status == 200, listed
    assert [(b["name"], b["default"]) for b in listed] == [("demo", True), ("tiny", False)]
    assert all(set(b) == BACKBONE_FIELDS for b in listed)
    tiny = listed[1]
    published = platform.settings.shm_dir / "tiny" / "model.safetensors"
    assert (tiny["modelType"], tiny["architecture"], tiny["dtype"]) == (
        "llama", "LlamaForCausalLM", "float32")
    assert tiny["bytes"] == published.stat().st_size
    assert tiny["parameters"] == await asyncio.to_thread(parameter_count,
                                                         tiny_models.backbone_dir)
    assert tiny["contextLength"] == TINY_CONTEXT and listed[0]["contextLength"] == 2048
    assert listed[0]["parameters"] > tiny["parameters"]

    # Unknown names and adapters of the other backbone are refused, leaving nothing behind.
    status, body = await put(platform, "nowhere", tiny_adapter, make_zip, "llama-70b")
    assert status == 400 and "unknown backbone 'llama-70b'" in body["error"]
    assert "this deployment serves: demo, tiny" in body["error"]
    status, body = await put(platform, "misplaced", tiny_adapter, make_zip, None)
    assert status == 400, body
    status, body = await put(platform, "misplaced", demo_models.adapters["pirate"], make_zip,
                             "tiny")
    assert status == 400, body
    for name in ("nowhere", "misplaced"):
        response = await platform.request("GET", f"/api/v1/namespaces/_/actions/{name}")
        assert response.status == 404

    # A function on each backbone: each answered by a stem cell of its own backbone, with
    # peft's greedy tokens on that backbone.
    stems = await stem_cells(platform)
    functions = {"on-demo": (demo_models.backbone_dir, demo_models.adapters["pirate"], None),
                 "on-tiny": (tiny_models.backbone_dir, tiny_adapter, "tiny")}
    for name, (backbone_dir, adapter_dir, backbone) in functions.items():
        status, body = await put(platform, name, adapter_dir, make_zip, backbone)
        assert status == 200, body
        assert annotation(body, "backbone") == (backbone or "demo")
    tokens = {}
    for name, (backbone_dir, adapter_dir, backbone) in functions.items():
        status, record, _ = await invoke(platform, name, prompt=PROMPT, max_tokens=MAX_TOKENS,
                                         return_token_ids=True)
        assert status == 200, record
        served = [c for c in platform.app[local_invoker_key].pool.containers()
                  if c.function_path == f"guest/{name}"]
        assert [c.backbone for c in served] == [backbone or "demo"]
        assert annotation(record, "startKind") == "prewarm"
        assert served[0].info.id == stems[backbone or "demo"]
        expected = await asyncio.to_thread(peft_reference, backbone_dir, adapter_dir, PROMPT,
                                           MAX_TOKENS)
        tokens[name] = record["response"]["result"]["token_ids"]
        assert tokens[name] == expected, name
    assert tokens["on-demo"] != tokens["on-tiny"]

    # The console shows each function's backbone, and every backbone server.
    await console_sign_in(platform)
    listing = await console_table(platform, "/console/functions", "functions")
    assert {row[0]: row[-1] for row in listing[1:]} == {"on-demo": "demo", "on-tiny": "tiny"}
    page = await console_page(platform, "/console/functions/on-tiny")
    assert "Backbone tiny" in " ".join(page.text.split())
    servers = await console_table(platform, "/console/platform", "backbones")
    assert [(row[0], row[1]) for row in servers[1:]] == [("demo (default)", listed[0]["dtype"]),
                                                          ("tiny", "float32")]

    # The CLI lists them too.
    monkeypatch.setenv("LORAFAAS_HOME", str(tmp_path / "cli-home"))
    code, out, err = await Cli(capsys)("backbone", "list", "--apihost",
                                       str(platform.client.make_url("/")).rstrip("/"),
                                       "--auth", platform.credential)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][0] == "name" and rows[1][:2] == ["demo", "*"] and rows[2][0] == "tiny"


class Page(HTMLParser):
    """A console page: its text, the csrf field, and the cells of each table by id."""

    def __init__(self) -> None:
        super().__init__()
        self.text, self.csrf = "", ""
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "input" and named.get("name") == "csrf":
            self.csrf = named.get("value") or ""
        elif tag == "table" and named.get("id"):
            self._table = str(named["id"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table and self.tables[self._table]:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text += data
        rows = self.tables.get(self._table or "")
        if rows and rows[-1]:
            rows[-1][-1] = " ".join(f"{rows[-1][-1]} {data}".split())


async def console_page(platform, path: str) -> Page:  # type: ignore[no-untyped-def]
    """A console page, parsed."""
    response = await platform.client.get(path)
    assert response.status == 200, await response.text()
    page = Page()
    page.feed(await response.text())
    return page


async def console_sign_in(platform) -> None:  # type: ignore[no-untyped-def]
    """Sign the test client in to the console with the guest's key."""
    form = await console_page(platform, "/console/sign-in")
    response = await platform.client.post("/console/sign-in", data={
        "key": platform.credential, "csrf": form.csrf, "next": "/console/functions"})
    assert response.status == 200, await response.text()


async def console_table(platform, path: str, table: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The rows of one table of a console page (the header first)."""
    return (await console_page(platform, path)).tables[table]


def parameter_count(backbone_dir: Path) -> int:
    """The parameters transformers counts in the checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(backbone_dir), dtype=torch.float32)
    return int(model.num_parameters())
