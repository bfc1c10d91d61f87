"""The runtime's log capture: each activation gets its own lines, in OpenWhisk's format."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import subprocess
import sys
import threading

from lorafaas.runtime.log_capture import ACTIVATION, CapturedStream, LogCapture, stamp
from lorafaas.wire.runtime_protocol import SENTINEL

RECORD_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr): (.*)$")


def texts(lines: list[str], stream: str | None = None) -> list[str]:
    """The text of record-formatted lines (each must have the timestamp and a stream)."""
    matches = [RECORD_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m.group(2) for m in matches if m and stream in (None, m.group(1))]


def started() -> LogCapture:
    capture = LogCapture()
    capture.start()
    return capture


def test_stamp_is_openwhisks_log_format() -> None:
    assert stamp(1_700_000_000_000_000_123, "stdout", "hi") == \
        "2023-11-14T22:13:20.000000123Z stdout: hi"


def test_an_activation_alone_gets_the_untagged_lines_written_while_it_ran() -> None:
    capture = started()
    os.write(capture.write_fd("stdout"), b"before\n")
    key = capture.begin()
    os.write(capture.write_fd("stdout"), b"one\n" + SENTINEL.encode() + b"\ntwo")
    os.write(capture.write_fd("stdout"), b" halves\n")
    os.write(capture.write_fd("stderr"), b"an error\n")
    lines = capture.end(key)
    assert texts(lines, "stdout") == ["one", "two halves"]
    assert texts(lines, "stderr") == ["an error"]
    later = capture.begin()
    assert capture.end(later) == []  # nothing held from activations that ended


def test_untagged_lines_written_while_several_run_are_nobodys() -> None:
    capture = started()
    first, second = capture.begin(), capture.begin()
    os.write(capture.write_fd("stdout"), b"shared decode\n")
    assert capture.end(first) == [] and capture.end(second) == []


def test_python_writes_go_to_the_activation_of_their_context() -> None:
    capture = started()
    out = CapturedStream(capture, "stdout", capture.write_fd("stdout"))
    first, second = capture.begin(), capture.begin()

    def write_as(key: int, text: str) -> None:
        token = ACTIVATION.set(key)
        try:
            out.write(text)
        finally:
            ACTIVATION.reset(token)

    write_as(first, "first's line\nfirst's ")
    write_as(second, "second's line\n")
    write_as(first, "half\n")
    out.write("nobody's\n")  # no activation in this context, and two in flight
    write_as(second, "unfinished")  # ends with its activation
    assert texts(capture.end(first)) == ["first's line", "first's half"]
    assert texts(capture.end(second)) == ["second's line", "unfinished"]


def test_a_worker_thread_of_asyncio_to_thread_carries_the_activation() -> None:
    capture = started()
    out = CapturedStream(capture, "stderr", capture.write_fd("stderr"))

    async def one(text: str) -> list[str]:
        key = capture.begin()
        ACTIVATION.set(key)  # this task's context only
        await asyncio.to_thread(out.write, f"{text}\n")
        await asyncio.sleep(0.01)  # the other one runs meanwhile
        return capture.end(key)

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(one("a"), one("b")))

    first, second = contextvars.Context().run(asyncio.run, both())
    assert texts(first, "stderr") == ["a"] and texts(second, "stderr") == ["b"]


def test_no_line_written_before_the_end_is_missed() -> None:
    # The reader thread races with the collector: every line must be there anyway.
    capture = started()
    for round_no in range(200):
        key = capture.begin()
        os.write(capture.write_fd("stdout"), f"line {round_no}\n".encode())
        assert texts(capture.end(key)) == [f"line {round_no}"]


def test_python_prints_logging_and_c_level_writes_are_caught() -> None:
    # In a child process: the capture takes over the process's file descriptors 1 and 2.
    script = (
        "import logging, os, sys\n"
        "from lorafaas.runtime.log_capture import ACTIVATION, capture_process_output\n"
        "capture = capture_process_output()\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "key = capture.begin()\n"
        "other = capture.begin()\n"
        "ACTIVATION.set(key)\n"
        "print('a print')\n"
        "logging.getLogger('x').warning('a warning')\n"
        "os.write(2, b'a C-level write\\n')\n"
        "lines = capture.end(key)\n"
        "capture.end(other)\n"
        "solo = capture.begin()\n"
        "os.write(1, b'a C-level write alone\\n')\n"
        "lines += capture.end(solo)\n"
        "os.write(capture._forward['stderr'], ('LINES ' + repr(lines) + '\\n').encode())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # as the image
    # The engine's log (the original streams) still has every line, on its own stream.
    assert "a print" in done.stdout and "a warning" in done.stderr
    assert "a C-level write" in done.stderr and "a C-level write alone" in done.stdout
    (report,) = [line for line in done.stderr.splitlines() if line.startswith("LINES ")]
    import ast

    lines = ast.literal_eval(report[6:])
    # The C-level write while two activations ran is neither's; alone, it is its own.
    assert texts(lines, "stdout") == ["a print", "a C-level write alone"]
    assert texts(lines, "stderr") == ["WARNING a warning"]


def test_the_reader_keeps_up_with_a_writer_thread() -> None:
    capture = started()
    key = capture.begin()
    writer = threading.Thread(target=lambda: [os.write(capture.write_fd("stdout"),
                                                       f"{n}\n".encode())
                                              for n in range(5000)])
    writer.start()
    writer.join()
    assert texts(capture.end(key)) == [str(n) for n in range(5000)]
    logging.getLogger(__name__).debug("done")


def test_the_reader_works_with_a_descriptor_past_1023() -> None:
    # A process with many files open (a long test run) hands the pipe a high descriptor,
    # which select() refuses.
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        capture = started()
        assert capture.write_fd("stdout") > 1023
        key = capture.begin()
        os.write(capture.write_fd("stdout"), b"late\n")
        assert texts(capture.end(key)) == ["late"]
    finally:
        for fd in held:
            os.close(fd)
