"""Adapters that peft saves in less common shapes run on the platform exactly as in peft.

Validation stores the config with its regex targets and rank/alpha patterns resolved to
module names (so no user regex runs in a container); these tests show that the stored
config means what the original did: greedy tokens equal peft's, from the original folder.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from tests.adapter_cases import make_peft_adapter
from tests.integration.test_end_to_end import MAX_TOKENS, PROMPT, invoke, peft_reference

pytestmark = pytest.mark.docker

VARIANTS: dict[str, dict[str, Any]] = {
    "patterns": {"r": 4, "target_modules": r".*\.(q|v)_proj", "rank_pattern": {"v_proj": 2},
                 "alpha_pattern": {"v_proj": 16}},
    "embedding-and-saved": {"r": 4, "target_modules": ["q_proj", "embed_tokens"],
                            "modules_to_save": ["lm_head"]},
}


async def test_regex_patterns_embeddings_and_saved_modules_run_as_in_peft(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip, tmp_path):
    for name, config in VARIANTS.items():
        folder = await asyncio.to_thread(make_peft_adapter, demo_models.backbone_dir,
                                         tmp_path / name, std=0.05, **config)
        response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                          json={"exec": {"kind": "lora", "binary": True,
                                                         "code": base64.b64encode(make_zip(folder)).decode()}})
        assert response.status == 200, (name, await response.json())
        status, record, _ = await invoke(platform, name, prompt=PROMPT, max_tokens=MAX_TOKENS,
                                         temperature=0, return_token_ids=True)
        assert status == 200, (name, record)
        expected = await asyncio.to_thread(peft_reference, demo_models.backbone_dir, folder,
                                           PROMPT, MAX_TOKENS)
        assert record["response"]["result"]["token_ids"] == expected, name
