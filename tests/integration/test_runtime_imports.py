"""The function runtime imports only what serving needs: a function the native engine serves
never imports transformers or peft; one the general path serves imports them at its load.

Each serving case runs in a fresh interpreter that imports the container's entry point
(`lorafaas.runtime.__main__`, as `python -m lorafaas.runtime` does), loads a function from
what the backbone server published (sharing off: the private copy, no server needed), runs a
prompt and a chat, and prints the modules it holds. In the runtime image itself, a cold
start's imports come from the bytecode compiled at the image's build (its root is read-only:
nothing compiled at a start is kept), and none of them is a library that only some functions
need.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("transformers", "peft")
# What a cold start imports before it listens never includes these: a chat template's
# renderer (jinja2) loads with the first template, the rest with the general path.
NOT_AT_START = ("transformers", "peft", "jinja2", "accelerate", "huggingface_hub")
# In the image: every module the entry point imports, and whether it was compiled from source
# (`python -v` names the file a module's code object came from: its .pyc, in quotes, or
# else the source it compiled).
IN_IMAGE = """
import gc, json, ssl, sys
import lorafaas.runtime.__main__
print(json.dumps({"top": sorted({m.split(".")[0] for m in sys.modules}),
                  "collecting": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "default_ca_certs": ssl.create_default_context().cert_store_stats()["x509"]}))
"""
CHILD = """
import json, sys
from pathlib import Path
import lorafaas.runtime.__main__ as entry
from lorafaas.runtime.function import RuntimePaths, load_function
from lorafaas.runtime.request import parse_request

loaded = load_function(RuntimePaths(None, Path(sys.argv[1]), Path(sys.argv[2])), "test")
prompt = parse_request({"prompt": "Ahoy", "max_tokens": 3}, 64, loaded.render_chat)
chat = parse_request({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}, 64,
                     loaded.render_chat)
results = [loaded.run(r)[0] for r in (prompt, chat)]
print(json.dumps({"engine": "native" if loaded.native is not None else "general",
                  "libraries_ms": entry.LIBRARIES_MS, "results": results,
                  "breakdown": loaded.breakdown,
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))}))
""".replace("HEAVY", repr(HEAVY))


@pytest.fixture(scope="module")
def published(demo_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo backbone as the backbone server publishes it."""
    from tests.integration.test_family_checkpoints import publish

    folder = tmp_path_factory.mktemp("published")
    publish(demo_models.backbone_dir, folder)
    return folder


def dora_adapter(backbone_dir: Path, folder: Path) -> Path:
    """A DoRA adapter of the demo backbone (its magnitudes made non-trivial by a seed)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(backbone_dir))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, use_dora=True,
                                            target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(str(folder))
    return folder


def serve_in_child(published: Path, adapter: Path) -> dict[str, Any]:
    """Load and run the function in a fresh runtime interpreter; what it reports."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "platform"),
                   "LORAFAAS_TORCH_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", CHILD, str(published), str(adapter)],
                               capture_output=True, text=True, env=environment, timeout=600,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def test_a_native_function_never_imports_transformers_or_peft(demo_models: Any,
                                                              published: Path) -> None:
    report = serve_in_child(published, demo_models.adapters["pirate"])
    assert report["engine"] == "native"
    assert report["heavy"] == []
    assert all(result["usage"]["completion_tokens"] >= 1 for result in report["results"])
    assert "libraries" not in report["breakdown"]  # nothing more was imported at load


def test_a_general_path_function_imports_them_at_its_load(demo_models: Any, published: Path,
                                                          tmp_path: Path) -> None:
    """The control: a DoRA adapter (which only the general path computes exactly) loads
    transformers and peft, and its load reports that import as its libraries step."""
    adapter = dora_adapter(demo_models.backbone_dir, tmp_path / "dora")
    report = serve_in_child(published, adapter)
    assert report["engine"] == "general"
    assert report["heavy"] == sorted(HEAVY)
    assert report["breakdown"]["libraries"] > 0
    assert all(result["usage"]["completion_tokens"] >= 1 for result in report["results"])


def test_a_cold_start_in_the_image_imports_from_bytecode_and_only_what_serving_needs(
        runtime_image: str) -> None:
    completed = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534",
         "--read-only", "--entrypoint", "python3", runtime_image, "-v", "-c", IN_IMAGE],
        capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    origins = [line.removeprefix("# code object from ") for line in completed.stderr.splitlines()
               if line.startswith("# code object from ")]
    assert any("/opt/lorafaas/lorafaas/runtime/__pycache__/" in origin for origin in origins)
    assert [origin for origin in origins if not origin.endswith(".pyc'")] == []
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"torch", "aiohttp", "tokenizers", "safetensors"} <= set(report["top"])
    assert set(report["top"]) & set(NOT_AT_START) == set()
    # The import ran with the collector held off; serving runs with it on, the libraries'
    # objects frozen out of its passes.
    assert report["collecting"] is True
    assert report["frozen"] > 100_000
    # No network in a function container, so no CA bundle parsed at its start (aiohttp's
    # import makes client contexts with OpenSSL's default CA file).
    assert report["default_ca_certs"] == 0


def test_the_collector_is_held_inside_and_restored_after() -> None:
    from lorafaas.runtime import collector

    assert gc.isenabled()
    try:
        with collector.held():
            assert not gc.isenabled()
            made: list[list[int]] = [[] for _ in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
        gc.disable()
        with collector.held():
            pass
        assert not gc.isenabled()  # held by someone else before: left as it was
    finally:
        gc.enable()
        gc.unfreeze()
