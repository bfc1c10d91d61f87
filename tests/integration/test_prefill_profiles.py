"""Prefill profiles in the registry (SQLite and PostgreSQL), and the controller's profiling
service over it with a fake profiler: stored fits apply, a stale key profiles again, one
profile at a time, a failure waits for the next start."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.prefill_fits import PrefillFit, PrefillKey
from lorafaas.invoker.prefill_profiling import PrefillProfiling, ProfiledBackbone
from lorafaas.invoker.prefill_runner import ProfileReport, ProfilingFailed
from lorafaas.invoking.activations import FunctionRef
from lorafaas.names import QualifiedName
from lorafaas.registry.clock import now_ms
from lorafaas.registry.db import downgrade, make_engine, make_sessions, sync_url, upgrade
from lorafaas.registry.models import PrefillProfileRecord
from lorafaas.registry.prefill_profiles import read_fits, store_fits
from lorafaas.wire.prefill_fit import PrefillModel, PrefillProfile
from tests.integration.test_registry import table_names

KEY = PrefillKey("demo-backbone", "d" * 64, "sha256:" + "a" * 64,
                 "Some CPU, 2 cores, 1 torch threads (x86_64)")
DEFAULT = PrefillModel(35.0, 16.0)


def profile(prompt_length: int, t0_ms: float, alpha_ms: float = 10.0) -> PrefillProfile:
    """A fit measured at b = 1…16, exactly linear."""
    model = PrefillModel(t0_ms, alpha_ms)
    return PrefillProfile(prompt_length, [(b, model.time(b)) for b in range(1, 17)], model, 1.0)


NOW = now_ms()  # fits measured now are fresh for the test's length


def fits(rank: int, t0_ms: float, measured_ms: int = NOW) -> list[PrefillFit]:
    """A rank's fits at prompt lengths 32 and 128 (the longer one 3 ms slower)."""
    return [PrefillFit(rank, profile(32, t0_ms), measured_ms),
            PrefillFit(rank, profile(128, t0_ms + 3), measured_ms)]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test's registry."""
    engine = make_engine(database_url)
    yield make_sessions(engine)
    await engine.dispose()


async def store(sessions: async_sessionmaker[AsyncSession], key: PrefillKey,
                stored: list[PrefillFit]) -> None:
    """Store fits in their own transaction."""
    async with sessions() as session, session.begin():
        await store_fits(session, key, stored)


async def read(sessions: async_sessionmaker[AsyncSession], key: PrefillKey,
               rank: int | None = None) -> list[PrefillFit]:
    """The fits stored under a key."""
    async with sessions() as session:
        return await read_fits(session, key, rank)


# The registry


def test_migration_0005_adds_prefill_profiles_and_removes_them(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0004")
    assert "prefill_profiles" not in table_names(empty_database_url)
    upgrade(empty_database_url, "0005")
    assert "prefill_profiles" in table_names(empty_database_url)
    downgrade(empty_database_url, "0004")
    assert "prefill_profiles" not in table_names(empty_database_url)
    assert "artifact_profiles" in table_names(empty_database_url)


async def test_fits_are_read_back_under_their_key_only(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await store(sessions, KEY, fits(16, 50.0) + fits(8, 30.0))
    stored = await read(sessions, KEY)
    assert [(f.rank, f.profile.prompt_length) for f in stored] == [(8, 32), (8, 128), (16, 32),
                                                                   (16, 128)]
    assert stored[:2] == fits(8, 30.0)  # samples, fit, R² and time come back as stored
    assert [f.rank for f in await read(sessions, KEY, rank=16)] == [16, 16]
    for stale in (dataclasses.replace(KEY, backbone_digest="e" * 64),
                  dataclasses.replace(KEY, image="sha256:" + "b" * 64),
                  dataclasses.replace(KEY, machine="Some CPU, 2 cores, 2 torch threads (x86_64)"),
                  dataclasses.replace(KEY, backbone="other-backbone")):
        assert await read(sessions, stale) == []


async def test_storing_a_fit_again_replaces_it(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await store(sessions, KEY, fits(8, 30.0, measured_ms=1000))
    await store(sessions, KEY, [PrefillFit(8, profile(128, 40.0, alpha_ms=12.0), 2000)])
    stored = {f.profile.prompt_length: f for f in await read(sessions, KEY)}
    assert stored[32] == fits(8, 30.0, measured_ms=1000)[0]  # untouched
    assert stored[128] == PrefillFit(8, profile(128, 40.0, alpha_ms=12.0), 2000)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PrefillProfileRecord)) == 2


def test_prefill_rows_are_unique_per_key(database_url: str) -> None:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    insert = text("INSERT INTO prefill_profiles (backbone, backbone_digest, image, machine, "
                  "adapter_rank, prompt_length, t0_ms, alpha_ms, r2, samples, measured_ms) "
                  "VALUES ('b', 'd', 'i', 'm', 8, 32, 1, 1, 1, '[]', 1)")
    try:
        with engine.begin() as connection:
            connection.execute(insert)
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert)
    finally:
        engine.dispose()


