"""Profiled prefill models in the controller: load, schedule, store and apply the fits.

At start the fits stored under this deployment's key (backbone checkpoint, runtime image
id, machine: `lorafaas.invoker.prefill_fits`) are loaded. When a function is deployed or
invoked, its adapter rank (which validation stored in its `adapter` annotation) is looked
up: with a fit, the dispatcher sizes the function's batches by it; without one, and with
`LORAFAAS_PREFILL_PROFILING=auto`, the rank is queued for profiling with the function's
own adapter folder. One worker profiles the queued ranks one after another in the
background (`lorafaas.invoker.prefill_runner`), so a request never waits for a profile and
two profiles never compete for the cores; until a rank's fit exists the settings' default
T(b) applies. A rank whose profiling failed is logged and not tried again before the next
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone.checkpoint import checkpoint_digest, checkpoint_dtype, serving_dtype
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.dispatcher import Dispatcher
from lorafaas.invoker.prefill_fits import FitTable, PrefillFit, PrefillKey
from lorafaas.invoker.prefill_runner import (
    ProfileOptions,
    ProfilerConfig,
    ProfileReport,
    run_profiler,
)
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Action
from lorafaas.registry.prefill_profiles import read_fits, store_fits
from lorafaas.settings import Settings
from lorafaas.wire.machine import describe_machine

logger = logging.getLogger(__name__)

# Profile an adapter folder (of the rank wanted) and report the fits.
Measure = Callable[[Path], Awaitable[ProfileReport]]
Sessions = async_sessionmaker[AsyncSession]


def action_rank(action: Action) -> int | None:
    """The LoRA rank validation stored in the action's `adapter` annotation, if any."""
    for annotation in action.annotations:
        value = annotation.get("value")
        if annotation.get("key") == "adapter" and isinstance(value, dict):
            rank = value.get("rank")
            return rank if isinstance(rank, int) else None
    return None


async def current_key(settings: Settings, backend: ContainerBackend) -> PrefillKey:
    """This deployment's key: the backbone's checkpoint, the runtime image, the machine."""
    image = await asyncio.to_thread(backend.image_id, settings.runtime_image)
    # The serving dtype is part of what is measured (a bf16 prefill is not an fp32 one); it
    # joins the digest where it is not the checkpoint's own.
    dtype = await asyncio.to_thread(serving_dtype, settings.backbone_dir, settings.backbone_dtype)
    own = await asyncio.to_thread(checkpoint_dtype, settings.backbone_dir)
    digest = await asyncio.to_thread(checkpoint_digest, settings.backbone_dir,
                                     None if dtype == own else dtype)
    return PrefillKey(settings.backbone_dir.name, digest, image,
                      describe_machine(settings.container_torch_threads))


def container_measure(settings: Settings, backend: ContainerBackend,
                      publish_dir: Path | None = None) -> Measure:
    """Profiling in a one-off container of the runtime image, as functions run, on what
    the backbone server published (by default where the platform's server publishes)."""
    config = ProfilerConfig(invoker_id=settings.invoker_id, image=settings.runtime_image,
                            run_dir=settings.run_dir,
                            publish_dir=publish_dir or settings.shm_dir / settings.backbone_dir.name,
                            memory_mb=settings.container_memory_mb,
                            pids_limit=settings.container_pids_limit,
                            torch_threads=settings.container_torch_threads)
    options = ProfileOptions(prompt_lengths=settings.prefill_prompt_lengths)
    return functools.partial(run_profiler, backend, config, options=options)


async def measure_and_store(sessions: Sessions, key: PrefillKey, measure: Measure,
                            adapter_dir: Path) -> list[PrefillFit]:
    """Profile with the adapter, store the fits under `key` and return them."""
    report = await measure(adapter_dir)
    measured = now_ms()
    fits = [PrefillFit(report.adapter_rank, profile, measured) for profile in report.profiles]
    async with sessions() as session, session.begin():
        await store_fits(session, key, fits)
    logger.info("prefill of adapter rank %d profiled on %s", report.adapter_rank,
                report.machine)
    return fits


