"""One backbone server per configured backbone, each an aiohttp cleanup context.

Each server has its own attach socket (`<run_dir>/backbones/<name>/attach.sock`) and its
own published folder (`<shm_dir>/<name>`); a function's containers mount those of the
backbone its `backbone` annotation names. The contexts run in the order of the settings,
before the platform's, so every backbone is published when the first request comes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess, request
from lorafaas.backbone_specs import BackboneSpec
from lorafaas.controller.appkeys import served_backbones_key
from lorafaas.controller.backbones import Published, ServedBackbone
from lorafaas.settings import Settings

logger = logging.getLogger(__name__)


def backbone_endpoint(settings: Settings, spec: BackboneSpec) -> BackboneEndpoint:
    """Where the backbone's server listens and publishes."""
    return BackboneEndpoint(
        name=spec.name, socket_path=settings.run_dir / "backbones" / spec.name / "attach.sock",
        publish_dir=settings.shm_dir / spec.name)


def backbone_server(settings: Settings, spec: BackboneSpec
                    ) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of one backbone's server: start, describe, yield, stop.

    It fails at start, with SettingsError, when a backbone's folder holds no checkpoint."""
    async def serve_backbone(app: web.Application) -> AsyncIterator[None]:
        settings.check_backbone_folders()  # a SettingsError naming the key and the value
        process = BackboneServerProcess(backbone_endpoint(settings, spec), spec.folder,
                                        spec.dtype)
        await process.start()
        try:
            answer = await request(process.endpoint.socket_path, {"op": "describe"})
            published = Published.from_descriptor(answer.get("backbone") or {})
            app[served_backbones_key][spec.name] = ServedBackbone(
                spec, process.endpoint, published, process.pid)
            logger.info("backbone %s served in %s (%d bytes published)", spec.name,
                        published.dtype, published.bytes)
            yield
        finally:
            app[served_backbones_key].pop(spec.name, None)
            await process.stop()
    return serve_backbone
