"""Profiled prefill models in the invoker: load, schedule, store and apply the fits.

At start the fits stored under each backbone's key (its checkpoint, the runtime image id,
the machine: `lorafaas.invoker.prefill_fits`) are loaded: a fit holds for one backbone.
When a function is deployed or invoked, its backbone and adapter rank (which validation stored
in its `adapter` annotation, and the controller passes in its `FunctionRef`) is looked up:
with a fit, the dispatcher sizes the function's batches by it; without one, and with
`LORAFAAS_PREFILL_PROFILING=auto`, the rank is queued for profiling with the function's
own adapter folder. One worker profiles the queued ranks one after another in the
background (`lorafaas.invoker.prefill_runner`), so a request never waits for a profile and
two profiles never compete for the cores; until a rank's fit exists the settings' default
T(b) applies. A rank whose profiling failed is logged and not tried again before the next
start. A stored fit that is not sound (`lorafaas.invoker.prefill_fits.fit_problem`: measured on a
loaded machine, say) is not applied, and a stale or unsound one is measured again, once per
start: until a sound fit comes, the default T(b) sizes the rank's batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone.checkpoint import checkpoint_digest, checkpoint_dtype, serving_dtype
from lorafaas.backbone_specs import BackboneSpec
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.dispatcher import Dispatcher
from lorafaas.invoker.prefill_fits import FitTable, PrefillFit, PrefillKey, fit_problem, is_stale
from lorafaas.invoker.prefill_runner import (
    ProfileOptions,
    ProfilerConfig,
    ProfileReport,
    run_profiler,
)
from lorafaas.invoking.activations import FunctionRef
from lorafaas.registry.clock import now_ms
from lorafaas.registry.prefill_profiles import read_fits, store_fits
from lorafaas.settings import Settings
from lorafaas.wire.machine import describe_machine

logger = logging.getLogger(__name__)

# Profile an adapter folder (of the rank wanted) and report the fits.
Measure = Callable[[Path], Awaitable[ProfileReport]]
Sessions = async_sessionmaker[AsyncSession]


async def current_key(settings: Settings, backend: ContainerBackend,
                      backbone: BackboneSpec | None = None) -> PrefillKey:
    """A backbone's key (default: the default backbone's): its checkpoint, the runtime
    image, the machine."""
    spec = backbone or settings.default_backbone
    image = await asyncio.to_thread(backend.image_id, settings.runtime_image)
    # The serving dtype is part of what is measured (a bf16 prefill is not an fp32 one); it
    # joins the digest where it is not the checkpoint's own.
    dtype = await asyncio.to_thread(serving_dtype, spec.folder, spec.dtype)
    own = await asyncio.to_thread(checkpoint_dtype, spec.folder)
    digest = await asyncio.to_thread(checkpoint_digest, spec.folder,
                                     None if dtype == own else dtype)
    return PrefillKey(spec.name, digest, image, describe_machine(settings.container_torch_threads))


def container_measure(settings: Settings, backend: ContainerBackend,
                      backbone: BackboneSpec | None = None,
                      publish_dir: Path | None = None) -> Measure:
    """Profiling on a backbone (default: the default one) in a one-off container of the
    runtime image, as functions run, on what the backbone's server published (by default
    where the platform's server publishes it)."""
    spec = backbone or settings.default_backbone
    config = ProfilerConfig(invoker_id=settings.invoker_id, image=settings.runtime_image,
                            run_dir=settings.run_dir,
                            publish_dir=publish_dir or settings.shm_dir / spec.name,
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
    logger.info("prefill of adapter rank %d profiled on %s (backbone %s)", report.adapter_rank,
                report.machine, key.backbone)
    return fits


@dataclass(frozen=True)
class ProfiledBackbone:
    """One backbone's key (None: the runtime image could not be identified) and how its
    ranks are measured (None: no profiling)."""

    key: PrefillKey | None
    measure: Measure | None


# (backbone name, adapter rank): fits hold for one backbone's checkpoint only.
Slot = tuple[str, int]


class PrefillProfiling:
    """The fits of each backbone's current key, applied to functions; missing ranks profiled
    in turn, one (backbone, rank) at a time. The first backbone is the default."""

    def __init__(self, sessions: Sessions, dispatcher: Dispatcher,
                 backbones: Mapping[str, ProfiledBackbone]) -> None:
        if not backbones:
            raise ValueError("prefill profiling needs at least one backbone")
        self.backbones = dict(backbones)
        self.default = next(iter(self.backbones))
        self.tables = {name: FitTable() for name in self.backbones}
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._functions: dict[Slot, set[str]] = {}  # function keys seen
        self._queue: asyncio.Queue[tuple[Slot, Path]] = asyncio.Queue()
        self._waiting: set[Slot] = set()  # queued or being profiled
        self._running: Slot | None = None
        self._failed: set[Slot] = set()
        self._remeasured: set[Slot] = set()  # stale or unsound fits queued again since start

    async def load(self) -> None:
        """Read the fits stored under each backbone's current key."""
        for name, backbone in self.backbones.items():
            if backbone.key is None:
                continue
            async with self._sessions() as session:
                self.tables[name].add(await read_fits(session, backbone.key))
            logger.info("prefill fits of adapter ranks %s loaded for %s on %s",
                        self.tables[name].ranks(), name, backbone.key.machine)

    def _slot(self, function: FunctionRef) -> Slot | None:
        rank, backbone = function.adapter_rank, function.backbone or self.default
        return (backbone, rank) if rank is not None and backbone in self.backbones else None

    def function_used(self, function: FunctionRef) -> None:
        """A function is deployed or invoked: apply its rank's fit, or queue the rank."""
        slot = self._slot(function)
        if slot is None:
            return
        function_key, adapter_dir = function.key, function.adapter_dir
        self._functions.setdefault(slot, set()).add(function_key)
        fit = self.tables[slot[0]].chosen(slot[1])
        measure = self.backbones[slot[0]].measure
        sound = fit is not None and self._problem(fit) is None
        if fit is not None and sound:
            self._dispatcher.set_prefill_model(function_key, fit.model)
        if fit is not None and (not sound or is_stale(fit, now_ms())):
            if measure is not None and slot not in self._waiting | self._remeasured:
                self._remeasured.add(slot)
                self._waiting.add(slot)
                self._queue.put_nowait((slot, adapter_dir))
                logger.warning("prefill of adapter rank %d on %s queued for re-measurement: its "
                            "fit is %s", slot[1], slot[0], self._problem(fit) or "stale")
        elif fit is None and measure is not None and slot not in self._waiting | self._failed:
            self._waiting.add(slot)
            self._queue.put_nowait((slot, adapter_dir))
            logger.info("prefill of adapter rank %d on %s queued for profiling (function %s)",
                        slot[1], slot[0], function_key)

    def apply(self, fits: Iterable[PrefillFit], backbone: str | None = None) -> None:
        """Take a backbone's new fits in (default: the default backbone's) and size the
        batches of their ranks' functions by them."""
        name = backbone or self.default
        fits = list(fits)
        self.tables[name].add(fits)
        for rank in sorted({fit.rank for fit in fits}):
            chosen = self.tables[name].chosen(rank)
            assert chosen is not None  # just added
            problem = self._problem(chosen)
            if problem is not None:
                logger.warning("prefill fit of adapter rank %d on %s not applied (%s): the "
                               "default T(b) sizes its batches", rank, name, problem)
                continue
            for function_key in self._functions.get((name, rank), ()):
                self._dispatcher.set_prefill_model(function_key, chosen.model)
            logger.info("prefill of adapter rank %d on %s: T(b) = %.2f + %.2f·(b−1) ms, "
                        "R² = %.4f (prompt length %d)", rank, name, chosen.model.t0_ms,
                        chosen.model.alpha_ms, chosen.profile.r2, chosen.profile.prompt_length)

    def describe(self, function: FunctionRef) -> dict[str, Any]:
        """The prefill model in force for a function, as the API shows it."""
        rank, slot = function.adapter_rank, self._slot(function)
        fit = self.tables[slot[0]].chosen(slot[1]) if slot is not None else None
        rejected = self._problem(fit) if fit is not None else None
        if fit is not None and rejected is None:
            return {"source": "profiled", "adapterRank": rank,
                    "t0Ms": round(fit.model.t0_ms, 3), "alphaMs": round(fit.model.alpha_ms, 3),
                    "r2": round(fit.profile.r2, 4), "promptLength": fit.profile.prompt_length,
                    "measuredAt": fit.measured_ms}
        default = self._dispatcher.config.default_model
        shown = {"source": "default", "adapterRank": rank, "t0Ms": default.t0_ms,
                 "alphaMs": default.alpha_ms, "profiling": self._state(slot)}
        return {**shown, "rejectedFit": rejected} if rejected is not None else shown

    def _problem(self, fit: PrefillFit) -> str | None:
        return fit_problem(fit, self._dispatcher.config.default_model)

    def _state(self, slot: Slot | None) -> str:
        if slot is None or self.backbones[slot[0]].measure is None:
            return "off"
        if slot == self._running:
            return "running"
        if slot in self._waiting:
            return "queued"
        return "failed" if slot in self._failed else "none"

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
            slot, adapter_dir = await self._queue.get()
            self._running = slot
            try:
                await self._profile(slot, adapter_dir)
            finally:
                self._running = None
                self._waiting.discard(slot)
                self._queue.task_done()

    async def _profile(self, slot: Slot, adapter_dir: Path) -> None:
        name, rank = slot
        key, measure = self.backbones[name].key, self.backbones[name].measure
        assert key is not None and measure is not None  # else nothing is queued
        if not adapter_dir.is_dir():
            # Its function was deleted meanwhile: another function of the rank queues it again.
            logger.info("prefill of adapter rank %d not profiled: %s is gone", rank, adapter_dir)
            return
        try:
            stored = await self._stored(key, rank)
            fits = stored if self._usable(stored) else await measure_and_store(
                self._sessions, key, measure, adapter_dir)
        except Exception:
            # Logged, and not retried before the next start: a profile that fails now would
            # fail again, and each try costs a container and minutes of the cores.
            logger.exception("profiling the prefill of adapter rank %d failed (backbone %s); "
                             "the default T(b) stays in force for it", rank, name)
            self._failed.add(slot)
            return
        if rank not in {fit.rank for fit in fits}:
            logger.warning("the adapter %s queued as rank %d has rank %s", adapter_dir, rank,
                           sorted({fit.rank for fit in fits}))
            self._failed.add(slot)
        self.apply(fits, name)

    def _usable(self, fits: list[PrefillFit]) -> bool:
        # A stored fit is taken as it is only when sound and fresh; else it is measured again.
        chosen = FitTable(fits).chosen(fits[0].rank) if fits else None
        return chosen is not None and self._problem(chosen) is None and not is_stale(
            chosen, now_ms())

    async def _stored(self, key: PrefillKey, rank: int) -> list[PrefillFit]:
        # Stored since the start by `lorafaas admin profile` or by another controller.
        async with self._sessions() as session:
            return await read_fits(session, key, rank)


async def open_prefill_profiling(settings: Settings, backend: ContainerBackend,
                                 sessions: Sessions, dispatcher: Dispatcher) -> PrefillProfiling:
    """The invoker's prefill profiling of every backbone, with the fits stored for this
    deployment loaded."""
    enabled = settings.prefill_profiling == "auto" and settings.batching != "off"
    backbones = {}
    for spec in settings.backbone_specs:
        try:
            key: PrefillKey | None = await current_key(settings, backend, spec)
        except Exception:
            # Without the image's id no stored fit can be matched: the default T(b) applies.
            logger.exception("cannot identify the runtime image %s: prefill profiles are not "
                             "used", settings.runtime_image)
            key = None
        measure = container_measure(settings, backend, spec) if enabled and key else None
        backbones[spec.name] = ProfiledBackbone(key, measure)
    profiling = PrefillProfiling(sessions, dispatcher, backbones)
    await profiling.load()
    return profiling
