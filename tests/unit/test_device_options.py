"""What a function container gets of its backbone's device, on a CPU and on a CUDA host."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker.types import DeviceRequest

from lorafaas.invoker.backend import ContainerSpec, GpuAccess, Mount
from lorafaas.invoker.containers import ContainerFolders
from lorafaas.invoker.device_options import device_options
from lorafaas.invoker.docker_backend import run_options
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig

PUBLISHED = Path("/dev/shm/lorafaas/demo")
TMPFS = BackboneMounts(Path("/run/bb/attach.sock"), PUBLISHED)
CUDA = BackboneMounts(Path("/run/bb/attach.sock"), PUBLISHED, "cuda-ipc", 1)


def spec_of(mounts: BackboneMounts) -> ContainerSpec:
    config = PoolConfig(invoker_id="unit", image="img", run_dir=Path("/tmp/unit"), pids_limit=8,
                        start_timeout_s=1, max_instances=1)
    pool = ContainerPool(None, config, mounts)  # type: ignore[arg-type]
    return pool._container_spec(ContainerFolders(Path("/tmp/unit/c/x")), 1024, None)


def test_on_tmpfs_the_published_folder_is_mounted_and_no_gpu_given() -> None:
    spec = spec_of(TMPFS)
    assert {m.target: m.source for m in spec.mounts}["/backbone"] == PUBLISHED
    assert spec.environment["LORAFAAS_BACKBONE_DIR"] == "/backbone"
    assert "LORAFAAS_CUDA_DEVICE" not in spec.environment
    assert spec.gpu is None


def test_on_cuda_no_weights_folder_only_the_generation_files_and_the_servers_gpu() -> None:
    spec = spec_of(CUDA)
    targets = {m.target: m for m in spec.mounts}
    assert "/backbone" not in targets
    generation = targets["/lorafaas/generation"]
    assert generation.source == PUBLISHED and generation.read_only
    assert spec.environment["LORAFAAS_BACKBONE_DIR"] == "/lorafaas/generation"
    # The host's device 1 is the container's only GPU: device 0 inside.
    assert spec.environment["LORAFAAS_CUDA_DEVICE"] == "0"
    assert spec.gpu == GpuAccess(1)
    assert spec.environment["LORAFAAS_ATTACH_SOCKET"] == "/lorafaas/attach/attach.sock"


def test_a_cuda_backbone_must_name_its_device_and_transports_are_known() -> None:
    with pytest.raises(ValueError, match="names its device"):
        device_options("cuda-ipc", PUBLISHED, None)
    with pytest.raises(ValueError, match="unknown backbone transport 'nfs'"):
        device_options("nfs", PUBLISHED, None)


def base_spec(gpu: GpuAccess | None) -> ContainerSpec:
    return ContainerSpec(name="c", image="img", mounts=[Mount(Path("/x"), "/x")],
                         environment={}, labels={}, memory_mb=512, pids_limit=8, gpu=gpu)


def test_engine_options_without_a_gpu_keep_private_namespaces_and_request_no_device() -> None:
    options = run_options(base_spec(None))
    assert options["ipc_mode"] == "private"
    assert "pid_mode" not in options and "device_requests" not in options
    assert options["network_mode"] == "none" and options["read_only"] is True
    assert options["cap_drop"] == ["ALL"] and "cgroup_parent" not in options
    assert run_options(base_spec(None), "/")["cgroup_parent"] == "/"


def test_engine_options_with_a_gpu_request_that_device_and_share_ipc_and_pid() -> None:
    options = run_options(base_spec(GpuAccess(3)))
    [request] = options["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["3"] and request["Capabilities"] == [["gpu"]]
    assert (options["ipc_mode"], options["pid_mode"]) == ("host", "host")
    # The rest of the hardening stays.
    assert options["network_mode"] == "none" and options["read_only"] is True
    assert options["cap_drop"] == ["ALL"] and options["security_opt"] == ["no-new-privileges"]
    assert options["user"] == "65534:65534" and options["mem_limit"] == "512m"
