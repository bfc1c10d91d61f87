"""Read an adapter's safetensors file tensor by tensor, in bounded chunks, for its values.

`safe_open` checks the header (offsets inside the file, no overlaps) and gives shapes and
dtypes; the values are then read straight from the file in chunks of at most
`CHUNK_BYTES`, so a large adapter is never held in memory whole. bfloat16 is widened with
numpy (the controller never imports torch).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from lorafaas.errors import AdapterRejected

CHUNK_BYTES = 4 << 20
_NUMPY_DTYPES: dict[str, Any] = {"F16": np.float16, "F32": np.float32, "F64": np.float64,
                                 "BF16": np.uint16}
FLOAT_DTYPES = frozenset(_NUMPY_DTYPES)


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's dtype, shape, and where its bytes lie in the file."""

    dtype: str
    shape: list[int]
    start: int
    end: int


@dataclass(frozen=True)
class TensorStats:
    """What the values of one tensor are: all finite, their largest magnitude and norm."""

    finite: bool
    max_abs: float
    frobenius: float


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Names -> dtype, shape and byte range of a safetensors file, reading only its header."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            shapes = {name: (str(handle.get_slice(name).get_dtype()),
                             list(handle.get_slice(name).get_shape()))
                      for name in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
        with open(path, "rb") as source:
            (length,) = struct.unpack("<Q", source.read(8))
            header = json.loads(source.read(length))
    except (SafetensorError, OSError, ValueError, struct.error) as error:
        raise AdapterRejected(f"{path.name} is not a valid safetensors file: {error}") from error
    base = 8 + length
    return {name: TensorInfo(dtype, shape, base + header[name]["data_offsets"][0],
                             base + header[name]["data_offsets"][1])
            for name, (dtype, shape) in shapes.items()}


def tensor_stats(path: Path, info: TensorInfo) -> TensorStats:
    """Stream one float tensor's values from the file: finiteness, max |x|, Frobenius norm."""
    itemsize = np.dtype(_NUMPY_DTYPES[info.dtype]).itemsize
    step = CHUNK_BYTES - CHUNK_BYTES % itemsize
    finite, max_abs, squares = True, 0.0, 0.0
    with open(path, "rb") as source:
        source.seek(info.start)
        left = info.end - info.start
        while left > 0:
            chunk = source.read(min(step, left))
            if not chunk:
                raise AdapterRejected(f"{path.name} ends inside a tensor's data")
            left -= len(chunk)
            values = _as_float(chunk, info.dtype)
            if not np.isfinite(values).all():
                finite = False
                break
            if values.size:
                max_abs = max(max_abs, float(np.abs(values).max()))
                squares += float(np.square(values, dtype=np.float64).sum())
    return TensorStats(finite, max_abs, math.sqrt(squares) if finite else math.inf)


def _as_float(chunk: bytes, dtype: str) -> Any:
    raw = np.frombuffer(chunk, dtype=np.dtype(_NUMPY_DTYPES[dtype]).newbyteorder("<"))
    if dtype == "BF16":
        # bfloat16 is the upper half of a float32.
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw
