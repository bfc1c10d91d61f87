"""CPU time of a container's cgroup as the host's kernel counts it: billing's measure.

The counters are the kernel's accounting of every thread in the container's cgroup, read
from the host's cgroup filesystem: the container can neither see nor change them, and time
its threads spend waiting for a core that another container holds is not in them. cgroup
v1: `cpuacct.usage` (nanoseconds) in the cpuacct hierarchy; v2: `usage_usec` in `cpu.stat`.
The cgroup is found from the container's main process (`/proc/PID/cgroup`, under the
mounts of `/proc/self/mountinfo`), else from the engine's usual layouts for its id
(cgroupfs `docker/ID`, systemd `system.slice/docker-ID.scope`). Where none can be read
(another container engine, a sandbox without the host's cgroups), reads answer None and
the reason is logged once: billing then falls back to wall time and says so.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from lorafaas.invoker.backend import ContainerInfo

logger = logging.getLogger(__name__)
V1_FILE = "cpuacct.usage"
V2_FILE = "cpu.stat"
CACHED = 1024  # containers whose counter file is remembered


@dataclass(frozen=True)
class CgroupMount:
    """A mounted cgroup hierarchy that accounts CPU time: where, from which root, which
    version."""

    point: Path
    root: str
    version: int


def cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """The cgroup v2 mount and the v1 mounts of the cpuacct controller, from mountinfo."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype, super_options = fields[dash + 1], fields[dash + 3:dash + 4]
        if fstype == "cgroup2":
            mounts.append(CgroupMount(Path(fields[4]), fields[3], 2))
        elif fstype == "cgroup" and "cpuacct" in ",".join(super_options).split(","):
            mounts.append(CgroupMount(Path(fields[4]), fields[3], 1))
    return mounts


def process_cgroups(text: str) -> dict[int, str]:
    """A process's cgroup path per version: v1's cpuacct hierarchy, and v2's."""
    paths: dict[int, str] = {}
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths[2] = path
        elif "cpuacct" in controllers.split(","):
            paths[1] = path
    return paths


def read_counter(path: Path) -> float:
    """CPU seconds in a cgroup's counter file (v1 nanoseconds, or v2 cpu.stat)."""
    text = path.read_text()
    if path.name == V1_FILE:
        return int(text) / 1e9
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError(f"{path} has no usage_usec")


class ContainerCpu:
    """Reads containers' cgroup CPU time from the host (see the module doc)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._files: OrderedDict[str, Path] = OrderedDict()
        self._mounts: list[CgroupMount] | None = None
        self._warned = False

    def seconds(self, container: ContainerInfo) -> float | None:
        """The container's CPU seconds so far; None where they cannot be read."""
        path = self._files.get(container.id) or self._locate(container)
        if path is None:
            return None
        try:
            return read_counter(path)
        except (OSError, ValueError) as error:
            self._files.pop(container.id, None)  # removed, most likely: found again if not
            self._warn(f"{path}: {error}")
            return None

    def _locate(self, container: ContainerInfo) -> Path | None:
        for path in self._candidates(container):
            if path.is_file():
                self._files[container.id] = path
                while len(self._files) > CACHED:
                    self._files.popitem(last=False)
                return path
        self._warn(f"no cgroup counter found for container {container.name}")
        return None

    def _candidates(self, container: ContainerInfo) -> list[Path]:
        if self._mounts is None:
            try:
                self._mounts = cgroup_mounts((self.proc / "self" / "mountinfo").read_text())
            except OSError:
                self._mounts = []
        try:
            own = process_cgroups((self.proc / str(container.pid) / "cgroup").read_text())
        except OSError:
            own = {}
        found = []
        for mount in self._mounts:
            name = V1_FILE if mount.version == 1 else V2_FILE
            path = own.get(mount.version)
            if path is not None and container.pid > 0:
                relative = path.removeprefix(mount.root)
                found.append(mount.point / relative.lstrip("/") / name)
            for layout in (f"docker/{container.id}", f"system.slice/docker-{container.id}.scope"):
                found.append(mount.point / layout / name)
        return found

    def _warn(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("cannot read container CPU time from the host's cgroups (%s): "
                           "activations are billed by wall time and marked so", reason)
