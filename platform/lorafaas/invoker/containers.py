"""One pooled function container: its state, its host folders, and its runtime client."""

from __future__ import annotations

import enum
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.runtime_client import RuntimeClient
from lorafaas.wire.attach import CHANNEL_SOCKET_NAME
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME

# The pool's key of a namespace container (`lorafaas.invoker.sharing`) starts so; a
# function's key (namespace/name@version:digest) never does.
NAMESPACE_KEY_PREFIX = "namespace:"


def is_namespace_key(key: str | None) -> bool:
    """Whether a pool key names a namespace container rather than a function."""
    return key is not None and key.startswith(NAMESPACE_KEY_PREFIX)


class ContainerState(enum.Enum):
    """Where a container is in its life (OpenWhisk's container proxy states, plus pre-load)."""

    STARTING = "starting"  # being created or initialized
    STEM = "prewarmed"  # runtime imported, backbone attached, no function yet
    PRELOADED = "preloaded"  # a function fully loaded ahead of its first request
    IDLE = "warm"  # has served its function and waits for the next request
    BUSY = "busy"  # running an activation


@dataclass(frozen=True)
class ContainerFolders:
    """Host folders of one container: its socket folder and the adapter folder it mounts."""

    root: Path

    @property
    def io(self) -> Path:
        """Mounted read-write: the runtime creates its socket here."""
        return self.root / "io"

    @property
    def adapter(self) -> Path:
        """Mounted read-only; filled with the function's adapter when it gets one."""
        return self.root / "adapter"

    @property
    def attach(self) -> Path:
        """Mounted read-only: the backbone server's channel for this container only."""
        return self.root / "attach"

    @property
    def socket(self) -> Path:
        """The runtime's socket, seen from the host."""
        return self.io / RUNTIME_SOCKET_NAME

    @property
    def attach_socket(self) -> Path:
        """The container's attach channel, seen from the host (the server listens there)."""
        return self.attach / CHANNEL_SOCKET_NAME

    @property
    def channel(self) -> str:
        """The id of the container's attach channel."""
        return self.root.name

    def read_only_folders(self) -> tuple[Path, ...]:
        """The folders mounted read-only: the adapter and the attach channel's."""
        return (self.adapter, self.attach)

    def create(self) -> None:
        """Make the folders; the runtime runs as nobody and must write its socket."""
        self.io.mkdir(parents=True)
        os.chmod(self.io, 0o777)
        for folder in self.read_only_folders():
            folder.mkdir()
            os.chmod(folder, 0o755)

    def fill_adapter(self, source: Path) -> None:
        """Give the container its function's adapter (hard links where possible, no copy)."""
        for path in source.iterdir():
            target = self.adapter / path.name
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)  # the store is on another filesystem

    def remove(self) -> None:
        """Delete the folders."""
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PooledContainer:
    """A function container: engine info, folders, runtime client, state and use."""

    info: ContainerInfo
    folders: ContainerFolders
    client: RuntimeClient
    memory_mb: int
    state: ContainerState
    function_key: str | None = None  # None while a stem cell
    function_path: str | None = None
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    uses: int = 0
    backbone: str = ""  # the name of the backbone it is attached to

    @property
    def evictable(self) -> bool:
        """Idle in any way: its memory may be taken for another function."""
        return self.state in (ContainerState.STEM, ContainerState.PRELOADED,
                              ContainerState.IDLE)

    def describe(self) -> dict[str, object]:
        """The container as the API shows it among an action's instances."""
        return {"container": self.info.name, "state": self.state.value, "uses": self.uses,
                "idleSeconds": round(time.monotonic() - self.last_used, 1),
                "memoryMB": self.memory_mb, "backbone": self.backbone}
