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
from safetensors.torch import save_file
from transformers import AutoTokenizer, PreTrainedModel

from lorafaas.backbone.checkpoint import checkpoint_signature

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER_JSON = "tokenizer.json"
# Bumped when what is published changes, so that an older publish is written afresh.
PUBLISH_FORMAT = 2


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
        """Write weights, config, generation config and tokenizer (skipped when the manifest
        matches)."""
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
        save_file(published_state(model), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        descriptor = {"transport": "tmpfs", "weights_file": WEIGHTS_FILE,
                      **describe(model, source_dir),
                      "bytes": (staging / WEIGHTS_FILE).stat().st_size}
        write_generation_files(model, source_dir, staging)
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
    return f"{PUBLISH_FORMAT}|{dtype}|{checkpoint_signature(source_dir)}"


def published_state(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The tensors to publish: each once (a tied weight under its source's name only)."""
    tied = tied_weights(model)
    return {name: tensor.contiguous() for name, tensor in model.state_dict().items()
            if name not in tied}


def tied_weights(model: PreTrainedModel) -> dict[str, str]:
    """Tied weights, target -> source (`lm_head.weight` -> `model.embed_tokens.weight`)."""
    return dict(getattr(model, "all_tied_weights_keys", None) or {})


def describe(model: PreTrainedModel, source_dir: Path) -> dict[str, Any]:
    """What every transport's descriptor holds: dtype, config, name, tied weights."""
    return {"dtype": str(model.dtype).removeprefix("torch."), "config": model.config.to_dict(),
            "name": source_dir.name, "tied": tied_weights(model)}


def write_generation_files(model: PreTrainedModel, source_dir: Path, target: Path) -> None:
    """Everything generation depends on besides the weights: the config, the checkpoint's
    generation config, and its tokenizer in one format whatever the checkpoint holds.

    The tokenizer is loaded here (this process may read a checkpoint that containers
    cannot, and has the converters of SentencePiece and BPE files) and saved again, so that
    containers always load `tokenizer.json`, with the chat template beside it."""
    model.config.to_json_file(str(target / "config.json"))
    if (source_dir / GENERATION_CONFIG).exists():
        shutil.copyfile(source_dir / GENERATION_CONFIG, target / GENERATION_CONFIG)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source_dir), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise PublishError(f"the tokenizer of {source_dir} cannot be loaded: {error}") from error
    tokenizer.save_pretrained(str(target))
    if not (target / TOKENIZER_JSON).exists():
        raise PublishError(f"the tokenizer of {source_dir} has no fast (tokenizers) form")


class PublishError(RuntimeError):
    """The checkpoint cannot be published as it is; the message says why."""


def _make_world_readable(folder: Path) -> None:
    # Function containers run as an unprivileged user and must read the files (0644).
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)


class CudaIpcPublisher:
    """CUDA: the weights stay in this process's device memory; each receiver gets its own
    IPC shares of them (`shares`), and reads the generation files from `publish_dir`, a
    folder of those files alone (no weights are written)."""

    def __init__(self, publish_dir: Path, device: int = 0) -> None:
        self.publish_dir = publish_dir  # config, generation config, tokenizer: containers read them
        self.device = torch.device("cuda", device)
        # Held until unpublish: every receiver maps this memory (wire/cuda_ipc.py).
        self._model: PreTrainedModel | None = None
        self._tensors: dict[str, torch.Tensor] = {}
        self._storages: list[Any] = []

    def publish(self, model: PreTrainedModel, source_dir: Path) -> dict[str, Any]:
        """Move the model to the device and describe every tensor as a view on a storage
        (each storage once: tied weights are one)."""
        from lorafaas.wire.cuda_ipc import group_by_storage

        self._model = model.to(self.device)  # type: ignore[arg-type]
        # Held as well as the model: `contiguous()` may have made a tensor of its own.
        self._tensors = {name: t.detach() for name, t in published_state(self._model).items()}
        self._storages, views = group_by_storage(self._tensors)
        torch.cuda.synchronize(self.device)  # the weights are on the device before any share
        shutil.rmtree(self.publish_dir, ignore_errors=True)
        self.publish_dir.mkdir(parents=True)
        write_generation_files(model, source_dir, self.publish_dir)
        _make_world_readable(self.publish_dir)
        return {"transport": "cuda-ipc", "views": views, "device": self.device.index,
                **describe(model, source_dir),
                "bytes": sum(s.nbytes() for s in self._storages),
                "deviceMemory": device_memory(self.device.index or 0)}

    def storages(self) -> list[Any]:
        """The published storages, in the order of the descriptor's views."""
        return list(self._storages)

    def unpublish(self) -> None:
        """Drop the weights (receivers still holding them keep them alive, by torch's
        reference counts) and the generation files."""
        self._model, self._tensors, self._storages = None, {}, []
        shutil.rmtree(self.publish_dir, ignore_errors=True)


def device_memory(device: int, mem_get_info: Any = None) -> dict[str, int]:
    """Free and total bytes of a CUDA device as the driver reports them
    (`torch.cuda.mem_get_info`; `mem_get_info` stands in for it in tests)."""
    free, total = (mem_get_info or torch.cuda.mem_get_info)(device)
    return {"free": int(free), "total": int(total)}
