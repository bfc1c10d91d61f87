"""LORAFAAS_GENERATION_DEFAULTS end to end through the runtime's own server (/init, /run) on
a published backbone whose generation_config.json samples: under `checkpoint`, a request
that names no temperature samples with the checkpoint's temperature and top_p (the same
tokens as naming them, for one seed) and one naming temperature 0 is greedy; under `greedy`
the checkpoint's sampling is ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lorafaas.runtime.function import RuntimePaths
from lorafaas.runtime.server import create_app

SAMPLING = {"do_sample": True, "temperature": 1.5, "top_p": 0.95}
PROMPT = {"prompt": "Ahoy", "max_tokens": 8, "seed": 11, "return_token_ids": True,
          "ignore_eos": True}


@pytest.fixture(scope="module")
def published(demo_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo backbone with a sampling generation config, as the backbone server
    publishes it."""
    from tests.integration.test_family_checkpoints import publish

    checkpoint = tmp_path_factory.mktemp("checkpoint") / "sampling-backbone"
    shutil.copytree(demo_models.backbone_dir, checkpoint)
    config_path = checkpoint / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config_path.write_text(json.dumps({**config, **SAMPLING}))
    folder = tmp_path_factory.mktemp("published")
    publish(checkpoint, folder)
    return folder


async def tokens_of(published: Path, adapter: Path, mode: str,
                    requests: list[dict[str, Any]]) -> list[list[int]]:
    """Each request's tokens from one runtime server under `mode`."""
    app = create_app(RuntimePaths(None, published, adapter), "test", 0.0,
                     generation_defaults=mode)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/init", json={"value": {}})
        assert response.status == 200, await response.text()
        tokens = []
        for value in requests:
            response = await client.post("/run", json={"value": value})
            result = await response.json()
            assert response.status == 200 and "error" not in result, result
            tokens.append(result["token_ids"])
    return tokens


@pytest.mark.asyncio
async def test_checkpoint_defaults_sample_as_the_checkpoint_says(demo_models: Any,
                                                                 published: Path) -> None:
    adapter = demo_models.adapters["pirate"]
    unnamed, named, greedy = await tokens_of(published, adapter, "checkpoint", [
        PROMPT, {**PROMPT, "temperature": SAMPLING["temperature"], "top_p": SAMPLING["top_p"]},
        {**PROMPT, "temperature": 0}])
    assert unnamed == named
    assert unnamed != greedy  # it sampled: a control that greedy decoding fails
    plain, zero = await tokens_of(published, adapter, "greedy",
                                  [PROMPT, {**PROMPT, "temperature": 0}])
    assert plain == zero == greedy
