"""The container's own log, captured per activation: what /run answers in `logs`.

OpenWhisk's invoker reads each activation's log lines from the container engine after it
ends; here that cost a call to dockerd per activation, on the warm path, and a time window
of the container's log gave the requests batched in one container each other's lines.
Instead the runtime keeps each line for the activation it belongs to:

- A line written through Python's `sys.stdout` or `sys.stderr` (print, logging) belongs to
  the activation of the context that wrote it: the runtime sets `ACTIVATION` (a context
  variable) while it handles one activation, and the worker thread its generation runs on
  (`asyncio.to_thread`) carries the context along.
- A line written without one (C libraries writing to file descriptors 1 and 2, which point
  at pipes drained by a reader thread; a thread shared by several activations, such as a
  batch's generation or the continuous decode) belongs to the activation in flight when it
  was written, if exactly one is; otherwise to none of them.

Every line is passed on to the process's original stdout or stderr as well, so the engine's
log holds the same lines as before. An activation's lines are held from its `begin` to its
`end`; both first drain the pipes under the lock, so a line written before `begin` is never
an activation's and one written before `end` is never missed. Lines are formatted as
OpenWhisk's activation logs: `2026-01-02T03:04:05.123456789Z stdout: text`.
"""

from __future__ import annotations

import contextvars
import errno
import io
import itertools
import os
import select
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime

from lorafaas.wire.runtime_protocol import SENTINEL

MAX_LINES = 100_000  # a bound on what one activation holds, far above what one writes
STREAMS = ("stdout", "stderr")
_CHUNK = 65536

# The key of the activation whose handling runs in this context (None: no single one).
ACTIVATION: contextvars.ContextVar[int | None] = contextvars.ContextVar("activation",
                                                                      default=None)
_keys = itertools.count(1)

Line = tuple[int, str, str]  # epoch ns, stream, text


def stamp(epoch_ns: int, stream: str, text: str) -> str:
    """A log line as OpenWhisk's records hold it (RFC 3339, nanoseconds, UTC, stream)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanos:09d}Z {stream}: {text}"


class LogCapture:
    """Captures the process's stdout and stderr lines, each for its own activation."""

    def __init__(self, forward: dict[str, int] | None = None) -> None:
        self._forward = forward or {}  # stream -> the original descriptor (none: keep only)
        self._pipes: dict[int, tuple[str, int]] = {}  # read end -> stream, write end
        for stream in STREAMS:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            self._pipes[read_fd] = (stream, write_fd)
        self._lock = threading.Lock()
        self._held: dict[int, deque[Line]] = {}  # activation key -> its lines
        self._partial: dict[tuple[int | None, str], str] = {}  # unfinished lines by writer
        self._raw_partial: dict[int, bytes] = {}  # unfinished lines read from each pipe
        self._thread: threading.Thread | None = None

    def write_fd(self, stream: str) -> int:
        """The pipe's end that the process's file descriptor of `stream` points at."""
        return next(write for name, write in self._pipes.values() if name == stream)

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(target=self._read_loop, name="log-capture", daemon=True)
        self._thread.start()

    def begin(self) -> int:
        """An activation starts: the key its lines are kept under (see `ACTIVATION`)."""
        key = next(_keys)
        with self._lock:
            self._drain()  # what was written before belongs to no activation begun now
            self._held[key] = deque(maxlen=MAX_LINES)
        return key

    def end(self, key: int) -> list[str]:
        """The activation of `key` ends: its lines, stamped, sentinels left out."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # buffered writers first, so what they wrote is in
        with self._lock:
            self._drain()
            for name in STREAMS:  # its unfinished lines end with it
                if (rest := self._partial.pop((key, name), None)) is not None:
                    self._keep(key, name, rest, time.time_ns())
            lines = self._held.pop(key, ())
        return [stamp(at, stream, text) for at, stream, text in lines if SENTINEL not in text]

    def write_text(self, stream: str, text: str) -> None:
        """What Python wrote to `stream` in the current context (see `CapturedStream`)."""
        owner = ACTIVATION.get()
        with self._lock:
            if owner is not None and owner not in self._held:
                owner = None  # a thread left over from an activation that ended: no one's
            whole = self._partial.pop((owner, stream), "") + text
            *lines, rest = whole.split("\n")
            if rest:
                self._partial[(owner, stream)] = rest
            if not lines:
                return
            now = time.time_ns()
            for line in lines:
                self._keep(owner, stream, line, now)
            if (forward := self._forward.get(stream)) is not None:
                _write_all(forward, ("\n".join(lines) + "\n").encode("utf-8", "replace"))

    def _keep(self, owner: int | None, stream: str, text: str, at: int) -> None:
        """Hold a line for its activation (lock held; see the module doc)."""
        if owner is None and len(self._held) == 1:
            owner = next(iter(self._held))
        held = self._held.get(owner) if owner is not None else None
        if held is not None:
            held.append((at, stream, text))

    def _read_loop(self) -> None:
        # poll, not select: select refuses descriptors past 1023, which a process with
        # many files open (a test run, a runtime with many sockets) reaches.
        poller = select.poll()
        for read_fd in self._pipes:
            poller.register(read_fd, select.POLLIN)
        while True:
            poller.poll()
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        """Read what the pipes hold, keep their whole lines and pass them on (lock held)."""
        for read_fd, (stream, _) in self._pipes.items():
            while chunk := _read(read_fd):
                if (forward := self._forward.get(stream)) is not None:
                    _write_all(forward, chunk)
                now = time.time_ns()
                *whole, self._raw_partial[read_fd] = (
                    self._raw_partial.get(read_fd, b"") + chunk).split(b"\n")
                for line in whole:
                    self._keep(None, stream, line.decode("utf-8", "replace"), now)


class CapturedStream(io.TextIOBase):
    """`sys.stdout` or `sys.stderr`: hands what Python writes to the capture, with the
    context's activation."""

    def __init__(self, capture: LogCapture, stream: str, fd: int) -> None:
        super().__init__()
        self._capture = capture
        self._stream = stream
        self._fd = fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """What the bytes written to the descriptor are encoded in."""
        return "utf-8"

    def writable(self) -> bool:
        """It is."""
        return True

    def write(self, text: str) -> int:
        """Keep and pass on what was written."""
        self._capture.write_text(self._stream, text)
        return len(text)

    def fileno(self) -> int:
        """The descriptor (1 or 2), for what writes to it directly (faulthandler)."""
        return self._fd


def _read(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, _CHUNK)
        except BlockingIOError:
            return b""
        except OSError as error:  # interrupted: try again
            if error.errno != errno.EINTR:
                raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return  # nobody reads the original stream any more: the lines are still kept


def capture_process_output() -> LogCapture:
    """Point this process's stdout and stderr (descriptors and Python's streams) at a new
    capture, and start it."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    capture = LogCapture({"stdout": os.dup(1), "stderr": os.dup(2)})
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(capture.write_fd(name), fd)
    sys.stdout = CapturedStream(capture, "stdout", 1)
    sys.stderr = CapturedStream(capture, "stderr", 2)
    capture.start()
    return capture
