"""Containers of code actions (`python:3`): the runtime image without a backbone.

A code action's container is started from the same image with the same hardening as a
LoRA function's (`DockerBackend.start`: no network, read-only root, nobody, no
capabilities, no new privileges, a private IPC namespace, a pids limit, the action's
memory limit), but runs `lorafaas.runtime.code_action`, which imports no torch. It mounts
its socket folder and the action's code (read-only, at `/code`); no backbone folder and no
attach channel: it can reach no backbone server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER, ContainerSpec, Mount
from lorafaas.invoker.containers import ContainerFolders
from lorafaas.invoking.activations import FunctionRef
from lorafaas.registry.code_artifacts import read_exec
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME

IO_TARGET = "/lorafaas/io"
CODE_TARGET = "/code"
ENTRYPOINT = ["python3", "-m", "lorafaas.runtime.code_action"]


def code_spec(folders: ContainerFolders, function: FunctionRef, name: str, image: str,
              invoker_id: str, pids_limit: int) -> ContainerSpec:
    """The spec of one code action's container (its folders filled already)."""
    environment = {"LORAFAAS_CONTAINER_NAME": name,
                   "LORAFAAS_RUNTIME_SOCKET": f"{IO_TARGET}/{RUNTIME_SOCKET_NAME}",
                   "LORAFAAS_CODE_DIR": CODE_TARGET, "MALLOC_ARENA_MAX": "2"}
    return ContainerSpec(
        name=name, image=image, memory_mb=function.memory_mb, pids_limit=pids_limit,
        labels={LABEL_INVOKER: invoker_id, LABEL_ACTION: function.path},
        environment=environment, entrypoint=ENTRYPOINT, command=[],
        mounts=[Mount(folders.io, IO_TARGET, read_only=False),
                Mount(folders.adapter, CODE_TARGET)])


def code_init_value(function: FunctionRef) -> dict[str, str]:
    """The /init value of a code action's container: its name and entry point."""
    return {"name": function.path, "main": read_exec(function.adapter_dir).main}


def fill_code(folders: ContainerFolders, source: Path) -> None:
    """Give the container the action's code, subfolders included (hard links where
    possible: the store's files stay for as long as the container has them)."""
    shutil.copytree(source, folders.adapter, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)  # the store is on another filesystem
