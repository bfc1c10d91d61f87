"""Checkpoints users bring, served end to end (registry, backbone server, Docker, peft).

A representative subset of the families runs here, one platform per deployment shared by
the module's tests: Qwen2 (tied embeddings, attention biases, BPE tokenizer files, chat
template in tokenizer_config.json, an extra EOS id) batched with sharing on and continuous
with sharing off; Gemma 3 text in bfloat16 (sharded, scaled embeddings, sliding pattern)
alone; Phi-3 (fused projections, longrope) continuous; and Qwen2 batched once more on a
PostgreSQL registry (`postgres`). Every checkpoint folder is readable
by root only (0700, files 0600), as transformers 5 writes them. test_family_checkpoints.py
runs every family in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lorafaas.settings import load_settings
from tests.db_fixtures import fresh_postgres_database, postgres_server_url
from tests.integration.test_end_to_end import action_body

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

MAX_TOKENS = 8
# Generous: the shared 2-core machine may be loaded many times over (cold starts wait).
WAIT_MS = 400_000
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


@dataclass(frozen=True)
class Deployment:
    """One platform: a family's checkpoint, its dtype, batching mode and sharing."""

    family: str
    dtype: str
    batching: str
    sharing: bool
    options: dict[str, Any]
    database: str = "sqlite"  # the registry: "sqlite" (a file) or "postgresql"


DEPLOYMENTS = {
    "qwen2-fp32-eager": Deployment("qwen2", "float32", "eager", True,
                                   {"chat_template": "config"}),
    "qwen2-fp32-continuous-private": Deployment("qwen2", "float32", "continuous", False,
                                                {"chat_template": "config"}),
    "gemma3-bf16-alone": Deployment("gemma3", "bfloat16", "off", True, {"sharded": True}),
    "phi3-fp32-continuous": Deployment("phi3", "float32", "continuous", True, {}),
    "qwen2-fp32-eager-postgresql": Deployment("qwen2", "float32", "eager", True,
                                              {"chat_template": "config"}, "postgresql"),
}
PARAMS = [pytest.param(name, marks=[pytest.mark.postgres] if
                       DEPLOYMENTS[name].database == "postgresql" else [])
          for name in sorted(DEPLOYMENTS)]


@dataclass
class Served:
    """A running platform on a family checkpoint, its adapters and the references."""

    deployment: Deployment
    client: Any
    headers: dict[str, str]
    checkpoint: Path
    adapters: list[Path]
    stop_id: int  # the extra EOS id of the checkpoint's generation_config.json

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.client.request(method, path, headers=self.headers, **kwargs)

    async def invoke(self, action: str, **params: Any) -> tuple[int, dict[str, Any]]:
        response = await self.request("POST", f"/api/v1/namespaces/_/actions/{action}",
                                      params={"blocking": "true", "timeout": str(WAIT_MS)},
                                      json=params)
        return response.status, await response.json()


def make_checkpoint(root: Path, deployment: Deployment) -> tuple[Path, list[Path], int]:
    """The checkpoint (0700 folder, 0600 files), two adapters, and an extra EOS id that
    adapter 0 generates early on the first prompt."""
    from lorafaas.demo import families as F

    family = F.FAMILIES[deployment.family]
    checkpoint = F.make_checkpoint(family, root / deployment.family, F.CheckpointOptions(
        dtype=deployment.dtype, **deployment.options))
    adapters = [F.make_adapter(checkpoint, root / f"adapter-r{rank}", family, rank=rank,
                               seed=rank) for rank in (4, 8)]
    model = F.load_reference(checkpoint, adapters[0], deployment.dtype)
    free = F.greedy(model, F.load_tokenizer(checkpoint), F.PROMPTS[0], MAX_TOKENS)
    stop_id = next((t for i, t in enumerate(free) if i >= 1 and t not in free[:i]), free[0])
    F.set_extra_eos(checkpoint, stop_id)
    checkpoint.chmod(0o700)
    return checkpoint, adapters, stop_id


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=PARAMS)
async def served(request: pytest.FixtureRequest, runtime_image: str
                 ) -> AsyncIterator[Served]:
    """One platform per deployment (its registry: SQLite, or PostgreSQL where marked), its
    two functions created."""
    deployment = DEPLOYMENTS[request.param]
    root = Path(tempfile.mkdtemp(prefix="lf-fam-", dir="/tmp"))
    shm_dir = Path("/dev/shm") / f"lorafaas-fam-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        database_url = f"sqlite:///{root / 'registry.db'}"
        if deployment.database == "postgresql":
            database_url = stack.enter_context(fresh_postgres_database(postgres_server_url()))
        async for served in _serve(deployment, root, shm_dir, runtime_image, database_url):
            yield served


