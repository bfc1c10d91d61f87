"""What the pool benchmarks share: the demo models, the runtime image, a backbone server,
a pool on the real Docker engine, and the memory of a container's process."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "platform")]

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.demo import DemoModels, build_demo_models
from lorafaas.images.runtime_image import ensure_runtime_image
from lorafaas.invoker.docker_backend import DockerBackend
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig

OUT_DIR = REPO_ROOT / "docs" / "benchmarks"


@dataclass(frozen=True)
class BenchParts:
    """A running backbone server and what a pool needs to start containers on it."""

    models: DemoModels
    image: str
    run_dir: Path
    mounts: BackboneMounts  # with the backbone's checkpoint, for pools without sharing
    server_pid: int | None = None  # the backbone server's process

    def pool(self, config_changes: dict[str, object] | None = None,
             cgroup_parent: str | None = None) -> ContainerPool:
        """A fresh pool with its own invoker id (its containers are labelled apart), its
        containers' cgroups under `cgroup_parent` (None: the engine's default)."""
        values: dict[str, object] = {
            "invoker_id": f"bench{uuid.uuid4().hex[:6]}", "image": self.image,
            "run_dir": self.run_dir, "pids_limit": 256, "start_timeout_s": 120,
            "max_instances": 2, "memory_mb": 8192, "stem_memory_mb": 1024,
            **(config_changes or {})}
        return ContainerPool(DockerBackend(cgroup_parent=cgroup_parent),
                             PoolConfig(**values),  # type: ignore[arg-type]
                             self.mounts)


def lorafaas_home() -> Path:
    """The state folder the benchmarks build their models and image in."""
    return Path(os.environ.get("LORAFAAS_HOME", "~/.lorafaas")).expanduser()


@contextlib.asynccontextmanager
async def bench_parts(models: DemoModels | None = None) -> AsyncIterator[BenchParts]:
    """Build (or find) the demo models (unless given others) and the runtime image; run one
    backbone server."""
    home = lorafaas_home()
    models = models or build_demo_models(home / "models")
    import docker

    client = docker.from_env(timeout=600)
    image = ensure_runtime_image(client, home=home, repo_root=REPO_ROOT)
    client.close()
    run_dir = Path(tempfile.mkdtemp(prefix="lfb-", dir="/tmp"))
    endpoint = BackboneEndpoint("demo", run_dir / "bb" / "attach.sock",
                                Path("/dev/shm") / f"lorafaas-bench-{uuid.uuid4().hex[:6]}")
    server = BackboneServerProcess(endpoint, models.backbone_dir)
    await server.start()
    try:
        yield BenchParts(models, image, run_dir,
                         BackboneMounts(endpoint.socket_path, endpoint.publish_dir), server.pid)
    finally:
        await server.stop()


def pss_kb(pid: int) -> int:
    """Proportional set size of a process (kB): shared pages divided among their users.

    0 when the process is gone (a container removed between listing and reading)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key == "Pss":
            return int(rest.split()[0])
    return 0


def machine() -> str:
    """One line about the machine, for the reports."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.platform()}")
