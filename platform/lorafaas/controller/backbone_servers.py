"""The run's hold on its run directory, and one supervised backbone server per configured
backbone, each an aiohttp cleanup context.

The first context locks the run directory (lorafaas.backbone.ownership) and reclaims what
a dead previous run left: its backbone servers and per-container folders. Each server has
its own attach socket (`<run_dir>/backbones/<name>/attach.sock`), pid file beside it, and
published folder (`<shm_dir>/<name>`); a function's containers mount those of the backbone
its `backbone` annotation names. The contexts run in the order of the settings, before the
platform's, so every backbone is published when the first request comes; a server that
exits is restarted (lorafaas.backbone.supervision).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from lorafaas.backbone.accelerator import TransportChoice, choose_transport, host_facts
from lorafaas.backbone.ownership import SERVER_PID, acquire_run, reclaim
from lorafaas.backbone.supervision import SupervisedServer
from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.backbone_specs import BackboneSpec
from lorafaas.controller.appkeys import backbone_health_key, run_owner_key, served_backbones_key
from lorafaas.controller.backbones import Published, ServedBackbone
from lorafaas.settings import Settings
from lorafaas.wire.attach import exchange

logger = logging.getLogger(__name__)


def backbone_endpoint(settings: Settings, spec: BackboneSpec) -> BackboneEndpoint:
    """Where the backbone's server listens and publishes."""
    return BackboneEndpoint(
        name=spec.name, socket_path=settings.run_dir / "backbones" / spec.name / "attach.sock",
        publish_dir=settings.shm_dir / spec.name)


def backbone_transport(settings: Settings) -> TransportChoice:
    """tmpfs or CUDA IPC, from LORAFAAS_ACCELERATOR and the host (AcceleratorUnavailable
    where `cuda` is asked on a host without that device)."""
    choice = choose_transport(settings.accelerator, host_facts())
    logger.info("backbones are published by %s: %s", choice.transport, choice.reason)
    return choice


def run_ownership(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that holds the run directory: lock, reclaim, yield, unlock."""
    async def hold_run(app: web.Application) -> AsyncIterator[None]:
        owner = await asyncio.to_thread(acquire_run, settings.run_dir)  # RunBusy if held
        try:
            await asyncio.to_thread(reclaim, owner)
            app[run_owner_key] = owner
            yield
        finally:
            owner.release()
    return hold_run


def backbone_server(settings: Settings, spec: BackboneSpec
                    ) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of one backbone's server: start, describe, supervise, stop.

    It fails at start, with SettingsError, when a backbone's folder holds no checkpoint."""
    async def serve_backbone(app: web.Application) -> AsyncIterator[None]:
        settings.check_backbone_folders()  # a SettingsError naming the key and the value
        endpoint = backbone_endpoint(settings, spec)
        transport = await asyncio.to_thread(backbone_transport, settings)

        async def on_ready(process: BackboneServerProcess) -> None:
            answer = await exchange(process.endpoint.socket_path, {"op": "describe"})
            published = Published.from_descriptor(answer.get("backbone") or {})
            app[served_backbones_key][spec.name] = ServedBackbone(
                spec, process.endpoint, published, process.pid)
            logger.info("backbone %s served in %s (%d bytes published)", spec.name,
                        published.dtype, published.bytes)

        server = SupervisedServer(
            spec.name, lambda: BackboneServerProcess(endpoint, spec.folder, spec.dtype,
                                                     app[run_owner_key].owner_id, transport),
            app[backbone_health_key], endpoint.socket_path.parent / SERVER_PID, on_ready)
        try:
            await server.start()
            yield
        finally:
            app[served_backbones_key].pop(spec.name, None)
            await server.stop()
    return serve_backbone
