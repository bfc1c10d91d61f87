"""The backbone server process: load once, publish read-only, answer attach requests.

Run as `python -m lorafaas.backbone.server --model-dir DIR --publish-dir DIR --socket PATH`.
`--socket` is the control socket (the invoker's; each container attaches on a channel
opened from it, see `wire/attach.py`). It prints one line `READY <socket>` on stdout when
the control socket accepts requests, or
`FAILED <reason>` and exits 2 when the backbone cannot be served (an architecture that
transformers cannot build as a causal LM, say): refused at start, never in containers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.backbone.channels import Channels, CudaShares, SameShare, Shares
from lorafaas.backbone.control import Control, start_control
from lorafaas.backbone.ownership import claim_folder, same_file, still_owned

logger = logging.getLogger(__name__)


@dataclass
class BackboneState:
    """What the server publishes (who is attached: its channels, see `channels.py`)."""

    descriptor: dict[str, Any]
    load_seconds: float
    shares: Shares | None = None  # what each attach hands out (None: the descriptor itself)
    epoch: str = ""  # this start's id, in every reply that hands out the descriptor


class BackboneRefused(Exception):
    """The backbone cannot be served; the message names why (its architecture, say)."""


def check_architecture(model_dir: Path) -> None:
    """BackboneRefused unless transformers can build the checkpoint as a causal LM."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise BackboneRefused(f"the config of {model_dir} cannot be read: {error}") from error
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        names = ", ".join(getattr(config, "architectures", None) or []) or "none named"
        raise BackboneRefused(f"backbone {model_dir.name}: architecture {names} (model type "
                              f"{config.model_type!r}) cannot be served as a causal LM")


def load_backbone(model_dir: Path, dtype_name: str) -> Any:
    """Load a Hugging Face causal LM from a local folder in the serving dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    check_architecture(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype_name),
                                                 local_files_only=True)
    model.eval()
    return model


async def watch_parent(parent: int, stop: asyncio.Event, period_s: float = 1.0) -> None:
    """Stop when the parent (the platform) is gone, however it ended (`kill -9` included)."""
    while os.getppid() == parent:
        await asyncio.sleep(period_s)
    logger.warning("the platform (pid %d) is gone: stopping", parent)
    stop.set()


async def serve(state: BackboneState, socket_path: Path, parent: int) -> None:
    """Serve the control socket and the channels it opens until SIGTERM or SIGINT, or until
    the parent (the platform) is gone."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # a dead server's: the platform reclaimed it
    # The control socket is the invoker's; each container gets its own channel from it.
    shares = state.shares or SameShare(state.descriptor)
    control = Control(state.descriptor, state.load_seconds,
                      Channels(shares, epoch=state.epoch))
    server = await start_control(control, socket_path)
    inode = socket_path.stat().st_ino
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(watch_parent(parent, stop))
    print(f"READY {socket_path}", flush=True)
    async with server:
        await stop.wait()
    watcher.cancel()
    await control.channels.close_all()
    if same_file(socket_path, inode):  # a later server may have bound the path since
        socket_path.unlink()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the backbone server process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--publish-dir", type=Path, required=True)
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--dtype", default="auto",
                        help="serving dtype: float32, bfloat16, float16, or auto (the "
                             "checkpoint's own)")
    parser.add_argument("--transport", choices=("tmpfs", "cuda-ipc"), default="tmpfs",
                        help="tmpfs, or cuda-ipc (chosen by lorafaas.backbone.accelerator)")
    parser.add_argument("--device", type=int, default=0,
                        help="the CUDA device index of cuda-ipc (host numbering)")
    parser.add_argument("--owner", default=uuid.uuid4().hex,
                        help="the platform run's owner id: marks what this server publishes")
    args = parser.parse_args(argv)
    parent = os.getppid()  # before the load: the platform may die while it runs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s backbone %(levelname)s %(message)s")
    from lorafaas.backbone.checkpoint import serving_dtype
    from lorafaas.backbone.publisher import (
        BackbonePublisher,
        CudaIpcPublisher,
        PublishError,
        TmpfsPublisher,
    )

    started = time.monotonic()
    cuda = CudaIpcPublisher(args.publish_dir, args.device) if args.transport == "cuda-ipc" \
        else None
    publisher: BackbonePublisher = cuda or TmpfsPublisher(args.publish_dir)
    epoch = uuid.uuid4().hex
    try:
        dtype = serving_dtype(args.model_dir, args.dtype)
        model = load_backbone(args.model_dir, dtype)
        descriptor = {**publisher.publish(model, args.model_dir), "epoch": epoch}
        claimed = claim_folder(args.publish_dir, args.owner)
    except (BackboneRefused, PublishError, ValueError, RuntimeError, AssertionError) as error:
        # RuntimeError, AssertionError: what torch raises for a CUDA device it cannot use
        # (no such device, out of memory, "Torch not compiled with CUDA enabled").
        logger.error("backbone %s refused: %s", args.model_dir.name, error)
        print(f"FAILED {error}", flush=True)
        raise SystemExit(2) from error
    if args.transport == "tmpfs":
        del model  # runtimes map the published file; this process need not hold a copy
    # CUDA: each attach gets its own shares of the storages the publisher holds.
    shares = CudaShares(descriptor, cuda.storages()) if cuda is not None else None
    state = BackboneState(descriptor, time.monotonic() - started, shares, epoch)
    logger.info("backbone %s ready in %.2fs (%s)", args.model_dir.name, state.load_seconds, dtype)
    try:
        asyncio.run(serve(state, args.socket, parent))
    finally:
        if still_owned(args.publish_dir, args.owner, claimed):
            publisher.unpublish()
        else:
            logger.info("%s is another server's now: left in place", args.publish_dir)


if __name__ == "__main__":
    main()