class PrefillProfiling:
    """The fits of the current key, applied to functions; missing ranks profiled in turn."""

    def __init__(self, key: PrefillKey | None, sessions: Sessions, dispatcher: Dispatcher,
                 measure: Measure | None) -> None:
        self.key = key  # None: the runtime image could not be identified
        self.table = FitTable()
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._measure = measure if key is not None else None  # None: no profiling
        self._functions: dict[int, set[str]] = {}  # rank -> function keys seen
        self._queue: asyncio.Queue[tuple[int, Path]] = asyncio.Queue()
        self._waiting: set[int] = set()  # queued or being profiled
        self._running: int | None = None
        self._failed: set[int] = set()

    async def load(self) -> None:
        """Read the fits stored under the current key."""
        if self.key is None:
            return
        async with self._sessions() as session:
            self.table.add(await read_fits(session, self.key))
        logger.info("prefill fits of adapter ranks %s loaded for %s on %s",
                    self.table.ranks(), self.key.backbone, self.key.machine)

    def function_used(self, function_key: str, action: Action, adapter_dir: Path) -> None:
        """A function is deployed or invoked: apply its rank's fit, or queue the rank."""
        rank = action_rank(action)
        if rank is None:
            return
        self._functions.setdefault(rank, set()).add(function_key)
        fit = self.table.chosen(rank)
        if fit is not None:
            self._dispatcher.set_prefill_model(function_key, fit.model)
        elif self._measure is not None and rank not in self._waiting | self._failed:
            self._waiting.add(rank)
            self._queue.put_nowait((rank, adapter_dir))
            logger.info("prefill of adapter rank %d queued for profiling (function %s)",
                        rank, function_key)

    def apply(self, fits: Iterable[PrefillFit]) -> None:
        """Take new fits in and size the batches of their ranks' functions by them."""
        fits = list(fits)
        self.table.add(fits)
        for rank in sorted({fit.rank for fit in fits}):
            chosen = self.table.chosen(rank)
            assert chosen is not None  # just added
            for function_key in self._functions.get(rank, ()):
                self._dispatcher.set_prefill_model(function_key, chosen.model)
            logger.info("prefill of adapter rank %d: T(b) = %.2f + %.2f·(b−1) ms, R² = %.4f "
                        "(prompt length %d)", rank, chosen.model.t0_ms, chosen.model.alpha_ms,
                        chosen.profile.r2, chosen.profile.prompt_length)

    def describe(self, action: Action) -> dict[str, Any]:
        """The prefill model in force for a function, as the API shows it."""
        rank = action_rank(action)
        fit = self.table.chosen(rank) if rank is not None else None
        if fit is not None:
            return {"source": "profiled", "adapterRank": rank,
                    "t0Ms": round(fit.model.t0_ms, 3), "alphaMs": round(fit.model.alpha_ms, 3),
                    "r2": round(fit.profile.r2, 4), "promptLength": fit.profile.prompt_length,
                    "measuredAt": fit.measured_ms}
        default = self._dispatcher.config.default_model
        return {"source": "default", "adapterRank": rank, "t0Ms": default.t0_ms,
                "alphaMs": default.alpha_ms, "profiling": self._state(rank)}

    def _state(self, rank: int | None) -> str:
        if self._measure is None or rank is None:
            return "off"
        if rank == self._running:
            return "running"
        if rank in self._waiting:
            return "queued"
        return "failed" if rank in self._failed else "none"

    async def idle(self) -> None:
        """Wait until every queued rank has been profiled (or failed)."""
        await self._queue.join()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the worker that profiles queued ranks; stop it (and its container) on exit."""
        worker = asyncio.create_task(self._work())
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _work(self) -> None:
        while True:
            rank, adapter_dir = await self._queue.get()
            self._running = rank
            try:
                await self._profile(rank, adapter_dir)
            finally:
                self._running = None
                self._waiting.discard(rank)
                self._queue.task_done()

    async def _profile(self, rank: int, adapter_dir: Path) -> None:
        assert self.key is not None and self._measure is not None  # else nothing is queued
        if not adapter_dir.is_dir():
            # Its function was deleted meanwhile: another function of the rank queues it again.
            logger.info("prefill of adapter rank %d not profiled: %s is gone", rank, adapter_dir)
            return
        try:
            fits = await self._stored(rank) or await measure_and_store(
                self._sessions, self.key, self._measure, adapter_dir)
        except Exception:
            # Logged, and not retried before the next start: a profile that fails now would
            # fail again, and each try costs a container and minutes of the cores.
            logger.exception("profiling the prefill of adapter rank %d failed; the default "
                             "T(b) stays in force for it", rank)
            self._failed.add(rank)
            return
        if rank not in {fit.rank for fit in fits}:
            logger.warning("the adapter %s queued as rank %d has rank %s", adapter_dir, rank,
                           sorted({fit.rank for fit in fits}))
            self._failed.add(rank)
        self.apply(fits)

    async def _stored(self, rank: int) -> list[PrefillFit]:
        # Stored since the start by `lorafaas admin profile` or by another controller.
        assert self.key is not None
        async with self._sessions() as session:
            return await read_fits(session, self.key, rank)


async def open_prefill_profiling(settings: Settings, backend: ContainerBackend,
                                 sessions: Sessions, dispatcher: Dispatcher) -> PrefillProfiling:
    """The controller's prefill profiling, with the fits stored for this deployment loaded."""
    try:
        key = await current_key(settings, backend)
    except Exception:
        # Without the image's id no stored fit can be matched: the default T(b) applies.
        logger.exception("cannot identify the runtime image %s: prefill profiles are not used",
                         settings.runtime_image)
        key = None
    enabled = settings.prefill_profiling == "auto" and settings.batching != "off"
    profiling = PrefillProfiling(key, sessions, dispatcher,
                                 container_measure(settings, backend) if enabled else None)
    await profiling.load()
    return profiling