# The controller's profiling service


class Dispatcher:
    """Records the prefill models set per function key."""

    def __init__(self) -> None:
        self.config = BatchingConfig(enabled=True, default_model=DEFAULT)
        self.models: dict[str, PrefillModel] = {}

    def set_prefill_model(self, function_key: str, model: PrefillModel) -> None:
        self.models[function_key] = model


class Profiler:
    """A fake profiler: reports the fits of the adapter's rank (its folder's name)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[Path] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, adapter_dir: Path) -> ProfileReport:
        self.calls.append(adapter_dir)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            if self.fail:
                raise ProfilingFailed("the profiler failed (exit status 1)")
            rank = int(adapter_dir.name.removeprefix("rank"))
            return ProfileReport(rank, "Some CPU", [f.profile for f in fits(rank, 20.0 + rank)])
        finally:
            self.running -= 1


def function(key: str, rank: int, adapter_dir: Path = Path("/absent"),
             backbone: str = "demo-backbone") -> FunctionRef:
    """A function whose adapter (in `adapter_dir`) has `rank`, on `backbone`."""
    path = key.split("@")[0]  # a bare key ("a") is a function of the guest namespace
    name = QualifiedName.from_path(path if "/" in path else f"guest/{path}")
    return FunctionRef(key=key, name=name, adapter_dir=adapter_dir, memory_mb=256,
                       backbone=backbone, adapter_rank=rank)


@pytest.fixture
def adapters(tmp_path: Path) -> dict[int, Path]:
    """Adapter folders of ranks 8 and 16."""
    folders = {rank: tmp_path / f"rank{rank}" for rank in (8, 16)}
    for folder in folders.values():
        folder.mkdir()
    return folders


async def started(sessions: async_sessionmaker[AsyncSession], key: PrefillKey,
                  dispatcher: Dispatcher, profiler: Profiler | None) -> PrefillProfiling:
    """A profiling service as the controller starts it (stored fits loaded)."""
    service = PrefillProfiling(sessions, dispatcher,  # type: ignore[arg-type]
                               {key.backbone: ProfiledBackbone(key, profiler)})  # type: ignore[arg-type]
    await service.load()
    return service


async def test_stored_fits_size_batches_from_the_start_without_profiling(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    await store(sessions, KEY, fits(8, 30.0, measured_ms=NOW - 1234))
    dispatcher, profiler = Dispatcher(), Profiler()
    service = await started(sessions, KEY, dispatcher, profiler)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        await service.idle()
    assert profiler.calls == []
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(33.0, 10.0)}  # prompt 128
    assert service.describe(function("a", 8)) == {
        "source": "profiled", "adapterRank": 8, "t0Ms": 33.0, "alphaMs": 10.0, "r2": 1.0,
        "promptLength": 128, "measuredAt": NOW - 1234}


def loaded(rank: int, measured_ms: int = NOW) -> list[PrefillFit]:
    """Fits measured on a loaded machine: T0 1,463 ms, α 1,228 ms (over 20× the default)."""
    return [PrefillFit(rank, profile(length, 1463.0, 1228.0), measured_ms) for length in (32, 128)]


async def test_an_implausible_stored_fit_is_not_applied_and_is_measured_again(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    await store(sessions, KEY, loaded(8))
    dispatcher, profiler = Dispatcher(), Profiler()
    profiler.release.clear()
    service = await started(sessions, KEY, dispatcher, profiler)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        assert dispatcher.models == {}  # the default T(b) sizes the batches meanwhile
        shown = service.describe(function("a", 8))
        assert (shown["source"], shown["t0Ms"]) == ("default", 35.0)
        assert "T0 1463.0 ms over" in shown["rejectedFit"]
        profiler.release.set()
        await service.idle()
    assert profiler.calls == [adapters[8]]
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(31.0, 10.0)}
    assert [f.profile for f in await read(sessions, KEY)] == [f.profile for f in fits(8, 28.0)]
    assert "queued for re-measurement" in caplog.text


async def test_a_fit_implausible_again_keeps_the_default_and_is_not_retried_in_a_loop(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    await store(sessions, KEY, loaded(8))
    dispatcher = Dispatcher()

    async def still_loaded(adapter_dir: Path) -> ProfileReport:
        calls.append(adapter_dir)
        return ProfileReport(8, "Some CPU", [f.profile for f in loaded(8)])

    calls: list[Path] = []
    service = await started(sessions, KEY, dispatcher, still_loaded)  # type: ignore[arg-type]
    async with service.running():
        for _ in range(3):
            service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
            await service.idle()
    assert calls == [adapters[8]]
    assert dispatcher.models == {}
    assert "not applied" in caplog.text


async def test_a_stale_fit_applies_until_its_re_measurement_replaces_it(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    await store(sessions, KEY, fits(8, 30.0, measured_ms=NOW - 30 * 24 * 3600 * 1000))
    dispatcher, profiler = Dispatcher(), Profiler()
    profiler.release.clear()
    service = await started(sessions, KEY, dispatcher, profiler)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(33.0, 10.0)}
        profiler.release.set()
        await service.idle()
    assert profiler.calls == [adapters[8]]
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(31.0, 10.0)}


@pytest.mark.parametrize("change", [{"backbone_digest": "e" * 64},
                                    {"image": "sha256:" + "b" * 64},
                                    {"machine": "Other CPU, 8 cores, 4 torch threads (x86_64)"}],
                         ids=["checkpoint", "image", "machine"])
async def test_a_changed_key_finds_no_fit_and_profiles_the_rank_again(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path],
        change: dict[str, str]) -> None:
    await store(sessions, KEY, fits(8, 30.0))
    new_key = dataclasses.replace(KEY, **change)
    dispatcher, profiler = Dispatcher(), Profiler()
    profiler.release.clear()
    service = await started(sessions, new_key, dispatcher, profiler)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        assert dispatcher.models == {}  # the default T(b) until the profile is done
        default = service.describe(function("a", 8))
        assert (default["source"], default["t0Ms"], default["alphaMs"]) == ("default", 35.0, 16.0)
        profiler.release.set()
        await service.idle()
    assert profiler.calls == [adapters[8]]
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(31.0, 10.0)}
    assert [(f.rank, f.profile) for f in await read(sessions, new_key)] == [
        (f.rank, f.profile) for f in fits(8, 28.0)]
    assert await read(sessions, KEY) == fits(8, 30.0)  # the old key's rows stay as they were
    assert service.describe(function("a", 8))["source"] == "profiled"


async def test_one_profile_at_a_time_and_one_per_rank(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    dispatcher, profiler = Dispatcher(), Profiler()
    profiler.release.clear()
    service = await started(sessions, KEY, dispatcher, profiler)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        service.function_used(function("guest/b@0.0.1:y", 8, adapters[8]))
        service.function_used(function("guest/c@0.0.1:z", 16, adapters[16]))
        await asyncio.sleep(0.05)
        assert [service.describe(function(n, r))["profiling"] for n, r in
                (("a", 8), ("c", 16))] == ["running", "queued"]
        profiler.release.set()
        await service.idle()
    assert profiler.calls == [adapters[8], adapters[16]]
    assert profiler.most_at_once == 1
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(31.0, 10.0),
                                 "guest/b@0.0.1:y": PrefillModel(31.0, 10.0),
                                 "guest/c@0.0.1:z": PrefillModel(39.0, 10.0)}


async def test_a_failed_profile_is_retried_only_at_the_next_start(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    dispatcher, failing = Dispatcher(), Profiler(fail=True)
    service = await started(sessions, KEY, dispatcher, failing)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        await service.idle()
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        await service.idle()
    assert failing.calls == [adapters[8]]
    assert "profiling the prefill of adapter rank 8 failed" in caplog.text
    assert service.describe(function("a", 8))["profiling"] == "failed"
    assert dispatcher.models == {}

    profiler = Profiler()
    restarted = await started(sessions, KEY, Dispatcher(), profiler)
    async with restarted.running():
        restarted.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        await restarted.idle()
    assert profiler.calls == [adapters[8]]
    assert restarted.describe(function("a", 8))["source"] == "profiled"


async def test_a_fit_stored_meanwhile_is_used_instead_of_profiling(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    dispatcher, profiler = Dispatcher(), Profiler()
    service = await started(sessions, KEY, dispatcher, profiler)
    await store(sessions, KEY, fits(8, 30.0))  # by `lorafaas admin profile`, after the start
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        await service.idle()
    assert profiler.calls == []
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(33.0, 10.0)}


async def test_with_profiling_off_stored_fits_apply_and_nothing_is_profiled(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    await store(sessions, KEY, fits(8, 30.0))
    dispatcher = Dispatcher()
    service = await started(sessions, KEY, dispatcher, None)
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        service.function_used(function("guest/c@0.0.1:z", 16, adapters[16]))
        await service.idle()
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(33.0, 10.0)}
    assert service.describe(function("c", 16)) == {
        "source": "default", "adapterRank": 16, "t0Ms": 35.0, "alphaMs": 16.0,
        "profiling": "off"}


async def test_a_fit_holds_for_its_own_backbone_only(
        sessions: async_sessionmaker[AsyncSession], adapters: dict[int, Path]) -> None:
    other_key = dataclasses.replace(KEY, backbone="other", backbone_digest="f" * 64)
    await store(sessions, KEY, fits(8, 30.0))
    dispatcher, demo_profiler, other_profiler = Dispatcher(), Profiler(), Profiler()
    service = PrefillProfiling(sessions, dispatcher, {  # type: ignore[arg-type]
        KEY.backbone: ProfiledBackbone(KEY, demo_profiler),  # type: ignore[arg-type]
        "other": ProfiledBackbone(other_key, other_profiler)})  # type: ignore[arg-type]
    await service.load()
    async with service.running():
        service.function_used(function("guest/a@0.0.1:x", 8, adapters[8]))
        service.function_used(function("guest/b@0.0.1:y", 8, adapters[8], "other"))
        await service.idle()
    assert demo_profiler.calls == [] and other_profiler.calls == [adapters[8]]
    assert dispatcher.models == {"guest/a@0.0.1:x": PrefillModel(33.0, 10.0),
                                 "guest/b@0.0.1:y": PrefillModel(31.0, 10.0)}
    assert [f.profile.model for f in await read(sessions, other_key, 8)] == [
        PrefillModel(28.0, 10.0), PrefillModel(31.0, 10.0)]
    # No backbone annotation: the first backbone's fit; an unserved one: none at all.
    assert service.describe(function("c", 8, backbone=""))["t0Ms"] == 33.0
    assert service.describe(function("d", 8, backbone="gone"))["profiling"] == "off"
