"""Receiving adapter uploads with bounded memory, and at most a few at a time.

A PUT body holds the zip as base64 in `exec.code`: the body is streamed to a file, parsed
with an iterative JSON parser (ijson), and the one string that holds the code is decoded
in chunks to the zip file, so the controller holds the encoded adapter once, never the
body, its text, the string and the zip side by side (one 333 MB upload took it from 129 MB
to 1.38 GB). Uploads beyond `UploadSlots.limit` get a 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ijson
from aiohttp import web

from lorafaas.controller.middleware import error_response, request_id_key
from lorafaas.errors import BadRequest, LoraFaasError, PayloadTooLarge

BODY_NAME = "body.json"
_RECEIVE_CHUNK = 1 << 20
_DECODE_CHARS = 4 << 20  # a multiple of 4: base64 decodes in whole quanta
BODY_OVERHEAD = 65536  # room for the fields beside exec.code
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
    """The PUT body's top-level fields, with `exec.code` decoded to `zip_path` and left out."""
    body: dict[str, Any] = {}
    if body_path.stat().st_size == 0:
        return body
    try:
        with open(body_path, "rb") as source:
            _check_object(source)
            for key, value in ijson.kvitems(source, "", use_float=True):
                if key == "exec" and isinstance(value, dict) and value.get("binary") is True \
                        and isinstance(value.get("code"), str):
                    decode_base64(value.pop("code"), zip_path, max_bytes)
                    value["code"] = zip_path
                body[key] = value
    except (ijson.JSONError, UnicodeDecodeError, RecursionError) as error:
        raise BadRequest(f"The request content was malformed: {error}") from error
    return body


def _check_object(source: Any) -> None:
    # kvitems yields nothing for a body that is not an object: say what is wrong instead.
    first = next(ijson.parse(source), None)
    source.seek(0)
    if first is None or first[1] != "start_map":
        raise BadRequest("The request content was malformed: a JSON object is expected.")


def decode_base64(encoded: str, path: Path, max_bytes: int) -> None:
    """Decode base64 text to a file, a few MB at a time, refusing it past `max_bytes`."""
    if len(encoded) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"the adapter is over the limit of {max_bytes} bytes")
    with open(path, "wb") as sink:
        for start in range(0, len(encoded), _DECODE_CHARS):
            chunk = encoded[start:start + _DECODE_CHARS]
            if "=" in chunk and start + _DECODE_CHARS < len(encoded):
                raise BadRequest("exec.code is not valid base64 (padding inside the text)")
            try:
                sink.write(base64.b64decode(chunk, validate=True))
            except (binascii.Error, ValueError) as error:
                raise BadRequest("exec.code is not valid base64") from error
