"""The container's own log, captured per activation: what /run answers in `logs`.

OpenWhisk's invoker reads each activation's log lines from the container engine after it
ends; here that cost a call to dockerd per activation, on the warm path. Instead, the
runtime points its stdout and stderr (file descriptors 1 and 2, so C libraries' writes are
caught as well as Python's) at a pipe. A reader thread drains the pipe, stamps each line
with the time it was read, keeps it, and passes it on to the original stderr, so the
engine's log holds the same lines as before. An activation asks for the lines between its
start and its end: first, the caller drains the pipe itself, under the same lock as the
reader, so every line written before that moment is in (no line is lost to a race with the
reader thread); it drains it when the activation begins as well, so that no line written
before is stamped after.

Lines are formatted as the engine's timestamped log lines (`2026-01-02T03:04:05.123456789Z
text`), the activation record's format. Lines no activation can ask for any more (older
than every activation in flight) are dropped; at most `MAX_LINES` are held in any case.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime

from lorafaas.wire.runtime_protocol import SENTINEL

MAX_LINES = 100_000  # a bound on what is held, far above what one activation writes
_CHUNK = 65536


def stamp(epoch_ns: int, text: str) -> str:
    """A log line as the engine writes it with timestamps (RFC 3339, nanoseconds, UTC)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanos:09d}Z {text}"


class LogCapture:
    """Captures the process's stdout and stderr lines with the time each was written."""

    def __init__(self, forward_fd: int | None) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self._forward_fd = forward_fd  # the original stderr; None: keep nothing but the lines
        self._lock = threading.Lock()
        self._lines: deque[tuple[int, str]] = deque(maxlen=MAX_LINES)
        self._partial = b""
        self._active: dict[int, int] = {}  # start (ns) -> activations in flight since then
        self._thread: threading.Thread | None = None

    @property
    def write_fd(self) -> int:
        """The pipe's end that the process writes its output to."""
        return self._write_fd

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(target=self._read_loop, name="log-capture", daemon=True)
        self._thread.start()

    def begin(self) -> int:
        """An activation starts: the mark (epoch ns) its lines are collected from."""
        with self._lock:
            self._drain()  # what was written before is stamped before the mark
            mark = time.time_ns()
            self._active[mark] = self._active.get(mark, 0) + 1
        return mark

    def end(self, mark: int) -> list[str]:
        """The activation begun at `mark` ends: its lines, stamped, sentinels left out."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # Python's own buffers first, so what it printed is in the pipe
        with self._lock:
            self._drain()
            lines = [stamp(at, text) for at, text in self._lines
                     if at >= mark and SENTINEL not in text]
            count = self._active.pop(mark, 1) - 1
            if count > 0:
                self._active[mark] = count
            self._prune()
        return lines

    def _prune(self) -> None:
        """Drop the lines older than every activation in flight (all, when none is)."""
        oldest = min(self._active, default=time.time_ns())
        while self._lines and self._lines[0][0] < oldest:
            self._lines.popleft()

    def _read_loop(self) -> None:
        # poll, not select: select refuses descriptors past 1023, which a process with
        # many files open (a test run, a runtime with many sockets) reaches.
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        while True:
            poller.poll()
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        """Read what the pipe holds, keep its whole lines and pass it on (lock held)."""
        while True:
            try:
                chunk = os.read(self._read_fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError as error:  # interrupted: try again
                if error.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                return
            if self._forward_fd is not None:
                _write_all(self._forward_fd, chunk)
            now = time.time_ns()
            *whole, self._partial = (self._partial + chunk).split(b"\n")
            for line in whole:
                self._lines.append((now, line.decode("utf-8", "replace")))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return  # nobody reads the original stream any more: the lines are still kept


def capture_process_output() -> LogCapture:
    """Point this process's stdout and stderr at a new capture, and start it."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    capture = LogCapture(os.dup(2))
    os.dup2(capture.write_fd, 1)
    os.dup2(capture.write_fd, 2)
    capture.start()
    return capture