async def _serve(deployment: Deployment, root: Path, shm_dir: Path, runtime_image: str,
                 database_url: str) -> AsyncIterator[Served]:
    """The platform of `served` on its registry."""
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.registry.db import upgrade

    try:
        checkpoint, adapters, stop_id = await asyncio.to_thread(make_checkpoint, root,
                                                                deployment)
        settings = replace(
            load_settings({"LORAFAAS_HOME": str(root / "home")}), run_dir=root / "run",
            shm_dir=shm_dir, runtime_image=runtime_image, backbone_dir=checkpoint,
            models_dir=root, invoker_id=f"fam{uuid.uuid4().hex[:8]}", port=0,
            prewarm_min=0, prewarm_max=0, preload_spare_share=0.0, prefill_profiling="off",
            database_url=database_url, batching=deployment.batching,
            backbone_sharing=deployment.sharing, container_start_timeout_s=WAIT_MS // 1000)
        upgrade(settings.database_url)
        credential = await ensure_guest(settings)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            served = Served(deployment, client, {"Authorization": aiohttp.encode_basic_auth(
                *credential.split(":", 1))}, checkpoint, adapters, stop_id)
            for index, adapter in enumerate(adapters):
                await create(served, f"f{index}", adapter)
            yield served
        finally:
            await client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(shm_dir, ignore_errors=True)


async def create(served: Served, name: str, adapter: Path) -> None:
    """Create an action from an adapter folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(adapter.iterdir()):
            archive.writestr(path.name, path.read_bytes())
    response = await served.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                    json=action_body(buffer.getvalue(),
                                                     limits={"timeout": WAIT_MS}))
    assert response.status == 200, await response.json()


def references(served: Served, prompt_of: Any, max_tokens: int = MAX_TOKENS,
               ignore_eos: bool = True) -> list[list[list[int]]]:
    """peft's greedy tokens, [adapter][prompt], in the deployment's dtype."""
    from lorafaas.demo import families as F

    tokenizer = F.load_tokenizer(served.checkpoint)
    result = []
    for adapter in served.adapters:
        model = F.load_reference(served.checkpoint, adapter, served.deployment.dtype)
        result.append([F.greedy(model, tokenizer, prompt_of(tokenizer, p), max_tokens,
                                ignore_eos) for p in F.PROMPTS])
    return result


def result_of(record: dict[str, Any]) -> dict[str, Any]:
    """The function's result in an activation record."""
    result: dict[str, Any] = record["response"]["result"]
    assert record["response"]["success"], result
    return result


def engine_of(record: dict[str, Any]) -> Any:
    """The record's `engine` annotation: which of the runtime's engines generated it."""
    return next((a["value"] for a in record["annotations"] if a["key"] == "engine"), None)


async def test_greedy_tokens_equal_peft(served: Served) -> None:
    """Two adapters × three prompts, each function's three at once where the deployment
    batches (batched or continuous), one after the other where it does not: each equals
    peft's generate alone."""
    from lorafaas.demo import families as F

    answers = []
    for a in range(2):
        calls = [served.invoke(f"f{a}", prompt=p, max_tokens=MAX_TOKENS, ignore_eos=True,
                               return_token_ids=True) for p in F.PROMPTS]
        if served.deployment.batching == "off":
            answers += [await call for call in calls]
        else:
            answers += await asyncio.gather(*calls)
    assert all(status == 200 for status, _ in answers), answers
    # Every listed family is served by the native engine, and the record says so.
    assert {engine_of(record) for _, record in answers} == {"native"}
    tokens = [result_of(record)["token_ids"] for _, record in answers]
    expected = await asyncio.to_thread(references, served, lambda _t, p: p)
    assert tokens == [t for per_adapter in expected for t in per_adapter]


async def test_chat_renders_with_the_models_template(served: Served) -> None:
    """`messages` are rendered with the checkpoint's chat template: its prompt tokens and
    peft's greedy tokens on the rendered text."""
    from lorafaas.demo import families as F

    status, record = await served.invoke("f0", messages=CHAT, max_tokens=MAX_TOKENS,
                                         ignore_eos=True, return_token_ids=True)
    assert status == 200, record
    tokenizer = F.load_tokenizer(served.checkpoint)
    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|system|> be brief")
    result = result_of(record)
    assert result["usage"]["prompt_tokens"] == len(tokenizer(rendered)["input_ids"])
    model = await asyncio.to_thread(F.load_reference, served.checkpoint, served.adapters[0],
                                    served.deployment.dtype)
    assert result["token_ids"] == F.greedy(model, tokenizer, rendered, MAX_TOKENS)


async def test_generation_config_eos_stops(served: Served) -> None:
    """The extra EOS id of generation_config.json ends the generation where peft ends it."""
    from lorafaas.demo import families as F

    status, record = await served.invoke("f0", prompt=F.PROMPTS[0], max_tokens=2 * MAX_TOKENS,
                                         return_token_ids=True)
    assert status == 200, record
    result = result_of(record)
    model = await asyncio.to_thread(F.load_reference, served.checkpoint, served.adapters[0],
                                    served.deployment.dtype)
    expected = F.greedy(model, F.load_tokenizer(served.checkpoint), F.PROMPTS[0],
                        2 * MAX_TOKENS, ignore_eos=False)
    assert expected[-1] == served.stop_id and len(expected) < 2 * MAX_TOKENS
    assert result["token_ids"] == expected
    assert result["finish_reason"] == "stop"


async def test_prompt_past_the_context_length_is_refused(served: Served) -> None:
    """A prompt plus max_tokens past the backbone's context length: 400 naming both, and no
    activation is recorded."""
    from lorafaas.demo import families as F

    limit = F.SMALL["max_position_embeddings"]
    before = await activations(served)
    status, body = await served.invoke("f1", prompt=F.PROMPTS[1], max_tokens=limit - 10)
    assert status == 400
    assert f"plus max_tokens {limit - 10} exceeds the context length {limit}" in body["error"]
    status, body = await served.invoke("f1", prompt="hi", max_tokens=limit)
    assert status == 400 and f"max_tokens {limit} does not fit" in body["error"]
    assert await activations(served) == before


async def activations(served: Served) -> int:
    """How many activations the registry holds."""
    response = await served.request("GET", "/api/v1/namespaces/_/activations",
                                    params={"limit": "200"})
    return len(await response.json())
