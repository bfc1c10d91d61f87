"""`lorafaas admin profile`: profile the prefill of adapter ranks now, store and print the fits.

It runs the same one-off profiler container as the controller's background profiling
(lorafaas.invoker.prefill_profiling), one rank after another, with a deployed function's adapter
of each rank, and stores the fits under this machine's key, replacing any stored. A
controller already running uses them for a rank it has no fit of yet when a function of
that rank is next deployed or invoked (with LORAFAAS_PREFILL_PROFILING=auto), else at its
next start.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from docker.errors import DockerException
from sqlalchemy import select

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.backbone_specs import BackboneSpec
from lorafaas.controller.function_refs import action_backbone, action_rank
from lorafaas.errors import LoraFaasError
from lorafaas.invoker.docker_backend import DockerBackend
from lorafaas.invoker.prefill_fits import PrefillFit, PrefillKey
from lorafaas.invoker.prefill_profiling import (
    Sessions,
    container_measure,
    current_key,
    measure_and_store,
)
from lorafaas.invoker.prefill_runner import ProfilingFailed
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Action, Namespace
from lorafaas.settings import Settings
from lorafaas.wire.prefill_fit import format_profile


async def profile_ranks(settings: Settings, ranks: list[int],
                        backbone: str | None = None) -> str:
    """Profile `ranks` (every rank deployed on the backbone when empty) on a backbone (the
    default when None); return the fit tables to print."""
    spec = chosen_backbone(settings, backbone)
    try:
        backend = DockerBackend()
    except DockerException as error:
        raise LoraFaasError(f"cannot reach the Docker engine: {error}") from error
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessions(engine)
        try:
            key = await current_key(settings, backend, spec)
        except DockerException as error:
            raise LoraFaasError(f"cannot find the runtime image {settings.runtime_image} "
                                f"(`lorafaas setup` builds it): {error}") from error
        deployed = await deployed_adapters(sessions, ArtifactStore(settings.artifacts_dir),
                                           spec.name, settings.default_backbone.name)
        adapters = _chosen(deployed, ranks)
        blocks = [describe_key(key)]
        async with published_backbone(settings, spec) as publish_dir:
            measure = container_measure(settings, backend, spec, publish_dir)
            for rank, (function, folder) in sorted(adapters.items()):
                try:
                    fits = await measure_and_store(sessions, key, measure, folder)
                except (ProfilingFailed, DockerException) as error:
                    raise LoraFaasError(f"profiling adapter rank {rank} failed: "
                                        f"{error}") from error
                blocks.append(format_fits(rank, function, fits))
        return "\n\n".join(blocks)
    finally:
        await engine.dispose()
        backend.close()


def chosen_backbone(settings: Settings, name: str | None) -> BackboneSpec:
    """The backbone called `name` (the default when None), or an error naming the served."""
    for spec in settings.backbone_specs:
        if name in (None, spec.name):
            return spec
    raise LoraFaasError(f"unknown backbone {name!r}; this deployment serves: "
                        f"{', '.join(s.name for s in settings.backbone_specs)}")


@contextlib.asynccontextmanager
async def published_backbone(settings: Settings, spec: BackboneSpec) -> AsyncIterator[Path]:
    """The folder the running platform's server published the backbone in, or, when no
    platform runs, one published by a backbone server started for the profiling
    (containers read only published files, never the checkpoint)."""
    running = settings.shm_dir / spec.name
    if (running / "manifest.json").exists():
        yield running
        return
    name = f"{spec.name}-profile-{uuid.uuid4().hex[:8]}"
    endpoint = BackboneEndpoint(name, settings.run_dir / "backbones" / name / "attach.sock",
                                settings.shm_dir / name)
    server = BackboneServerProcess(endpoint, spec.folder, spec.dtype)
    try:
        await server.start()
    except (OSError, RuntimeError) as error:
        raise LoraFaasError(f"cannot publish the backbone: {error}") from error
    try:
        yield endpoint.publish_dir
    finally:
        await server.stop()


async def deployed_adapters(sessions: Sessions, store: ArtifactStore, backbone: str,
                            default: str) -> dict[int, tuple[str, Path]]:
    """For each adapter rank deployed on `backbone`, one function of that rank and its
    adapter folder (an action naming no backbone is on `default`)."""
    async with sessions() as session:
        rows = (await session.execute(select(Action, Namespace.name).join(Namespace)
                                      .order_by(Namespace.name, Action.name))).all()
    found: dict[int, tuple[str, Path]] = {}
    for action, namespace in rows:
        if action.artifact_digest is None:  # a sequence: no adapter of its own
            continue
        rank, folder = action_rank(action), store.folder(action.artifact_digest)
        if (action_backbone(action) or default) != backbone:
            continue
        if rank is not None and rank not in found and folder.is_dir():
            found[rank] = (f"{namespace}/{action.name}", folder)
    return found


def _chosen(deployed: dict[int, tuple[str, Path]],
            ranks: list[int]) -> dict[int, tuple[str, Path]]:
    missing = sorted(set(ranks) - set(deployed))
    if missing:
        raise LoraFaasError(f"no deployed function has an adapter of rank "
                            f"{', '.join(map(str, missing))} (deployed ranks: "
                            f"{', '.join(map(str, sorted(deployed))) or 'none'})")
    if not deployed:
        raise LoraFaasError("no function is deployed: nothing to profile")
    return {rank: deployed[rank] for rank in (ranks or deployed)}


def describe_key(key: PrefillKey) -> str:
    """What the fits below hold for."""
    return (f"backbone {key.backbone} (checkpoint {key.backbone_digest[:12]})\n"
            f"runtime image {key.image}\nmachine: {key.machine}")


def format_fits(rank: int, function: str, fits: list[PrefillFit]) -> str:
    """One rank's measured and fitted T(b) per prompt length, with each fit's R²."""
    header = f"adapter rank {rank} (adapter of {function}), stored"
    return "\n".join([header, *(format_profile(fit.profile) for fit in fits)])
