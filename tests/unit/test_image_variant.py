"""The runtime image's variant (CPU or CUDA torch): chosen from the accelerator setting
and the host, named in the tag, part of every cache key; no CUDA download here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.errors
import pytest

from lorafaas.backbone.accelerator import HostFacts, parse_accelerator
from lorafaas.images import runtime_image
from lorafaas.images.runtime_image import (
    RuntimeImageError,
    _make_context,
    _wheelhouse_key,
    ensure_wheelhouse,
    requirements_path,
    runtime_image_tag,
    smoke_test_gpu,
)
from lorafaas.images.variant import (
    CUDA_FLAVOUR,
    ImageVariant,
    choose_variant,
    index_arguments,
    variant_requirements,
    wheelhouse_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CPU_HOST, GPU_HOST = HostFacts(0, 0), HostFacts(1, 1)
REQUIREMENTS = "# pinned\ntorch==2.13.0\ntransformers==5.23.0\n"


def test_the_variant_follows_the_backbones_transport() -> None:
    assert choose_variant(parse_accelerator("auto"), CPU_HOST) is ImageVariant.CPU
    assert choose_variant(parse_accelerator("auto"), GPU_HOST) is ImageVariant.CUDA
    assert choose_variant(parse_accelerator("cpu"), GPU_HOST) is ImageVariant.CPU
    assert choose_variant(parse_accelerator("auto"), HostFacts(1, 0)) is ImageVariant.CPU


def test_the_cuda_variant_pins_torchs_cuda_build_from_its_index() -> None:
    assert variant_requirements(REQUIREMENTS, ImageVariant.CPU) == REQUIREMENTS
    cuda = variant_requirements(REQUIREMENTS, ImageVariant.CUDA)
    assert f"torch==2.13.0+{CUDA_FLAVOUR}\n" in cuda and "transformers==5.23.0" in cuda
    assert variant_requirements("torch==2.13.0+cpu\n", ImageVariant.CUDA) == (
        f"torch==2.13.0+{CUDA_FLAVOUR}\n")
    assert index_arguments(ImageVariant.CPU) == []
    assert index_arguments(ImageVariant.CUDA) == [
        "--extra-index-url", f"https://download.pytorch.org/whl/{CUDA_FLAVOUR}"]
    with pytest.raises(ValueError, match="no torch==VERSION"):
        variant_requirements("transformers==5.23.0\n", ImageVariant.CUDA)


def test_the_project_requirements_pin_a_torch_the_cuda_variant_can_rewrite() -> None:
    text = requirements_path(REPO_ROOT).read_text()
    assert "+" + CUDA_FLAVOUR in variant_requirements(text, ImageVariant.CUDA)


def test_the_variant_is_named_in_the_tag_and_changes_it() -> None:
    cpu = runtime_image_tag(REPO_ROOT)
    cuda = runtime_image_tag(REPO_ROOT, ImageVariant.CUDA)
    assert "-cpu-" in cpu and "-cuda-" in cuda
    assert cpu.rsplit("-", 1)[1] != cuda.rsplit("-", 1)[1]  # the hash differs too
    assert runtime_image_tag(REPO_ROOT, ImageVariant.CPU) == cpu


def test_each_variant_has_its_own_wheelhouse_and_key() -> None:
    requirements = requirements_path(REPO_ROOT)
    assert _wheelhouse_key(requirements) != _wheelhouse_key(requirements, ImageVariant.CUDA)
    assert wheelhouse_name(ImageVariant.CPU) == "wheelhouse"
    assert wheelhouse_name(ImageVariant.CUDA) == "wheelhouse-cuda"


def test_a_cuda_wheelhouse_downloads_the_pinned_cuda_torch_from_its_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[tuple[list[str], str]] = []

    def pip(cmd: list[str], *, timeout: float, what: str) -> str:
        wanted = Path(cmd[cmd.index("-r") + 1])
        commands.append((cmd, wanted.read_text()))
        return ""

    monkeypatch.setattr(runtime_image, "_run_command", pip)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(REQUIREMENTS)
    wheelhouse = ensure_wheelhouse(home=tmp_path / "home", requirements=requirements,
                                   variant=ImageVariant.CUDA)
    assert wheelhouse.name == "wheelhouse-cuda"
    [(cmd, wanted)] = commands
    assert "--extra-index-url" in cmd and f"torch==2.13.0+{CUDA_FLAVOUR}" in wanted
    assert list(wheelhouse.iterdir()) == [wheelhouse / ".requirements.sha256"]
    ensure_wheelhouse(home=tmp_path / "home", requirements=requirements,
                      variant=ImageVariant.CUDA)
    assert len(commands) == 1  # its stamp matches: nothing downloaded again


def test_a_cuda_build_context_holds_the_cuda_pin_under_the_cuda_tag(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    context = tmp_path / "context"
    context.mkdir()
    tag = _make_context(context, repo_root=REPO_ROOT, wheelhouse=wheels,
                        variant=ImageVariant.CUDA)
    assert tag == runtime_image_tag(REPO_ROOT, ImageVariant.CUDA)
    assert f"+{CUDA_FLAVOUR}" in (context / "requirements.txt").read_text()


class FakeEngine:
    """Records the smoke test's run; fails it when told to."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.runs: list[dict[str, Any]] = []
        self.removed: list[str] = []
        self.containers, self.images = self, self

    def run(self, image: str, **options: Any) -> bytes:
        self.runs.append({"image": image, **options})
        if self.fail:
            raise docker.errors.ContainerError("c", 1, "python3", image, b"no CUDA device")
        return b"12.8 NVIDIA H200\n"

    def remove(self, image: str, force: bool) -> None:
        self.removed.append(image)


def test_the_gpu_smoke_test_runs_the_image_on_the_chosen_gpu() -> None:
    engine = FakeEngine(fail=False)
    assert smoke_test_gpu(engine, "img:cuda", 2) == "12.8 NVIDIA H200"  # type: ignore[arg-type]
    [run] = engine.runs
    assert "torch.cuda.is_available()" in run["entrypoint"][2]
    assert run["device_requests"][0]["DeviceIDs"] == ["2"]
    assert run["network_mode"] == "none" and run["remove"] is True


def test_an_image_that_sees_no_gpu_is_removed_and_reported() -> None:
    engine = FakeEngine(fail=True)
    with pytest.raises(RuntimeImageError, match="does not see GPU 0"):
        smoke_test_gpu(engine, "img:cuda", 0)  # type: ignore[arg-type]
    assert engine.removed == ["img:cuda"]
