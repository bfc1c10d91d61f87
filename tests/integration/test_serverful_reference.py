"""The evaluation's serverful reference: one process, every adapter, mixed-adapter batches
that generate what each request would alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.benchmarks.serverful import ServerfulProcess

PROMPTS = {"pirate": "Can you tell me about the sea?", "shout": "Tell me about the weather"}


async def test_mixed_adapter_batches_answer_as_alone(demo_models, short_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = ServerfulProcess(short_dir / "sf.sock", demo_models.backbone_dir,
                              {name: demo_models.adapters[name] for name in PROMPTS})
    async with server.running():
        alone = {name: await server.generate(name, prompt, 12)
                 for name, prompt in PROMPTS.items()}
        # Several at once: the ones waiting while a batch runs go together as the next one.
        mixed = await asyncio.gather(*(server.generate(name, PROMPTS[name], 12)
                                       for name in ("pirate", "shout", "pirate", "shout")))
    assert alone["pirate"]["token_ids"] != alone["shout"]["token_ids"]
    for name, answer in zip(("pirate", "shout", "pirate", "shout"), mixed, strict=True):
        assert answer["token_ids"] == alone[name]["token_ids"]
        assert 0 < answer["ttft_ms"] <= answer["e2e_ms"]
        assert answer["completion_tokens"] == len(answer["token_ids"]) <= 12
    assert max(answer["batch_size"] for answer in mixed) >= 2
