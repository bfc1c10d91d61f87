"""Parse a JSON body from a file with its one large string (exec.code) left on disk.

A JSON parser holds every string it reads; the base64 of a 300 MB adapter would be held
whole, once by the parser's buffer and once as the string. Here the file is scanned in
chunks, string by string: a string longer than `SPILL_AT` bytes is written to a file of its
own and replaced by a placeholder, and the rest (small) goes to `json.loads`. Only one such
string is accepted, `exec.code`, which is then base64-decoded from its file in chunks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from pathlib import Path
from typing import IO, Any

from lorafaas.controller.api.params import parse_json
from lorafaas.errors import BadRequest, PayloadTooLarge

SPILL_AT = 64 << 10  # strings longer than this go to a file
_CHUNK = 1 << 20
_SPECIAL = re.compile(rb'["\\]')


class _Scan:
    """The state of one scan: the rewritten JSON and the strings spilt to files."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit  # bytes of JSON kept in memory
        self.token = uuid.uuid4().hex
        self.out = bytearray()
        self.spills: dict[str, Path] = {}
        self.in_string = False
        self.escaped = False
        self.current = bytearray()
        self.sink: IO[bytes] | None = None

    def feed(self, chunk: bytes) -> None:
        position = 0
        while position < len(chunk):
            position = self._string(chunk, position) if self.in_string \
                else self._outside(chunk, position)
        if len(self.out) > self.limit:
            raise PayloadTooLarge(f"the fields beside exec.code are over {self.limit} bytes")

    def _outside(self, chunk: bytes, position: int) -> int:
        quote = chunk.find(b'"', position)
        if quote == -1:
            self.out += chunk[position:]
            return len(chunk)
        self.out += chunk[position:quote + 1]
        self.in_string, self.current, self.sink = True, bytearray(), None
        return quote + 1

    def _string(self, chunk: bytes, position: int) -> int:
        if self.escaped:  # the byte after a backslash never ends the string
            self._keep(chunk[position:position + 1])
            self.escaped = False
            return position + 1
        special = _SPECIAL.search(chunk, position)
        if special is None:
            self._keep(chunk[position:])
            return len(chunk)
        end = special.start()
        if chunk[end] == ord("\\"):
            self._keep(chunk[position:end + 1])
            self.escaped = True
            return end + 1
        self._keep(chunk[position:end])
        self._close_string()
        return end + 1

    def _keep(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.write(data)
            return
        self.current += data
        if len(self.current) > SPILL_AT:
            path = self.folder / f"string-{len(self.spills)}"
            self.sink = open(path, "wb")  # noqa: SIM115 (closed with the string)
            self.sink.write(self.current)
            self.current = bytearray()
            # The placeholder holds a random token: no body can name a spill it did not make.
            self.spills[f"spill-{self.token}-{len(self.spills)}"] = path

    def _close_string(self) -> None:
        if self.sink is not None:
            self.sink.close()
            placeholder = list(self.spills)[-1]
            self.out += json.dumps(placeholder).encode()[1:]  # the opening quote is out
        else:
            self.out += self.current + b'"'
        self.in_string, self.sink = False, None

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def load_with_spills(path: Path, folder: Path, limit: int) -> tuple[Any, dict[str, Path]]:
    """The JSON in `path`, with strings over SPILL_AT bytes replaced by placeholder keys of
    the returned mapping (placeholder -> file holding the string's raw JSON text)."""
    scan = _Scan(folder, limit)
    try:
        with open(path, "rb") as source:
            while chunk := source.read(_CHUNK):
                scan.feed(chunk)
    finally:
        scan.close()
    # The same strict reading as every JSON body: UTF-8, no NaN, bounded nesting, storable.
    return parse_json(bytes(scan.out)), scan.spills


def decode_base64_file(source: Path, target: Path, max_bytes: int) -> None:
    """Decode the raw JSON text of a base64 string (`\\/` allowed) from a file to a file."""
    if source.stat().st_size * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"the adapter is over the limit of {max_bytes} bytes")
    carry = b""
    with open(source, "rb") as text, open(target, "wb") as sink:
        while chunk := text.read(_CHUNK):
            data = carry + chunk
            cut = len(data) - 1 if data.endswith(b"\\") else len(data)  # an escape split
            data, rest = data[:cut].replace(b"\\/", b"/"), data[cut:]
            whole = len(data) - len(data) % 4
            if whole == len(data):
                whole -= 4  # the last quantum may hold padding: decode it as the final one
            whole = max(whole, 0)
            carry = data[whole:] + rest
            sink.write(_decoded(data[:whole], final=False))
        sink.write(_decoded(carry, final=True))


def _decoded(text: bytes, final: bool) -> bytes:
    if b"=" in text.rstrip(b"=") or (not final and text.endswith(b"=")):
        raise BadRequest("exec.code is not valid base64 (padding inside the text)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest("exec.code is not valid base64") from error
