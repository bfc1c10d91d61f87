"""Integration test: the runtime image builds and runs under the hardened container flags.

The first run builds the base image, the wheelhouse and the image (a few minutes); later
runs reuse them through ``$LORAFAAS_HOME`` (default ``~/.lorafaas``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import docker
import docker.errors
import pytest

from lorafaas.images.runtime_image import ensure_runtime_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PINNED = ["torch", "transformers", "peft", "safetensors", "tokenizers", "accelerate", "aiohttp"]
# The flags function containers run with.
HARDENED: dict[str, object] = {
    "network_mode": "none",
    "read_only": True,
    "user": "65534:65534",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "mem_limit": "2g",
    "tmpfs": {"/tmp": ""},
}


def lorafaas_home() -> Path:
    """State dir shared with the CLI, so the base image and wheelhouse are reused."""
    return Path(os.environ.get("LORAFAAS_HOME") or Path.home() / ".lorafaas")


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    """A Docker client, or a skip when no engine answers."""
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient) -> str:
    """Tag of the runtime image, built if needed."""
    return ensure_runtime_image(client, home=lorafaas_home(), repo_root=REPO_ROOT)


def run_python(client: docker.DockerClient, image: str, code: str) -> str:
    """Run Python code in a hardened container of the image; return its stdout."""
    output = client.containers.run(
        image, ["-c", code], entrypoint="python3", remove=True, **HARDENED
    )
    return bytes(output).decode()


def test_second_call_finds_the_image(client: docker.DockerClient, image: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """Once built, ensure_runtime_image returns the same tag without building."""
    with caplog.at_level(logging.INFO, logger="lorafaas.images.runtime_image"):
        assert ensure_runtime_image(client, home=lorafaas_home(), repo_root=REPO_ROOT) == image
    # Its log says which way it went (an assertion on time would fail on a loaded machine).
    assert f"runtime image {image} already exists" in caplog.text
    config = client.images.get(image).attrs["Config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["python3", "-m", "lorafaas.runtime"]


def test_python_is_3_11(client: docker.DockerClient, image: str) -> None:
    """The image's python3 matches the cp311 wheels."""
    out = run_python(client, image, "import sys; print(*sys.version_info[:2])")
    assert out.split() == ["3", "11"]


def test_stack_imports_and_matches_host(client: docker.DockerClient, image: str) -> None:
    """torch/transformers/peft import read-only and offline, at the host's versions."""
    code = (
        "import json, importlib.metadata as md, torch, transformers, peft, safetensors, aiohttp\n"
        f"print(json.dumps({{name: md.version(name) for name in {PINNED!r}}}))\n"
    )
    in_image = json.loads(run_python(client, image, code).strip().splitlines()[-1])
    assert in_image == {name: metadata.version(name) for name in PINNED}


def test_lora_forward_pass_on_read_only_root(client: docker.DockerClient, image: str) -> None:
    """A tiny LoRA model runs: nothing needs writing outside /tmp."""
    code = (
        "import torch, transformers, peft\n"
        "cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32,"
        " n_positions=16, bos_token_id=0, eos_token_id=0)\n"
        "model = peft.get_peft_model(transformers.GPT2LMHeadModel(cfg),"
        " peft.LoraConfig(r=2, target_modules=['c_attn'], fan_in_fan_out=True))\n"
        "print(tuple(model(torch.tensor([[1, 2, 3]])).logits.shape))\n"
    )
    assert run_python(client, image, code).strip().splitlines()[-1] == "(1, 3, 32)"


def test_runs_as_nobody_and_cannot_write_root(client: docker.DockerClient, image: str) -> None:
    """The process is uid/gid 65534, / is read-only and /tmp is writable."""
    code = (
        "import errno, os\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n"
        "    open('/probe', 'w')\n"
        "    print('writable')\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno])\n"
        "open('/tmp/probe', 'w').write('ok')\n"
        "print(os.environ['HOME'])\n"
    )
    assert run_python(client, image, code).split() == ["65534", "65534", "EROFS", "/tmp"]
