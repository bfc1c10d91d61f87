"""Reproducible, idempotent, crash-safe build of the demo backbone and demo adapters.

Layout under `models_dir`::

    demo-backbone/                 config.json, model.safetensors, generation_config.json,
                                   tokenizer.json, tokenizer_config.json
    demo-adapters/<name>/          adapter_config.json, adapter_model.safetensors

Every built directory carries a marker file with the fingerprint of the spec that produced it.
A build happens in a temporary sibling directory and each finished directory is renamed into
place, so readers never observe a half-written model; a crash at worst leaves a directory
missing or stale, which the next call detects and rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lorafaas.demo.adapters import (
    DEFAULT_ADAPTERS,
    AdapterSpec,
    LoraSpec,
    random_adapter,
    save_adapter,
    train_adapter,
)
from lorafaas.demo.backbone import BackboneSpec, build_backbone, save_backbone
from lorafaas.demo.tokenizer import TokenizerSpec, build_tokenizer

logger = logging.getLogger(__name__)

# Bump whenever the generation code changes in a way the spec fields do not capture.
DEMO_VERSION = "1"
BACKBONE_DIRNAME = "demo-backbone"
ADAPTERS_DIRNAME = "demo-adapters"
MARKER_NAME = ".lorafaas-demo.json"
LOCK_NAME = ".demo-build.lock"
TEMP_PREFIX = ".demo-build-"


@dataclass(frozen=True)
class DemoModels:
    """Where the built demo models live."""

    backbone_dir: Path
    adapters: dict[str, Path]


@dataclass(frozen=True)
class DemoSpec:
    """Everything that determines the demo models' bytes."""

    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    adapters: tuple[AdapterSpec, ...] = DEFAULT_ADAPTERS
    # True: seeded random adapters instead of trained ones (see `random_adapter`).
    random_adapters: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form of the whole spec, including the code version."""
        spec: dict[str, Any] = {
            "demo_version": DEMO_VERSION,
            "tokenizer": self.tokenizer.as_dict(),
            "backbone": self.backbone.as_dict(),
            "lora": self.lora.as_dict(),
            "adapters": [a.as_dict() for a in self.adapters],
        }
        if self.random_adapters:  # only then: the trained demo's fingerprint stays the same
            spec["random_adapters"] = True
        return spec

    def fingerprint(self) -> str:
        """Stable hash of the spec; equal fingerprints mean an identical build."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def demo_layout(models_dir: Path, spec: DemoSpec) -> DemoModels:
    """Final paths of the demo models under `models_dir` (whether built or not)."""
    adapters_root = models_dir / ADAPTERS_DIRNAME
    return DemoModels(
        backbone_dir=models_dir / BACKBONE_DIRNAME,
        adapters={a.name: adapters_root / a.name for a in spec.adapters},
    )


def _all_dirs(models: DemoModels) -> list[Path]:
    """Backbone and adapter directories of a layout."""
    return [models.backbone_dir, *models.adapters.values()]


def _read_fingerprint(directory: Path) -> str | None:
    """Fingerprint recorded in a directory's marker, or None if absent or unreadable."""
    try:
        data = json.loads((directory / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("fingerprint") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def is_built(models: DemoModels, fingerprint: str) -> bool:
    """True when every directory exists and was built from this exact spec."""
    return all(_read_fingerprint(d) == fingerprint for d in _all_dirs(models))


def _write_marker(directory: Path, spec: DemoSpec) -> None:
    """Record the spec in `directory`; written last, so its presence means 'complete'."""
    payload = {"fingerprint": spec.fingerprint(), "spec": spec.as_dict()}
    (directory / MARKER_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _make_world_readable(root: Path) -> None:
    """Files 0644, dirs 0755: runtime containers may read the models as another user."""
    # transformers 5 writes model.safetensors with mode 0600 (it saves via a temp file).
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


@contextmanager
def _build_lock(models_dir: Path) -> Iterator[None]:
    """Exclusive inter-process lock so concurrent callers build once, not twice."""
    with open(models_dir / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_temp_dirs(models_dir: Path) -> None:
    """Delete leftovers of crashed builds; only called while holding the lock."""
    for stale in models_dir.glob(f"{TEMP_PREFIX}*"):
        logger.warning("removing leftover of an interrupted demo build: %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _generate(spec: DemoSpec, staging: DemoModels) -> None:
    """Build tokenizer, backbone and adapters into the staging layout."""
    tokenizer = build_tokenizer(spec.tokenizer)
    backbone = build_backbone(spec.backbone, tokenizer)
    save_backbone(backbone, tokenizer, staging.backbone_dir)
    for adapter_spec in spec.adapters:
        started = time.monotonic()
        adapter = (random_adapter(backbone, adapter_spec, spec.lora) if spec.random_adapters
                   else train_adapter(backbone, tokenizer, adapter_spec, spec.lora))
        save_adapter(adapter, staging.adapters[adapter_spec.name])
        logger.info("adapter %s ready in %.1fs", adapter_spec.name, time.monotonic() - started)
    for directory in _all_dirs(staging):
        _write_marker(directory, spec)
        _make_world_readable(directory)


def _install(source: Path, target: Path, trash: Path) -> None:
    """Move a finished directory into place, first moving any stale version aside."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        # rename() cannot replace a non-empty directory, so swap via the trash dir.
        os.rename(target, trash / f"old-{target.name}")
    os.rename(source, target)


def _build_and_install(models_dir: Path, spec: DemoSpec, final: DemoModels) -> None:
    """Generate into a temporary sibling directory, then rename each result into place."""
    temp_root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=models_dir))
    try:
        staging = demo_layout(temp_root / "new", spec)
        trash = temp_root / "trash"
        trash.mkdir()
        # The caller's RNG state is not ours to change: seed inside a forked RNG.
        with torch.random.fork_rng(devices=[]):
            _generate(spec, staging)
        for source, target in zip(_all_dirs(staging), _all_dirs(final), strict=True):
            _install(source, target, trash)
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)


def build_demo_models(models_dir: Path, spec: DemoSpec | None = None) -> DemoModels:
    """Ensure the demo backbone and adapters exist under `models_dir`; build only if needed."""
    spec = spec or DemoSpec()
    models_dir = Path(models_dir).resolve()
    final = demo_layout(models_dir, spec)
    fingerprint = spec.fingerprint()
    if is_built(final, fingerprint):
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(models_dir):
        # Another process may have finished the build while we waited for the lock.
        if is_built(final, fingerprint):
            return final
        _remove_stale_temp_dirs(models_dir)
        started = time.monotonic()
        logger.info("building demo models in %s (spec %s)", models_dir, fingerprint[:12])
        _build_and_install(models_dir, spec, final)
        logger.info("demo models built in %.1fs", time.monotonic() - started)
    return final
