"""Publishers make a loaded backbone mappable by other processes without copying it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_model
from transformers import PreTrainedModel

from lorafaas.backbone.checkpoint import checkpoint_signature

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")


class BackbonePublisher(Protocol):
    """Publishes a backbone once; describes how a runtime attaches to it."""

    def publish(self, model: PreTrainedModel, source_dir: Path) -> dict[str, Any]:
        """Make the weights shareable; return the attach descriptor."""

    def unpublish(self) -> None:
        """Release what publish made (the server is stopping)."""


class TmpfsPublisher:
    """CPU: the weights in the serving dtype as one safetensors file on a tmpfs folder.

    Every container mounts the folder read-only and maps the file, so the page cache
    holds the weights once for all of them.
    """

    def __init__(self, publish_dir: Path) -> None:
        self.publish_dir = publish_dir

    def publish(self, model: PreTrainedModel, source_dir: Path) -> dict[str, Any]:
        """Write weights, config and tokenizer files (skipped when the manifest matches)."""
        fingerprint = _fingerprint(source_dir, model.dtype)
        manifest_path = self.publish_dir / MANIFEST_FILE
        if manifest_path.exists() and json.loads(manifest_path.read_text()).get(
                "fingerprint") == fingerprint:
            logger.info("backbone already published in %s", self.publish_dir)
        else:
            self._write(model, source_dir, fingerprint)
        return json.loads(manifest_path.read_text())["descriptor"]

    def _write(self, model: PreTrainedModel, source_dir: Path, fingerprint: str) -> None:
        started = time.monotonic()
        staging = self.publish_dir.with_name(self.publish_dir.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        # save_model drops tied duplicates (lm_head sharing the embedding) safely.
        save_model(model, str(staging / WEIGHTS_FILE))
        model.config.to_json_file(str(staging / "config.json"))
        for name in TOKENIZER_FILES:
            if (source_dir / name).exists():
                shutil.copyfile(source_dir / name, staging / name)
        descriptor = {"transport": "tmpfs", "weights_file": WEIGHTS_FILE,
                      "dtype": str(model.dtype).removeprefix("torch."),
                      "config": model.config.to_dict(), "name": source_dir.name,
                      "bytes": (staging / WEIGHTS_FILE).stat().st_size}
        (staging / MANIFEST_FILE).write_text(json.dumps(
            {"fingerprint": fingerprint, "descriptor": descriptor}))
        _make_world_readable(staging)
        shutil.rmtree(self.publish_dir, ignore_errors=True)
        staging.rename(self.publish_dir)
        logger.info("backbone %s published to %s in %.2fs (%d bytes)", source_dir.name,
                    self.publish_dir, time.monotonic() - started, descriptor["bytes"])

    def unpublish(self) -> None:
        """Remove the folder; containers still mapping the file keep their pages."""
        shutil.rmtree(self.publish_dir, ignore_errors=True)


def _fingerprint(source_dir: Path, dtype: torch.dtype) -> str:
    return f"{dtype}|{checkpoint_signature(source_dir)}"


def _make_world_readable(folder: Path) -> None:
    # Function containers run as an unprivileged user and must read the files (0644).
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)


class CudaIpcPublisher:
    """CUDA: the weights stay in this process's device memory; runtimes get IPC handles."""

    def __init__(self, device: str = "cuda:0") -> None:
        self.device = device
        self._model: PreTrainedModel | None = None

    def publish(self, model: PreTrainedModel, source_dir: Path) -> dict[str, Any]:
        """Move the model to the device and describe every tensor by its IPC handle."""
        from lorafaas.wire.cuda_ipc import export_tensor

        # Held: the device memory lives as long as this process does.
        self._model = model.to(torch.device(self.device))  # type: ignore[arg-type]
        tensors = {name: export_tensor(t.detach()) for name, t in self._model.state_dict().items()}
        return {"transport": "cuda-ipc", "tensors": tensors, "device": self.device,
                "dtype": str(model.dtype).removeprefix("torch."),
                "config": model.config.to_dict(), "name": source_dir.name,
                "bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values())}

    def unpublish(self) -> None:
        """Drop the model; attached runtimes must have detached first."""
        self._model = None
