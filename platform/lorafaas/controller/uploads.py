"""Receiving adapter uploads with bounded memory, and at most a few at a time.

A PUT body holds the zip as base64 in `exec.code`: the body is streamed to a file, parsed
with that one string left on disk (see `json_spill`), and the string is decoded in chunks
to the zip file, so the controller's memory does not grow with the adapter's size (one
333 MB upload took it from 129 MB to 1.38 GB when the body, its text, the string and the
zip were held side by side). Uploads beyond `UploadSlots.limit` get a 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from lorafaas.controller.json_spill import SPILL_AT, decode_base64_file, load_with_spills
from lorafaas.controller.middleware import error_response, request_id_key
from lorafaas.errors import BadRequest, LoraFaasError, PayloadTooLarge

BODY_NAME = "body.json"
_RECEIVE_CHUNK = 1 << 20
BODY_OVERHEAD = 65536  # room for the fields beside exec.code in the body limit
FIELDS_LIMIT = 1 << 20  # JSON beside exec.code held in memory
RETRY_AFTER_S = 5


class UploadsBusy(LoraFaasError):
    """Too many uploads are being received or validated; the client retries later."""

    status = 429
    retry_after_s = RETRY_AFTER_S


class UploadSlots:
    """A cap on the uploads received and validated at once (LORAFAAS_MAX_CONCURRENT_UPLOADS)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for an upload, or raise UploadsBusy when none is free."""
        if self.busy >= self.limit:
            raise UploadsBusy(f"Too many adapter uploads in progress (limit: {self.limit}); "
                              f"retry in {RETRY_AFTER_S} seconds.")
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1


def busy_response(request: web.Request, error: UploadsBusy) -> web.Response:
    """The 429 of a refused upload, with the Retry-After the error middleware cannot add."""
    response = error_response(error.status, error.message, request.get(request_id_key, ""))
    response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def body_limit(max_adapter_bytes: int) -> int:
    """The largest PUT body: the adapter's base64 and the other fields."""
    return max_adapter_bytes * 4 // 3 + BODY_OVERHEAD


ZIP_TYPES = ("application/zip", "application/octet-stream")


def is_zip_upload(request: web.Request) -> bool:
    """Whether the PUT body is the adapter zip itself rather than JSON with its base64."""
    return request.content_type in ZIP_TYPES


async def receive_body(request: web.Request, path: Path, limit: int) -> None:
    """Stream the request body to `path`, refusing (413) one over `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body of {request.content_length} bytes is over the "
                              f"limit of {limit} bytes")
    received = 0
    sink = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in request.content.iter_chunked(_RECEIVE_CHUNK):
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            await asyncio.to_thread(sink.write, chunk)
    finally:
        sink.close()


def decode_action_body(body_path: Path, zip_path: Path, max_bytes: int) -> dict[str, Any]:
    """The PUT body's fields, with `exec.code` decoded to `zip_path` (and set to that path)."""
    if body_path.stat().st_size == 0:
        return {}
    body, spills = load_with_spills(body_path, body_path.parent, FIELDS_LIMIT)
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.")
    exec_field = body.get("exec")
    code = exec_field.get("code") if isinstance(exec_field, dict) else None
    if set(spills) - {code}:
        raise PayloadTooLarge(f"only exec.code may be a string over {SPILL_AT} bytes")
    # As OpenWhisk: code that is base64 is binary, whatever the body says of `binary`.
    if isinstance(exec_field, dict) and isinstance(code, str):
        if code in spills:
            decode_base64_file(spills[code], zip_path, max_bytes)
            spills[code].unlink()
        else:
            decoded = _small_base64(code)
            if decoded is None:
                return body  # not binary: the kind's parser says what it takes
            zip_path.write_bytes(decoded)
        exec_field["code"] = zip_path
    elif isinstance(exec_field, dict) and isinstance(code, str) and code in spills:
        # A code action's long source text (it is not base64).
        exec_field["code"] = spills[code].read_text("utf-8", "replace")
        spills[code].unlink()
    return body


def _small_base64(code: str) -> bytes | None:
    """The decoded code, or None when it is not base64 (OpenWhisk's test of binary code)."""
    if not code.strip():
        return None
    try:
        return base64.b64decode(code.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
