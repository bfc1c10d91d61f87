"""What a prefill profile is valid for (its key) and which fit sizes a function's batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorafaas.backbone.checkpoint import checkpoint_digest
from lorafaas.controller.prefill import action_rank, current_key
from lorafaas.invoker.prefill_fits import FitTable, PrefillFit, choose_fit
from lorafaas.registry.models import Action
from lorafaas.settings import Settings, load_settings, replace
from lorafaas.wire.machine import describe_machine
from lorafaas.wire.prefill_fit import PrefillModel, PrefillProfile, format_profile

IMAGE_A, IMAGE_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def fit(rank: int, prompt_length: int, t0_ms: float = 30.0, measured_ms: int = 1) -> PrefillFit:
    """A fit of T(b) = t0 + 10·(b−1) measured at b = 1, 2."""
    model = PrefillModel(t0_ms, 10.0)
    return PrefillFit(rank, PrefillProfile(prompt_length, [(1, t0_ms), (2, t0_ms + 10)], model,
                                           1.0), measured_ms)


def test_the_fit_at_the_longest_prompt_is_chosen() -> None:
    fits = [fit(8, 128, t0_ms=90.0), fit(8, 32, t0_ms=30.0), fit(8, 64, t0_ms=50.0)]
    chosen = choose_fit(fits)
    assert chosen is not None and chosen.profile.prompt_length == 128
    assert chosen.model == PrefillModel(90.0, 10.0)
    assert choose_fit([]) is None


def test_the_table_keeps_one_fit_per_rank_and_prompt_length() -> None:
    table = FitTable([fit(8, 32, t0_ms=30.0), fit(16, 32, t0_ms=40.0)])
    table.add([fit(8, 32, t0_ms=33.0, measured_ms=2), fit(8, 128, t0_ms=95.0)])
    assert table.ranks() == [8, 16]
    assert table.has(8) and not table.has(4)
    assert table.chosen(4) is None
    chosen = table.chosen(8)
    assert chosen is not None and chosen.model.t0_ms == 95.0
    table.add([fit(8, 128, t0_ms=99.0, measured_ms=3)])
    chosen = table.chosen(8)
    assert chosen is not None and (chosen.model.t0_ms, chosen.measured_ms) == (99.0, 3)


def test_the_profile_reads_back_from_its_json_and_prints_its_fit() -> None:
    profile = fit(8, 32).profile
    assert PrefillProfile.from_dict(profile.as_dict()) == profile
    printed = format_profile(profile)
    assert printed.splitlines()[0] == "prompt length 32 tokens"
    assert "fit: T(b) = 30.00 + 10.00·(b−1) ms   R² = 1.0000" in printed


def test_the_machine_names_the_torch_threads() -> None:
    assert f"{os.cpu_count()} cores, 2 torch threads" in describe_machine(2)
    assert "default torch threads" in describe_machine(0)
    assert describe_machine(1) != describe_machine(2)


class Images:
    """A backend that knows one image id per tag."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def image_id(self, image: str) -> str:
        return self.ids[image]


@pytest.fixture
def backbone_dir(tmp_path: Path) -> Path:
    """A backbone checkpoint folder (its content does not matter to its identity)."""
    folder = tmp_path / "demo-backbone"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def settings_for(backbone_dir: Path, **changes: object) -> Settings:
    """Settings on that backbone, 2 threads per container, the image tagged `latest`."""
    base = load_settings({"LORAFAAS_HOME": str(backbone_dir.parent / "home")})
    values: dict[str, object] = {"container_threads": 2, **changes}
    return replace(base, backbone_dir=backbone_dir, runtime_image="runtime:latest", **values)


async def test_a_changed_checkpoint_image_or_machine_changes_the_key(backbone_dir: Path) -> None:
    images = Images({"runtime:latest": IMAGE_A, "runtime:other": IMAGE_B})
    settings = settings_for(backbone_dir)
    key = await current_key(settings, images)  # type: ignore[arg-type]
    assert key == await current_key(settings, images)  # type: ignore[arg-type]
    assert (key.backbone, key.image) == ("demo-backbone", IMAGE_A)
    assert key.backbone_digest == checkpoint_digest(backbone_dir)
    assert "2 torch threads" in key.machine

    # The tag `latest` moved to a rebuilt image: the image's id differs.
    images.ids["runtime:latest"] = IMAGE_B
    assert (await current_key(settings, images)).image == IMAGE_B  # type: ignore[arg-type]
    images.ids["runtime:latest"] = IMAGE_A
    # Containers run with another thread count.
    other_threads = await current_key(settings_for(backbone_dir, container_threads=1),
                                      images)  # type: ignore[arg-type]
    assert other_threads.machine != key.machine
    # The checkpoint's weights were replaced.
    (backbone_dir / "model.safetensors").write_bytes(b"other weights")
    changed = await current_key(settings, images)  # type: ignore[arg-type]
    assert changed.backbone_digest != key.backbone_digest
    assert (changed.image, changed.machine) == (key.image, key.machine)


def test_the_rank_comes_from_the_adapter_annotation() -> None:
    adapter = {"key": "adapter", "value": {"rank": 8, "alpha": 16.0}}
    assert action_rank(Action(annotations=[{"key": "backbone", "value": "demo"}, adapter])) == 8
    assert action_rank(Action(annotations=[{"key": "backbone", "value": "demo"}])) is None
    assert action_rank(Action(annotations=[{"key": "adapter", "value": "r8"}])) is None


def test_settings_parse_profiling_and_prompt_lengths() -> None:
    settings = load_settings({})
    assert (settings.prefill_profiling, settings.prefill_prompt_lengths) == ("auto", (32, 128))
    chosen = load_settings({"LORAFAAS_PREFILL_PROFILING": "off",
                            "LORAFAAS_PREFILL_PROMPT_LENGTHS": "256, 64,64"})
    assert (chosen.prefill_profiling, chosen.prefill_prompt_lengths) == ("off", (64, 256))
