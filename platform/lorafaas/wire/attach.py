"""The attach protocol, spoken on the backbone server's Unix sockets.

One JSON object per line each way. The server listens on two kinds of socket:

- **The control socket** (`<run_dir>/backbones/<name>/attach.sock`, mode 0600 in a 0700
  folder, never mounted into a container): the invoker's. Requests:
  - `{"op": "describe"}` -> `{"ok": true, "backbone": <descriptor>}`
  - `{"op": "open", "channel": ID, "path": P}` -> `{"ok": true, "channel": ID, "path": P}`:
    listen on a new socket at `P` (named `attach.sock`, in a folder that exists) for that
    one container; idempotent for the same `ID` and `P`.
  - `{"op": "close", "channel": ID}` -> `{"ok": true, "closed": bool}`: stop listening,
    end its connections and attachment, remove the socket file (if it is still the one
    this server bound).
  - `{"op": "channels"}` -> `{"ok": true, "channels": [ID, ...]}`
  - `{"op": "stats"}` -> `{"ok": true, "attached": [ID, ...], "channels": N, "bytes": N}`
- **A channel** (one per container, in a folder only that container mounts, at
  `/lorafaas/attach/attach.sock`): the server knows the container from the socket a
  connection arrived on, never from what the request says. Requests:
  - `{"op": "attach"}` -> `{"ok": true, "backbone": <descriptor>}`: the container is
    attached (it maps the weights) until it sends `{"op": "detach"}` or its channel is
    closed; ending the connection does not detach (the mapping outlives it).
  - `{"op": "detach"}` -> `{"ok": true}`. Nothing else: a channel cannot name, list or
    detach another container.

Every connection is bounded: a request line longer than its socket's limit (`REQUEST_LINE`
on a channel) ends the connection while it is read, unbuffered; each socket takes a few
connections at once; a line must arrive, and an answer be taken, within an idle deadline.
A failed request gets `{"ok": false, "error": "..."}`.

After a server restart the invoker opens the channels of its live containers again at
the same paths (their folders are bind-mounted, so a container sees the new socket);
attached containers keep their mapping of the published file meanwhile.

The descriptor tells a function runtime how to map the weights:

- `{"transport": "tmpfs", "weights_file": "model.safetensors", "dtype": "float32",
   "config": {...}, "name": "...", "bytes": N}`: a safetensors file in the folder the
  container mounts read-only at `/backbone`; map it (never copy) and assign the tensors.
- `{"transport": "cuda-ipc", "tensors": {name: <ipc handle>}, ...}`: CUDA IPC handles of
  the tensors, see `cuda_ipc.py`; made per channel (a share per receiver).

Standard library only: the in-container runtime imports it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

ENCODING = "utf-8"
MAX_LINE = 64 * 1024 * 1024  # answers: CUDA IPC descriptors of big models are long
REQUEST_LINE = 4096  # the longest request a channel reads: its requests are a few bytes
CHANNEL_SOCKET_NAME = "attach.sock"


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message, separators=(",", ":")).encode(ENCODING) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A JSON line as a message; ValueError when it is not an object."""
    message = json.loads(line.decode(ENCODING))
    if not isinstance(message, dict):
        raise ValueError("a protocol message must be a JSON object")  # noqa: TRY004
    return message


async def exchange(socket_path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request on a Unix socket (a control socket or a channel); its answer."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=MAX_LINE)
    try:
        writer.write(encode(message))
        await writer.drain()
        return decode(await reader.readline())
    finally:
        writer.close()
