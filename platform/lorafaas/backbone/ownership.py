"""Who owns a platform run's files and processes, and the reclaim of what a dead run left.

A platform run holds an exclusive `flock` on `<run_dir>/platform.lock` (the kernel drops it
when the process dies, however it dies) and names itself by a random owner id written
there. Each backbone server it starts gets that id (`--owner`) and a pid file beside its
socket, so the next run can find a server the last one left, and verify by the server's
`/proc` command line, never by a process name, that it is that server. A server marks the
folder it published with its owner id and removes it at exit only while the mark is still
its own: a server of another run that published or reused the folder since keeps it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

RUN_LOCK = "platform.lock"
SERVER_PID = "server.pid"
SERVER_MODULE = "lorafaas.backbone.server"
OWNER_MARK = ".owner"  # in a published folder: the owner id of the server that holds it
CONTAINERS_DIR = "c"  # the pool's per-container folders under the run directory


class RunBusy(RuntimeError):
    """Another live platform holds the run directory."""


@dataclass
class RunOwner:
    """This run's hold on its run directory: the lock and the owner id."""

    owner_id: str
    run_dir: Path
    handle: IO[str]

    def release(self) -> None:
        """Drop the lock (the file stays: removing a lock file races with the next run)."""
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def acquire_run(run_dir: Path) -> RunOwner:
    """Lock the run directory for this process, or RunBusy naming the holder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / RUN_LOCK, "a+")  # noqa: SIM115 - held until release()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunBusy(f"the run directory {run_dir} is held by a running platform "
                      f"(pid and owner: {holder}); stop it or set LORAFAAS_RUN_DIR") from error
    owner_id = uuid.uuid4().hex
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {owner_id}\n")
    handle.flush()
    return RunOwner(owner_id, run_dir, handle)


def write_pid_file(path: Path, pid: int, owner_id: str) -> None:
    """Record a backbone server's pid and owner, for the next run to find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".new")
    staging.write_text(f"{pid} {owner_id}\n")
    staging.replace(path)


def read_pid_file(path: Path) -> tuple[int, str] | None:
    """(pid, owner id) from a pid file; None when it is missing or unreadable."""
    try:
        pid, owner = path.read_text().split()
        return int(pid), owner
    except (OSError, ValueError):
        return None


def is_server_of(pid: int, owner_id: str) -> bool:
    """Whether the process is a backbone server started with `--owner owner_id`."""
    try:
        arguments = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in arguments]
    owned = any(a == "--owner" and b == owner_id for a, b in itertools.pairwise(words))
    return SERVER_MODULE in words and owned


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; its parent (init) reaps it


def end_process(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; returns once the process has ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)


@dataclass(frozen=True)
class Reclaimed:
    """What a start found of a previous run and ended or removed."""

    servers: int
    folders: int


def reclaim(owner: RunOwner) -> Reclaimed:
    """End the backbone servers and remove the per-container folders a previous run of this
    run directory left (it is dead: this run holds the lock)."""
    servers = 0
    for pid_file in sorted(owner.run_dir.glob(f"backbones/*/{SERVER_PID}")):
        record = read_pid_file(pid_file)
        if record is not None and record[1] != owner.owner_id and is_server_of(*record):
            logger.warning("ending backbone server pid %d left by run %s", *record)
            end_process(record[0])
            servers += 1
        pid_file.unlink(missing_ok=True)
    folders = 0
    containers = owner.run_dir / CONTAINERS_DIR
    for folder in sorted(containers.iterdir()) if containers.is_dir() else []:
        shutil.rmtree(folder, ignore_errors=True)
        folders += 1
    if servers or folders:
        logger.info("reclaimed from the previous run: %d backbone servers, %d container "
                    "folders", servers, folders)
    return Reclaimed(servers, folders)


def claim_folder(folder: Path, owner_id: str) -> int:
    """Mark a published folder as this server's; return its inode, checked at release."""
    mark = folder / OWNER_MARK
    mark.write_text(owner_id)
    os.chmod(mark, 0o644)
    return folder.stat().st_ino


def still_owned(folder: Path, owner_id: str, inode: int) -> bool:
    """Whether the folder is still the one this server claimed and nobody claimed since."""
    try:
        same = folder.stat().st_ino == inode
        return same and (folder / OWNER_MARK).read_text() == owner_id
    except OSError:
        return False


def same_file(path: Path, inode: int) -> bool:
    """Whether the path still names the file of that inode (a socket this server bound)."""
    try:
        return path.stat().st_ino == inode
    except OSError:
        return False
