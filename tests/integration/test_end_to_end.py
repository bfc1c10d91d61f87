"""One LoRA function end to end, all real: registry, backbone server, Docker, peft."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.invoker.containers import ContainerState

pytestmark = pytest.mark.docker

PROMPT = "Tell me about the weather today."
MAX_TOKENS = 24


def action_body(zip_bytes: bytes, **extra: Any) -> dict[str, Any]:
    """A PUT body of an action of kind lora."""
    return {"exec": {"kind": "lora", "binary": True,
                     "code": base64.b64encode(zip_bytes).decode()}, **extra}


async def create_action(platform, name: str, adapter_dir: Path, make_zip,  # type: ignore[no-untyped-def]
                        **extra: Any) -> dict[str, Any]:
    """Create an action from an adapter folder; assert it worked."""
    response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                      json=action_body(make_zip(adapter_dir), **extra))
    body = await response.json()
    assert response.status == 200, body
    return body


async def invoke(platform, name: str, **params: Any):  # type: ignore[no-untyped-def]
    """Blocking invoke; returns (status, activation record)."""
    response = await platform.request("POST", f"/api/v1/namespaces/_/actions/{name}",
                                      params={"blocking": "true"}, json=params)
    return response.status, await response.json(), response.headers


def peft_reference(backbone_dir: Path, adapter_dir: Path, prompt: str, max_tokens: int
                   ) -> list[int]:
    """Greedy tokens of peft's PeftModel on the same backbone and prompt."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir))
    model = AutoModelForCausalLM.from_pretrained(str(backbone_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                temperature=None, top_p=None, top_k=None,
                                pad_token_id=tokenizer.pad_token_id)
    return output[0, inputs["input_ids"].shape[1]:].tolist()


def annotation(record: dict[str, Any], key: str) -> Any:
    """One annotation's value of an activation record."""
    return next(a["value"] for a in record["annotations"] if a["key"] == key)


async def test_invocation_matches_peft_for_two_adapters(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    outputs = {}
    # Both share the guest namespace's container (the default): the first request starts
    # it, the second's adapter is loaded into it.
    kinds = iter(("cold", "adapter"))
    for name in ("pirate", "shout"):
        await create_action(platform, name, demo_models.adapters[name], make_zip)
        status, record, headers = await invoke(platform, name, prompt=PROMPT,
                                               max_tokens=MAX_TOKENS, temperature=0,
                                               return_token_ids=True)
        assert status == 200, record
        assert headers["x-openwhisk-activation-id"] == record["activationId"]
        result = record["response"]["result"]
        expected = await asyncio.to_thread(peft_reference, demo_models.backbone_dir,
                                           demo_models.adapters[name], PROMPT, MAX_TOKENS)
        assert result["token_ids"] == expected
        assert result["usage"]["completion_tokens"] == len(expected)
        assert annotation(record, "container") == "namespace"
        kind = next(kinds)
        assert annotation(record, "startKind") == kind
        if kind == "cold":  # a namespace container starts with no adapter
            assert set(annotation(record, "initBreakdown")) >= {"libraries", "backbone",
                                                                 "tokenizer", "kernels"}
        outputs[name] = result["text"]
        print(f"{name}: {result['text']!r}")
    assert outputs["pirate"] != outputs["shout"]

    # The activation can be read back, and the next request finds the container warm.
    response = await platform.request(
        "GET", f"/api/v1/namespaces/_/activations/{record['activationId']}")
    assert (await response.json())["response"]["result"]["text"] == outputs["shout"]
    status, warm, _ = await invoke(platform, "shout", prompt=PROMPT, max_tokens=MAX_TOKENS)
    assert status == 200 and annotation(warm, "startKind") == "warm"
    assert warm["response"]["result"]["text"] == outputs["shout"]


def memory_of(pid: int) -> dict[str, int]:
    """Rss and Pss (kB) of a process from /proc/<pid>/smaps_rollup."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            figures[key] = int(rest.split()[0])
    return figures


@pytest.mark.unshared  # two processes, one per function
async def test_two_functions_share_the_backbone_pages(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    for name in ("pirate", "shout"):
        await create_action(platform, name, demo_models.adapters[name], make_zip)
        status, record, _ = await invoke(platform, name, prompt=PROMPT, max_tokens=8)
        assert status == 200, record
    containers = platform.app[local_invoker_key].pool.containers()
    assert len(containers) == 2
    figures = [memory_of(c.info.pid) for c in containers]
    backbone_kb = (platform.settings.shm_dir / demo_models.backbone_dir.name
                   / "model.safetensors").stat().st_size / 1024
    summed_pss = sum(f["Pss"] for f in figures)
    summed_rss = sum(f["Rss"] for f in figures)
    print(f"backbone file {backbone_kb / 1024:.1f} MiB; per process (MiB): "
          + ", ".join(f"RSS {f['Rss'] / 1024:.1f} PSS {f['Pss'] / 1024:.1f}" for f in figures)
          + f"; summed RSS - summed PSS = {(summed_rss - summed_pss) / 1024:.1f} MiB")
    assert summed_pss <= summed_rss - 0.8 * backbone_kb


async def test_killed_container_ends_the_activation_and_the_next_starts_fresh(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip):
    await create_action(platform, "pirate", demo_models.adapters["pirate"], make_zip,
                        limits={"max_tokens": 2000, "timeout": 60000})
    status, record, _ = await invoke(platform, "pirate", prompt=PROMPT, max_tokens=4)
    assert status == 200, record
    pool = platform.app[local_invoker_key].pool
    (container,) = pool.containers()

    long_run = asyncio.create_task(invoke(platform, "pirate", prompt=PROMPT, max_tokens=1500,
                                          ignore_eos=True))
    while container.state is not ContainerState.BUSY:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # well inside the generation
    await asyncio.to_thread(pool.backend.remove, container.info.id)
    status, record, _ = await asyncio.wait_for(long_run, timeout=60)
    assert status == 502
    assert record["response"]["statusCode"] == 2
    assert "container" in record["response"]["result"]["error"]

    status, record, _ = await invoke(platform, "pirate", prompt=PROMPT, max_tokens=4)
    assert status == 200, record
    assert annotation(record, "startKind") == "cold"
    assert [c.info.id for c in pool.containers()] != [container.info.id]


async def test_non_blocking_invoke_is_recorded(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    await create_action(platform, "shout", demo_models.adapters["shout"], make_zip)
    response = await platform.request("POST", "/api/v1/namespaces/_/actions/shout",
                                      json={"prompt": PROMPT, "max_tokens": 8})
    assert response.status == 202
    activation_id = (await response.json())["activationId"]
    assert response.headers["x-openwhisk-activation-id"] == activation_id
    for _ in range(600):
        response = await platform.request("GET", f"/api/v1/namespaces/_/activations/{activation_id}")
        if response.status == 200:
            break
        await asyncio.sleep(0.1)
    record = await response.json()
    assert response.status == 200 and record["response"]["success"], record
    response = await platform.request("GET",
                                      f"/api/v1/namespaces/_/activations/{activation_id}/result")
    assert (await response.json())["result"]["text"] == record["response"]["result"]["text"]
