"""The backbone server process: load once, publish read-only, answer attach requests.

Run as `python -m lorafaas.backbone.server --model-dir DIR --publish-dir DIR --socket PATH`.
It prints one line `READY <socket>` on stdout when the socket accepts attach requests, or
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafaas.backbone.ownership import claim_folder, same_file, still_owned
from lorafaas.wire.attach import MAX_LINE, decode, encode

logger = logging.getLogger(__name__)


@dataclass
class BackboneState:
    """What the server publishes and who is attached."""

    descriptor: dict[str, Any]
    load_seconds: float
    attached: set[str] = field(default_factory=set)


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


async def handle_client(state: BackboneState, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    """Answer one connection's requests; its attachments end when it closes."""
    clients: set[str] = set()
    try:
        while line := await reader.readline():
            writer.write(encode(answer(state, decode(line), clients)))
            await writer.drain()
    except (ConnectionError, ValueError) as error:
        logger.warning("attach connection ended: %s", error)
    finally:
        state.attached -= clients
        writer.close()


def answer(state: BackboneState, request: dict[str, Any], clients: set[str]) -> dict[str, Any]:
    """The reply to one attach-protocol request."""
    op = request.get("op")
    if op == "describe":
        return {"ok": True, "backbone": state.descriptor}
    if op == "attach":
        client = str(request.get("client", "anonymous"))
        clients.add(client)
        state.attached.add(client)
        logger.info("client %s attached", client)
        return {"ok": True, "backbone": state.descriptor}
    if op == "detach":
        client = str(request.get("client", "anonymous"))
        clients.discard(client)
        state.attached.discard(client)
        return {"ok": True}
    if op == "stats":
        return {"ok": True, "attached": sorted(state.attached),
                "bytes": state.descriptor.get("bytes", 0), "loadSeconds": state.load_seconds}
    return {"ok": False, "error": f"unknown op {op!r}"}


async def watch_parent(parent: int, stop: asyncio.Event, period_s: float = 1.0) -> None:
    """Stop when the parent (the platform) is gone, however it ended (`kill -9` included)."""
    while os.getppid() == parent:
        await asyncio.sleep(period_s)
    logger.warning("the platform (pid %d) is gone: stopping", parent)
    stop.set()


async def serve(state: BackboneState, socket_path: Path, parent: int) -> None:
    """Serve the attach socket until SIGTERM or SIGINT, or until the parent is gone."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # a dead server's: the platform reclaimed it
    server = await asyncio.start_unix_server(lambda r, w: handle_client(state, r, w),
                                             path=str(socket_path), limit=MAX_LINE)
    inode = socket_path.stat().st_ino
    # Function containers run as an unprivileged user and must be able to connect.
    os.chmod(socket_path.parent, 0o755)
    os.chmod(socket_path, 0o666)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(watch_parent(parent, stop))
    print(f"READY {socket_path}", flush=True)
    async with server:
        await stop.wait()
    watcher.cancel()
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
    parser.add_argument("--transport", choices=("tmpfs", "cuda-ipc"), default="tmpfs")
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
    publisher: BackbonePublisher = (TmpfsPublisher(args.publish_dir) if args.transport == "tmpfs"
                                    else CudaIpcPublisher(args.publish_dir))
    try:
        dtype = serving_dtype(args.model_dir, args.dtype)
        model = load_backbone(args.model_dir, dtype)
        descriptor = publisher.publish(model, args.model_dir)
        claimed = claim_folder(args.publish_dir, args.owner)
    except (BackboneRefused, PublishError, ValueError) as error:
        logger.error("backbone %s refused: %s", args.model_dir.name, error)
        print(f"FAILED {error}", flush=True)
        raise SystemExit(2) from error
    if args.transport == "tmpfs":
        del model  # runtimes map the published file; this process need not hold a copy
    state = BackboneState(descriptor=descriptor, load_seconds=time.monotonic() - started)
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
