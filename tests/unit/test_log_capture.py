"""The runtime's log capture: each activation gets the lines written while it ran."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

from lorafaas.runtime.log_capture import LogCapture, stamp
from lorafaas.wire.runtime_protocol import SENTINEL

ENGINE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")


def texts(lines: list[str]) -> list[str]:
    """The text of engine-formatted lines (each must have the engine's timestamp)."""
    matches = [ENGINE_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m.group(1) for m in matches if m]


def test_stamp_is_the_engines_timestamp_format() -> None:
    assert stamp(1_700_000_000_000_000_123, "hi") == "2023-11-14T22:13:20.000000123Z hi"


def test_lines_of_an_activation_are_those_written_while_it_ran() -> None:
    capture = LogCapture(forward_fd=None)
    capture.start()
    os.write(capture.write_fd, b"before\n")
    first = capture.begin()
    os.write(capture.write_fd, b"one\n" + SENTINEL.encode() + b"\ntwo")  # "two" not ended yet
    second = capture.begin()
    os.write(capture.write_fd, b" halves\nthree\n")
    assert texts(capture.end(second)) == ["two halves", "three"]
    assert texts(capture.end(first)) == ["one", "two halves", "three"]
    later = capture.begin()
    assert capture.end(later) == []  # nothing held from activations that ended


def test_no_line_written_before_the_end_is_missed() -> None:
    # The reader thread races with the collector: every line must be there anyway.
    capture = LogCapture(forward_fd=None)
    capture.start()
    for round_no in range(200):
        mark = capture.begin()
        os.write(capture.write_fd, f"line {round_no}\n".encode())
        assert texts(capture.end(mark)) == [f"line {round_no}"]


def test_python_prints_logging_and_c_level_writes_are_caught(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # In a child process: the capture takes over the process's file descriptors 1 and 2.
    import subprocess

    script = (
        "import logging, os, sys\n"
        "from lorafaas.runtime.log_capture import capture_process_output\n"
        "capture = capture_process_output()\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "mark = capture.begin()\n"
        "print('a print')\n"
        "logging.getLogger('x').warning('a warning')\n"
        "os.write(2, b'a C-level write\\n')\n"
        "lines = capture.end(mark)\n"
        "os.write(capture._forward_fd, ('LINES ' + repr(lines) + '\\n').encode())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # as the image
    # The engine's log (the original stderr) still has every line.
    assert "a print" in done.stderr and "a warning" in done.stderr
    (report,) = [line for line in done.stderr.splitlines() if line.startswith("LINES ")]
    import ast

    assert texts(ast.literal_eval(report[6:])) == ["a print", "WARNING a warning",
                                                   "a C-level write"]


def test_the_reader_keeps_up_with_a_writer_thread() -> None:
    capture = LogCapture(forward_fd=None)
    capture.start()
    mark = capture.begin()
    writer = threading.Thread(target=lambda: [os.write(capture.write_fd, f"{n}\n".encode())
                                              for n in range(5000)])
    writer.start()
    writer.join()
    assert texts(capture.end(mark)) == [str(n) for n in range(5000)]
    logging.getLogger(__name__).debug("done")


def test_the_reader_works_with_a_descriptor_past_1023() -> None:
    # A process with many files open (a long test run) hands the pipe a high descriptor,
    # which select() refuses.
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        capture = LogCapture(forward_fd=None)
        capture.start()
        assert capture.write_fd > 1023
        mark = capture.begin()
        os.write(capture.write_fd, b"late\n")
        assert texts(capture.end(mark)) == ["late"]
    finally:
        for fd in held:
            os.close(fd)
