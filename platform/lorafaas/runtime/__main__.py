"""Entry point of the function container: import the libraries, then serve the socket.

The import of torch, transformers and peft is the "libraries" artifact: timed here, it
is reported by /init, and a pre-warmed container has paid it before any request.
"""

from __future__ import annotations

import time

_started = time.monotonic()

import asyncio
import logging
import os
import warnings
from pathlib import Path

# peft 0.21 reads a deprecated transformers 5 alias at every adapter load; the warning
# would land in every activation's logs and tells the function's owner nothing.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")

import peft  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401
from aiohttp import web

LIBRARIES_MS = (time.monotonic() - _started) * 1000

from lorafaas.runtime.function import RuntimePaths
from lorafaas.runtime.server import create_app


async def serve() -> None:
    """Serve until the container is stopped."""
    socket_path = Path(os.environ.get("LORAFAAS_RUNTIME_SOCKET", "/lorafaas/io/runtime.sock"))
    paths = RuntimePaths(
        attach_socket=Path(os.environ.get("LORAFAAS_ATTACH_SOCKET",
                                          "/lorafaas/attach/attach.sock")),
        backbone_dir=Path(os.environ.get("LORAFAAS_BACKBONE_DIR", "/backbone")),
        adapter_dir=Path(os.environ.get("LORAFAAS_ADAPTER_DIR", "/adapter")))
    app = create_app(paths, os.environ.get("LORAFAAS_CONTAINER_NAME", "runtime"), LIBRARIES_MS)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    socket_path.unlink(missing_ok=True)
    await web.UnixSite(runner, str(socket_path)).start()
    logging.getLogger(__name__).info("runtime listening on %s (libraries %.0f ms)",
                                     socket_path, LIBRARIES_MS)
    await asyncio.Event().wait()


def main() -> None:
    """Run the runtime server."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runtime %(levelname)s %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
