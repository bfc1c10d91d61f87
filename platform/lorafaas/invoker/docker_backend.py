"""The Docker engine as a container backend: every docker SDK call lives here."""

from __future__ import annotations

import logging
from typing import Any

import docker
from docker.errors import APIError, NotFound
from docker.types import DeviceRequest
from docker.types import Mount as DockerMount

from lorafaas.invoker.backend import LABEL_INVOKER, ContainerInfo, ContainerSpec
from lorafaas.invoker.records import log_time

logger = logging.getLogger(__name__)


class DockerBackend:
    """Hardened function containers on the local Docker engine."""

    def __init__(self, client: docker.DockerClient | None = None,
                 cgroup_parent: str | None = None) -> None:
        self.client = client or docker.from_env(timeout=120)
        # Where the containers' cgroups go (None: the engine's default). Under cgroup v1
        # with the cgroupfs driver that default is one `docker` group whose CPU weight is a
        # single task's, so all containers together get one task's share of a busy host;
        # "/" makes each container a top-level group, weighted as one host task is.
        self.cgroup_parent = cgroup_parent

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start the container with no network, read-only root and no privileges."""
        container = self.client.containers.run(**run_options(spec, self.cgroup_parent))
        container.reload()
        logger.info("container %s started (%s)", spec.name, container.short_id)
        return ContainerInfo(id=container.id, name=spec.name,
                             pid=int(container.attrs["State"]["Pid"]))

    def remove(self, container_id: str) -> None:
        """Force-remove the container."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            return
        except APIError as error:
            if "already in progress" not in str(error):
                raise

    def is_running(self, container_id: str) -> bool:
        """Whether the container still runs."""
        try:
            return bool(self.client.api.inspect_container(container_id)["State"]["Running"])
        except NotFound:
            return False

    def exit_status(self, container_id: str) -> tuple[int | None, bool]:
        """Exit code and OOM flag from the engine."""
        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except NotFound:
            return None, False
        code = None if state["Running"] else int(state["ExitCode"])
        return code, bool(state.get("OOMKilled"))

    def logs(self, container_id: str, since: float, until: float) -> list[str]:
        """Log lines in [since, until] as OpenWhisk's records hold them (`<time> stdout:
        text`), oldest first: one call per stream, so that each line says its stream."""
        labelled: list[tuple[float, str]] = []
        for stream in ("stdout", "stderr"):
            try:
                raw = self.client.api.logs(container_id, stdout=stream == "stdout",
                                           stderr=stream == "stderr", timestamps=True,
                                           since=since, until=until)
            except (NotFound, APIError):
                return []  # removed, or being removed: its logs are gone with it
            for line in raw.decode("utf-8", "replace").splitlines():
                moment, _, text = line.partition(" ")
                labelled.append((log_time(moment), f"{moment} {stream}: {text}"))
        return [line for _, line in sorted(labelled, key=lambda pair: pair[0])]

    def list_labelled(self, invoker_id: str) -> list[str]:
        """Containers labelled by this invoker, running or exited."""
        found = self.client.api.containers(all=True,
                                           filters={"label": f"{LABEL_INVOKER}={invoker_id}"})
        return [c["Id"] for c in found]

    def image_id(self, image: str) -> str:
        """The image's id; docker's ImageNotFound when the engine has no such image."""
        return str(self.client.images.get(image).id)

    def close(self) -> None:
        """Close the engine connection."""
        self.client.close()



def run_options(spec: ContainerSpec, cgroup_parent: str | None = None) -> dict[str, Any]:
    """The engine's options for a spec: hardened alike on every host; a spec with a GPU
    gets it by a device request for the NVIDIA runtime, and the host's IPC and PID
    namespaces, which CUDA IPC needs (the isolation it costs: see invoker.device_options)."""
    options: dict[str, Any] = {
        "image": spec.image, "detach": True, "name": spec.name, "labels": spec.labels,
        "environment": spec.environment, "network_mode": "none", "read_only": True,
        "user": spec.user, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
        "mem_limit": f"{spec.memory_mb}m", "memswap_limit": f"{spec.memory_mb}m",
        "pids_limit": spec.pids_limit, "tmpfs": spec.tmpfs, "ipc_mode": "private",
        "entrypoint": spec.entrypoint, "command": spec.command,
        "mounts": [DockerMount(target=m.target, source=str(m.source), type="bind",
                            read_only=m.read_only) for m in spec.mounts]}
    if cgroup_parent:
        options["cgroup_parent"] = cgroup_parent
    if spec.gpu is not None:
        options.update(
            device_requests=[DeviceRequest(driver="nvidia", device_ids=[str(spec.gpu.device)],
                                           capabilities=[["gpu"]])],
            ipc_mode="host", pid_mode="host")
    return options
