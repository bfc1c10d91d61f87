"""The backbone server process: load once, publish read-only, answer attach requests.

Run as `python -m lorafaas.backbone.server --model-dir DIR --publish-dir DIR --socket PATH`.
It prints one line `READY <socket>` on stdout when the socket accepts attach requests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafaas.wire.attach import MAX_LINE, decode, encode

logger = logging.getLogger(__name__)


@dataclass
class BackboneState:
    """What the server publishes and who is attached."""

    descriptor: dict[str, Any]
    load_seconds: float
    attached: set[str] = field(default_factory=set)


def load_backbone(model_dir: Path, dtype_name: str) -> Any:
    """Load a Hugging Face causal LM from a local folder in the serving dtype."""
    import torch
    from transformers import AutoModelForCausalLM

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


async def serve(state: BackboneState, socket_path: Path) -> None:
    """Serve the attach socket until SIGTERM or SIGINT."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(lambda r, w: handle_client(state, r, w),
                                             path=str(socket_path), limit=MAX_LINE)
    # Function containers run as an unprivileged user and must be able to connect.
    os.chmod(socket_path.parent, 0o755)
    os.chmod(socket_path, 0o666)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {socket_path}", flush=True)
    async with server:
        await stop.wait()
    socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the backbone server process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--publish-dir", type=Path, required=True)
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--transport", choices=("tmpfs", "cuda-ipc"), default="tmpfs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s backbone %(levelname)s %(message)s")
    from lorafaas.backbone.publisher import BackbonePublisher, CudaIpcPublisher, TmpfsPublisher

    started = time.monotonic()
    model = load_backbone(args.model_dir, args.dtype)
    publisher: BackbonePublisher = (TmpfsPublisher(args.publish_dir) if args.transport == "tmpfs"
                                    else CudaIpcPublisher())
    descriptor = publisher.publish(model, args.model_dir)
    if args.transport == "tmpfs":
        del model  # runtimes map the published file; this process need not hold a copy
    state = BackboneState(descriptor=descriptor, load_seconds=time.monotonic() - started)
    logger.info("backbone %s ready in %.2fs", args.model_dir.name, state.load_seconds)
    try:
        asyncio.run(serve(state, args.socket))
    finally:
        publisher.unpublish()


if __name__ == "__main__":
    main()
