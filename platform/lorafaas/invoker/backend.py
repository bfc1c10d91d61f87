"""The container backend interface the pool is written against (Docker, or a test fake)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LABEL_INVOKER = "lorafaas.invoker"
LABEL_ACTION = "lorafaas.action"


@dataclass(frozen=True)
class Mount:
    """A host folder bind-mounted into the container."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class GpuAccess:
    """A GPU the container is given (host numbering), with the host IPC and PID namespaces
    that CUDA IPC with the backbone server needs (see `device_options`)."""

    device: int


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one hardened function container."""

    name: str
    image: str
    mounts: list[Mount]
    environment: dict[str, str]
    labels: dict[str, str]
    memory_mb: int
    pids_limit: int
    user: str = "65534:65534"
    tmpfs: dict[str, str] = field(default_factory=lambda: {"/tmp": "rw,size=256m"})
    # None: the image's own (the runtime server); a one-off job runs another program.
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    gpu: GpuAccess | None = None  # None: no GPU, private IPC and PID namespaces


@dataclass(frozen=True)
class ContainerInfo:
    """A started container: its engine id and host pid of its main process."""

    id: str
    name: str
    pid: int


class ContainerBackend(Protocol):
    """Start, inspect and remove function containers.

    Every call may block (the Docker SDK is synchronous): the pool calls them through
    `asyncio.to_thread`.
    """

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container; return once it runs."""

    def remove(self, container_id: str) -> None:
        """Kill (if running) and delete a container (by id or name); no error when it is
        gone already."""

    def is_running(self, container_id: str) -> bool:
        """Whether the container still runs."""

    def exit_status(self, container_id: str) -> tuple[int | None, bool]:
        """Exit code (None while running) and whether it was killed for memory."""

    def logs(self, container_id: str, since: float, until: float) -> list[str]:
        """Log lines (stdout and stderr) written between two epoch times, timestamped."""

    def list_labelled(self, invoker_id: str) -> list[str]:
        """Ids of every container this invoker labelled, running or not."""

    def image_id(self, image: str) -> str:
        """The engine's content id (`sha256:…`) of an image reference: a tag such as
        `latest` may move, its id does not."""
