"""A platform run holds its run directory by a lock and an owner id; the next run ends the
backbone servers the last one left (found by pid file, verified by command line, never by
name) and removes its per-container folders; a server deletes only what it still owns."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorafaas.backbone.ownership import (
    SERVER_MODULE,
    RunBusy,
    acquire_run,
    claim_folder,
    is_server_of,
    reclaim,
    same_file,
    still_owned,
    write_pid_file,
)

# A stand-in server: its command line names the server module and an owner id, as the real
# one's does (`python -m lorafaas.backbone.server ... --owner ID`).
SLEEPER = "import time; time.sleep(120)"


def stand_in(owner: str) -> subprocess.Popen[bytes]:
    """A process whose command line is a backbone server's of `owner`."""
    return subprocess.Popen([sys.executable, "-c", SLEEPER, SERVER_MODULE, "--owner", owner])


def test_a_second_run_on_the_same_directory_is_refused_naming_the_holder(
        tmp_path: Path) -> None:
    first = acquire_run(tmp_path)
    with pytest.raises(RunBusy, match=first.owner_id):
        acquire_run(tmp_path)
    first.release()
    second = acquire_run(tmp_path)  # the holder is gone: the lock is free
    assert second.owner_id != first.owner_id
    second.release()


def test_the_next_run_ends_the_dead_runs_server_and_removes_its_folders(
        tmp_path: Path) -> None:
    left = stand_in("dead-run")
    unrelated = stand_in("someone-else")  # a pid file naming it with a wrong owner
    try:
        write_pid_file(tmp_path / "backbones" / "demo" / "server.pid", left.pid, "dead-run")
        write_pid_file(tmp_path / "backbones" / "other" / "server.pid", unrelated.pid,
                       "dead-run")
        (tmp_path / "c" / "abc123" / "io").mkdir(parents=True)
        time.sleep(0.2)  # the stand-ins have exec'd: their command lines are readable
        assert is_server_of(left.pid, "dead-run")
        assert not is_server_of(unrelated.pid, "dead-run")
        owner = acquire_run(tmp_path)
        reclaimed = reclaim(owner)
        owner.release()
        assert (reclaimed.servers, reclaimed.folders) == (1, 1)
        assert left.wait(timeout=30) is not None
        assert unrelated.poll() is None, "a process that is not the run's server is left alone"
        assert list((tmp_path / "c").iterdir()) == []
        assert list(tmp_path.glob("backbones/*/server.pid")) == []
    finally:
        for process in (left, unrelated):
            process.kill()
            process.wait()


def test_a_folder_claimed_by_a_later_server_is_not_the_earlier_ones(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    first = claim_folder(folder, "run-1")
    assert still_owned(folder, "run-1", first)
    second = claim_folder(folder, "run-2")  # a new run reused the published folder
    assert not still_owned(folder, "run-1", first) and still_owned(folder, "run-2", second)
    folder.rename(tmp_path / "gone")
    folder.mkdir()  # written afresh under the same name: another inode
    (folder / ".owner").write_text("run-2")
    assert not still_owned(folder, "run-2", second)


def test_a_socket_path_bound_again_is_not_the_first_servers(tmp_path: Path) -> None:
    path = tmp_path / "attach.sock"
    path.write_text("")
    inode = path.stat().st_ino
    assert same_file(path, inode)
    (tmp_path / "held").hardlink_to(path)  # the old inode lives on: it cannot be reused
    path.unlink()
    path.write_text("")  # another server bound the path
    assert not same_file(path, inode) and not same_file(tmp_path / "none", inode)
