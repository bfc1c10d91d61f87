"""Backbone sharing on and off (`LORAFAAS_BACKBONE_SHARING`): without it each container holds
a private copy of the backbone, with it two containers hold none, and both generate the
same tokens."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lorafaas.invoker.docker_backend import DockerBackend
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, Lease, PoolConfig
from tests.integration.test_pool import MEMORY_MB, function

pytestmark = pytest.mark.docker
PAYLOAD = {"value": {"prompt": "Can you tell me about the sea?", "max_tokens": 12,
                     "ignore_eos": True, "return_token_ids": True}, "max_tokens_limit": 64}


def memory_of(pid: int) -> dict[str, int]:
    """Pss, Pss_Anon (private anonymous pages) and Pss_Shmem (tmpfs pages), kB."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Pss_Anon", "Pss_Shmem"):
            figures[key] = int(rest.split()[0])
    return figures


def make_pool(backbone: BackboneMounts, runtime_image: str, run_dir: Path, sharing: bool
              ) -> ContainerPool:
    """A pool on the real engine, with backbone sharing on or off."""
    config = PoolConfig(invoker_id=f"share{uuid.uuid4().hex[:8]}", image=runtime_image,
                        run_dir=run_dir, pids_limit=256, start_timeout_s=120, max_instances=2,
                        memory_mb=8 * MEMORY_MB, stem_memory_mb=MEMORY_MB,
                        backbone_sharing=sharing)
    return ContainerPool(DockerBackend(), config, backbone)


async def test_no_sharing_holds_a_private_copy_and_generates_the_same(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir: Path, demo_models) -> None:
    backbone_kb = (demo_models.backbone_dir / "model.safetensors").stat().st_size / 1024
    pools = {sharing: make_pool(backbone, runtime_image, short_dir,
                                sharing) for sharing in (True, False)}
    leases: dict[tuple[bool, str], Lease] = {}
    tokens: dict[tuple[bool, str], list[int]] = {}
    try:
        for sharing, pool in pools.items():
            for name in ("pirate", "shout"):
                lease = leases[sharing, name] = await pool.acquire(function(demo_models, name))
                assert lease.start_kind == "cold" and "backbone" in lease.init_breakdown
                outcome = await lease.container.client.run(PAYLOAD)
                tokens[sharing, name] = outcome.result["token_ids"]
        figures = {key: memory_of(lease.container.info.pid) for key, lease in leases.items()}
    finally:
        for pool in pools.values():
            await pool.shutdown()
    print({f"{'shared' if s else 'private'} {n}": {k: round(v / 1024, 1) for k, v in f.items()}
           for (s, n), f in figures.items()}, f"backbone {backbone_kb / 1024:.1f} MiB")

    for name in ("pirate", "shout"):
        assert tokens[False, name] == tokens[True, name]
        assert len(tokens[True, name]) == 12
        private, shared = figures[False, name], figures[True, name]
        # Each private copy is the container's own anonymous memory, not shared pages.
        assert private["Pss"] >= 0.9 * backbone_kb
        assert private["Pss_Anon"] - shared["Pss_Anon"] >= 0.8 * backbone_kb
        assert private["Pss_Shmem"] < 0.05 * backbone_kb
        # /init sizes the private load as the backbone's bytes; a shared attach is small.
        assert leases[False, name].init_memory["backbone"] >= 0.9 * backbone_kb * 1024
        assert leases[True, name].init_memory.get("backbone", 0) < 0.5 * backbone_kb * 1024
    # The sharing containers map the one published copy: together they hold it once.
    assert sum(figures[True, n]["Pss_Shmem"] for n in ("pirate", "shout")) <= 1.05 * backbone_kb
