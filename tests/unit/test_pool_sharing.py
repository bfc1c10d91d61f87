"""What a function container mounts with backbone sharing on and off."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafaas.invoker.containers import ContainerFolders
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from lorafaas.names import QualifiedName

MOUNTS = BackboneMounts(Path("/run/bb/attach.sock"), Path("/dev/shm/lorafaas/demo"))


def pool(sharing: bool, mounts: BackboneMounts = MOUNTS) -> ContainerPool:
    """A pool whose backend is never called: only container specs are made."""
    config = PoolConfig(invoker_id="unit", image="img", run_dir=Path("/tmp/unit"), pids_limit=8,
                        start_timeout_s=1, max_instances=1, backbone_sharing=sharing)
    return ContainerPool(None, config, mounts)  # type: ignore[arg-type]


def mounted(sharing: bool) -> tuple[dict[str, Path], dict[str, str]]:
    spec = pool(sharing)._container_spec(ContainerFolders(Path("/tmp/unit/c/x")), 1024, None)
    assert all(m.read_only for m in spec.mounts if m.target != "/lorafaas/io")
    return {m.target: m.source for m in spec.mounts}, spec.environment


def test_sharing_mounts_the_published_weights_and_the_containers_own_channel() -> None:
    mounts, environment = mounted(True)
    assert mounts["/backbone"] == MOUNTS.publish_dir
    # Its own channel's folder, never the server's (where the control socket lies).
    assert mounts["/lorafaas/attach"] == Path("/tmp/unit/c/x/attach")
    assert MOUNTS.control_socket.parent not in mounts.values()
    assert environment["LORAFAAS_ATTACH_SOCKET"] == "/lorafaas/attach/attach.sock"
    assert "LORAFAAS_BACKBONE_SHARING" not in environment


def test_without_sharing_the_published_folder_is_mounted_and_no_socket() -> None:
    """Containers read what the server published, never the checkpoint (it may be 0600)."""
    mounts, environment = mounted(False)
    assert mounts["/backbone"] == MOUNTS.publish_dir
    assert "/lorafaas/attach" not in mounts and "LORAFAAS_ATTACH_SOCKET" not in environment
    assert environment["LORAFAAS_BACKBONE_SHARING"] == "off"


def test_each_container_mounts_the_backbone_its_function_names() -> None:
    other = BackboneMounts(Path("/run/other/attach.sock"), Path("/dev/shm/lorafaas/other"))
    config = PoolConfig(invoker_id="unit", image="img", run_dir=Path("/tmp/unit"), pids_limit=8,
                        start_timeout_s=1, max_instances=1)
    two = ContainerPool(None, config, {"demo": MOUNTS, "other": other})  # type: ignore[arg-type]
    folders = ContainerFolders(Path("/tmp/unit/c/x"))
    for name, expected in (("", MOUNTS), ("demo", MOUNTS), ("other", other)):
        spec = two._container_spec(folders, 1024, None, name)
        assert {m.target: m.source for m in spec.mounts}["/backbone"] == expected.publish_dir
    assert two.channels["other"].control_socket == other.control_socket


def test_a_stem_cell_serves_only_functions_of_its_own_backbone() -> None:
    from lorafaas.invoker.backend import ContainerInfo
    from lorafaas.invoker.containers import ContainerState, PooledContainer
    from lorafaas.invoker.pool import FunctionRef, UnknownBackbone

    config = PoolConfig(invoker_id="unit", image="img", run_dir=Path("/tmp/unit"), pids_limit=8,
                        start_timeout_s=1, max_instances=2)
    two = ContainerPool(None, config, {"demo": MOUNTS, "other": MOUNTS})  # type: ignore[arg-type]
    stem = PooledContainer(ContainerInfo(id="s", name="s", pid=0),
                           ContainerFolders(Path("/tmp/unit/c/s")), None,  # type: ignore[arg-type]
                           2048, ContainerState.STEM, backbone="other")
    two._containers[stem.info.id] = stem

    def function(backbone: str) -> FunctionRef:
        return FunctionRef(f"g/f{backbone}@0.0.1:x", QualifiedName.from_path(f"g/f{backbone}"), Path("/x"), 1024,
                           backbone=backbone)

    assert two._claim_stem(function("")) is None  # the default backbone is demo
    assert two._claim_stem(function("demo")) is None
    assert two._claim_stem(function("other")) is stem
    with pytest.raises(UnknownBackbone, match="'third'.*served: demo, other"):
        two._claim_stem(function("third"))
