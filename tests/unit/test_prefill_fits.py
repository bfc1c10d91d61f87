"""What a prefill profile is valid for (its key) and which fit sizes a function's batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorafaas.backbone.checkpoint import checkpoint_digest
from lorafaas.controller.function_refs import action_rank
from lorafaas.invoker.batching import implausible_model, max_batch_size
from lorafaas.invoker.dispatcher import DEFAULT_PREFILL
from lorafaas.invoker.prefill_fits import (
    MAX_AGE_MS,
    FitTable,
    PrefillFit,
    choose_fit,
    fit_problem,
    is_stale,
)
from lorafaas.invoker.prefill_profiling import current_key
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


@pytest.mark.parametrize(("model", "reason"), [
    (PrefillModel(1463.0, 1228.0), "T0 1463.0 ms over"),  # measured on a loaded machine
    (PrefillModel(40.0, 1228.0), "α 1228.0 ms over"),
    (PrefillModel(-5.0, 10.0), "out of range"),
    (PrefillModel(30.0, -1.0), "out of range"),
    (PrefillModel(float("nan"), 10.0), "not finite"),
    (PrefillModel(30.0, float("inf")), "not finite"),
])
def test_an_implausible_model_is_named_with_its_reason(model: PrefillModel, reason: str) -> None:
    problem = implausible_model(model, DEFAULT_PREFILL)
    assert problem is not None and reason in problem


def test_a_model_near_the_default_is_plausible() -> None:
    for model in (PrefillModel(35.0, 16.0), PrefillModel(200.0, 100.0), PrefillModel(10.0, 0.0)):
        assert implausible_model(model, DEFAULT_PREFILL) is None


def test_the_loaded_fit_would_size_batches_to_one_and_is_refused() -> None:
    loaded = PrefillFit(8, PrefillProfile(128, [(1, 1463.0), (2, 2691.0)],
                                          PrefillModel(1463.0, 1228.0), 1.0), 1)
    assert max_batch_size(2000.0, loaded.model, 8) == 1
    assert max_batch_size(2000.0, DEFAULT_PREFILL, 8) == 8  # what sizes them instead
    assert fit_problem(loaded, DEFAULT_PREFILL) is not None


def test_a_fit_with_a_low_r2_is_refused_and_an_old_one_is_stale() -> None:
    scattered = PrefillFit(8, PrefillProfile(32, [(1, 30.0), (2, 90.0), (3, 40.0)],
                                             PrefillModel(50.0, 5.0), 0.05), 1)
    problem = fit_problem(scattered, DEFAULT_PREFILL)
    assert problem is not None and "R² 0.050" in problem
    sound = fit(8, 32, measured_ms=10_000)
    assert fit_problem(sound, DEFAULT_PREFILL) is None
    assert not is_stale(sound, 10_000 + MAX_AGE_MS)
    assert is_stale(sound, 10_001 + MAX_AGE_MS)


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
