"""Entry point of the function container: import the libraries, then serve the socket.

The import of what serving needs (torch, aiohttp, safetensors, tokenizers, the runtime's
own modules) is the "libraries" artifact: timed and sized here, from this module's first
line until every import is done (not the interpreter's own start), it is reported by
/init, and a pre-warmed container has paid it before any request. The garbage collector
is held off meanwhile (runtime.collector). transformers and peft are not among them: only
a function of the general path imports them, at its /init (and reports that import in its
own `libraries` step; see runtime.function).
"""

from __future__ import annotations

import time

_started = time.monotonic()

# The baseline before the heavy imports: the interpreter itself is not the libraries' cost.
from lorafaas.runtime import collector
from lorafaas.runtime.memory import grown, held_bytes

_baseline = held_bytes()
_collecting = collector.hold()

import asyncio
import logging
import os
from pathlib import Path

import torch
from aiohttp import web

from lorafaas.runtime.function import RuntimePaths
from lorafaas.runtime.log_capture import LogCapture, capture_process_output
from lorafaas.runtime.namespace import NamespacePaths
from lorafaas.runtime.namespace_server import create_namespace_app
from lorafaas.runtime.sampling import GREEDY_DEFAULTS
from lorafaas.runtime.server import create_app

collector.release(_collecting)
LIBRARIES_MS = (time.monotonic() - _started) * 1000
LIBRARIES_BYTES = grown(_baseline, held_bytes())

# The invoker runs several containers' batches at once on the same cores: each container
# takes its share, so their torch threads do not contend (0: torch's default, all cores).
if int(os.environ.get("LORAFAAS_TORCH_THREADS", "0")) > 0:
    torch.set_num_threads(int(os.environ["LORAFAAS_TORCH_THREADS"]))


async def serve(capture: LogCapture) -> None:
    """Serve until the container is stopped."""
    socket_path = Path(os.environ.get("LORAFAAS_RUNTIME_SOCKET", "/lorafaas/io/runtime.sock"))
    # Sharing off: no attach socket; /backbone is the checkpoint, loaded as a private copy.
    sharing = os.environ.get("LORAFAAS_BACKBONE_SHARING", "on") != "off"
    paths = RuntimePaths(
        attach_socket=Path(os.environ.get("LORAFAAS_ATTACH_SOCKET",
                                          "/lorafaas/attach/attach.sock")) if sharing else None,
        backbone_dir=Path(os.environ.get("LORAFAAS_BACKBONE_DIR", "/backbone")),
        adapter_dir=Path(os.environ.get("LORAFAAS_ADAPTER_DIR", "/adapter")))
    client = os.environ.get("LORAFAAS_CONTAINER_NAME", "runtime")
    defaults = os.environ.get("LORAFAAS_GENERATION_DEFAULTS", GREEDY_DEFAULTS)
    if os.environ.get("LORAFAAS_RUNTIME_MODE", "function") == "namespace":
        # Several functions of one namespace (runtime.namespace_server); the adapters are
        # mounted one folder per function under LORAFAAS_ADAPTERS_DIR.
        namespace = NamespacePaths(paths.attach_socket, paths.backbone_dir,
                                   Path(os.environ.get("LORAFAAS_ADAPTERS_DIR", "/adapters")))
        budget = int(os.environ.get("LORAFAAS_ADAPTER_BUDGET_MB", "256")) * 1024 * 1024
        app = create_namespace_app(namespace, client, budget, LIBRARIES_MS, LIBRARIES_BYTES,
                                   capture, defaults)
    else:
        app = create_app(paths, client, LIBRARIES_MS, LIBRARIES_BYTES, capture, defaults)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    socket_path.unlink(missing_ok=True)
    await web.UnixSite(runner, str(socket_path)).start()
    logging.getLogger(__name__).info("runtime listening on %s (libraries %.0f ms)",
                                     socket_path, LIBRARIES_MS)
    await asyncio.Event().wait()


def main() -> None:
    """Run the runtime server."""
    # Each activation's log comes back with its /run answer (the engine's log still has it).
    capture = capture_process_output()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runtime %(levelname)s %(message)s")
    asyncio.run(serve(capture))


if __name__ == "__main__":
    main()
