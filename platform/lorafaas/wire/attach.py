"""The attach protocol, spoken on the backbone server's Unix socket.

One JSON object per line each way. Requests:

- `{"op": "describe"}` -> `{"ok": true, "backbone": <descriptor>}`
- `{"op": "attach", "client": "<container name>"}` -> same answer; the server counts the
  client as attached until it sends `{"op": "detach", "client": ...}` or its connection closes.
- `{"op": "stats"}` -> `{"ok": true, "attached": [...], "bytes": N}`

The descriptor tells a function runtime how to map the weights:

- `{"transport": "tmpfs", "weights_file": "model.safetensors", "dtype": "float32",
   "config": {...}, "name": "...", "bytes": N}`: a safetensors file in the folder the
  container mounts read-only at `/backbone`; map it (never copy) and assign the tensors.
- `{"transport": "cuda-ipc", "tensors": {name: <ipc handle>}, ...}`: CUDA IPC handles of
  the tensors, see `cuda_ipc.py`.

Standard library only: the in-container runtime imports it.
"""

from __future__ import annotations

import json
from typing import Any

ENCODING = "utf-8"
MAX_LINE = 64 * 1024 * 1024  # CUDA IPC descriptors of big models are long


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message, separators=(",", ":")).encode(ENCODING) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A JSON line as a message; ValueError when it is not an object."""
    message = json.loads(line.decode(ENCODING))
    if not isinstance(message, dict):
        raise ValueError("a protocol message must be a JSON object")  # noqa: TRY004
    return message
