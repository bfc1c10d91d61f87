"""A namespace container's host side: its folders and its hardened container spec.

The container mounts one folder of adapters, read-only, holding only its namespace's
functions, each in a folder of its own (its slot, `slot_of`); the invoker adds a function's
adapter there (hard links, as `ContainerFolders.fill_adapter` does) when it places the
function in the container. The runtime reads it on the function's first request
(`runtime.namespace_server`). Nothing of another namespace is ever linked in.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from lorafaas.adapters.archive import HANDLER_NAME
from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER, ContainerSpec, Mount
from lorafaas.invoker.containers import ContainerFolders
from lorafaas.invoker.pool import ATTACH_TARGET, IO_TARGET, BackboneMounts
from lorafaas.wire.attach import CHANNEL_SOCKET_NAME
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME

ADAPTERS_TARGET = "/adapters"
LABEL_NAMESPACE = "lorafaas.namespace"


def slot_of(function_key: str) -> str:
    """A function's folder name in a namespace container: readable, one path component,
    distinct for distinct keys."""
    readable = re.sub(r"[^A-Za-z0-9._@-]", "_", function_key)[:80].lstrip("._-@") or "f"
    return f"{readable}-{hashlib.sha256(function_key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class NamespaceFolders(ContainerFolders):
    """Host folders of one namespace container: its socket folder and its adapters (the
    pool holds it as any container's folders; it never gets a single adapter)."""

    namespace: str = ""

    @property
    def adapters(self) -> Path:
        """Mounted read-only: one folder per function placed here."""
        return self.root / "adapters"

    def read_only_folders(self) -> tuple[Path, ...]:
        """The folders mounted read-only: the namespace's adapters and the attach channel's."""
        return (self.adapters, self.attach)

    def add(self, namespace: str, function_key: str, source: Path) -> str:
        """Link a function's adapter in (refused for another namespace's); its slot."""
        if namespace != self.namespace:
            raise PermissionError(f"a function of namespace {namespace!r} cannot be placed "
                                  f"in the container of namespace {self.namespace!r}")
        if (source / HANDLER_NAME).exists():  # owner code never shares a process
            raise PermissionError(f"a function with its own handler ({function_key}) is "
                                  "never placed in a namespace container")
        slot = slot_of(function_key)
        target = self.adapters / slot
        if target.exists():
            return slot
        # Appears whole or not at all; the staging name is this call's own, since requests
        # of one function reach here at once (each batch member on its own thread).
        staging = self.adapters / f".{slot}.{uuid.uuid4().hex[:8]}.partial"
        staging.mkdir()
        try:
            for path in source.iterdir():
                if path.is_file():
                    try:
                        os.link(path, staging / path.name)
                    except OSError:
                        shutil.copy2(path, staging / path.name)  # another filesystem
            os.chmod(staging, 0o755)
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not another call's win: a real failure
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return slot


def namespace_spec(folders: NamespaceFolders, backbone: BackboneMounts, *, name: str,
                   image: str, invoker_id: str, memory_mb: int, pids_limit: int,
                   adapter_budget_mb: int, torch_threads: int = 0,
                   backbone_sharing: bool = True,
                   generation_defaults: str = "greedy") -> ContainerSpec:
    """The hardened spec of a namespace container (as a function container's, with the
    namespace's adapters folder in place of one adapter)."""
    environment = {"LORAFAAS_RUNTIME_MODE": "namespace", "LORAFAAS_CONTAINER_NAME": name,
                   "LORAFAAS_RUNTIME_SOCKET": f"{IO_TARGET}/{RUNTIME_SOCKET_NAME}",
                   "LORAFAAS_BACKBONE_DIR": "/backbone",
                   "LORAFAAS_ADAPTERS_DIR": ADAPTERS_TARGET,
                   "LORAFAAS_ADAPTER_BUDGET_MB": str(adapter_budget_mb),
                   "LORAFAAS_TORCH_THREADS": str(torch_threads), "MALLOC_ARENA_MAX": "2",
                   "LORAFAAS_GENERATION_DEFAULTS": generation_defaults}
    mounts = [Mount(folders.io, IO_TARGET, read_only=False),
              Mount(folders.adapters, ADAPTERS_TARGET), Mount(backbone.publish_dir, "/backbone")]
    if backbone_sharing:
        # Its own channel (`AttachChannels.open` it first), never the server's control socket.
        environment["LORAFAAS_ATTACH_SOCKET"] = f"{ATTACH_TARGET}/{CHANNEL_SOCKET_NAME}"
        mounts.append(Mount(folders.attach, ATTACH_TARGET))
    else:
        environment["LORAFAAS_BACKBONE_SHARING"] = "off"
    return ContainerSpec(name=name, image=image, memory_mb=memory_mb, pids_limit=pids_limit,
                         labels={LABEL_INVOKER: invoker_id,
                                 LABEL_ACTION: f"(namespace {folders.namespace})",
                                 LABEL_NAMESPACE: folders.namespace},
                         environment=environment, mounts=mounts)
