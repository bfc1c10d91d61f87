"""The one-off profiler container against a fake backend: its spec, its report, and that it
is removed however the run ends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lorafaas.invoker import prefill_runner
from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER, ContainerInfo, ContainerSpec
from lorafaas.invoker.prefill_runner import (
    OUTPUT_TARGET,
    PROFILE_LABEL,
    REPORT_NAME,
    ProfileOptions,
    ProfilerConfig,
    ProfilingFailed,
    run_profiler,
)

REPORT = {"backbone": "backbone", "adapter_rank": 8, "dtype": "float32", "machine": "a CPU",
          "profiles": [{"prompt_length": 32, "t0_ms": 30.0, "alpha_ms": 10.0, "r2": 0.99,
                        "samples": [[1, 30.5], [2, 39.5]]}]}


class FakeBackend:
    """Runs no container: `start` writes the report the test chose into the output mount."""

    def __init__(self, exit_code: int | None = 0, report: object = REPORT) -> None:
        self.exit_code = exit_code  # None: the container runs for ever
        self.report = report
        self.specs: list[ContainerSpec] = []
        self.removed: list[str] = []
        self.adapter_files: list[str] = []

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        self.specs.append(spec)
        mounts = {m.target: m.source for m in spec.mounts}
        self.adapter_files = sorted(p.name for p in mounts["/adapter"].iterdir())
        if self.report is not None:
            (mounts[OUTPUT_TARGET] / REPORT_NAME).write_text(json.dumps(self.report))
        return ContainerInfo(id="c1", name=spec.name, pid=1)

    def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    def is_running(self, container_id: str) -> bool:
        return self.exit_code is None

    def exit_status(self, container_id: str) -> tuple[int | None, bool]:
        return self.exit_code, False

    def logs(self, container_id: str, since: float, until: float) -> list[str]:
        return ["Traceback: the profiler broke"]

    def list_labelled(self, invoker_id: str) -> list[str]:
        return []

    def image_id(self, image: str) -> str:
        return "sha256:" + "a" * 64


@pytest.fixture
def config(tmp_path: Path) -> ProfilerConfig:
    """A profiler on a checkpoint folder, 2 threads, its run folder in tmp_path."""
    (tmp_path / "backbone").mkdir()
    return ProfilerConfig(invoker_id="inv0", image="runtime:latest", run_dir=tmp_path / "run",
                          publish_dir=tmp_path / "backbone", memory_mb=2048, pids_limit=256,
                          torch_threads=2)


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    """An adapter folder."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_text("x")
    return folder


def leftover_folders(config: ProfilerConfig) -> list[Path]:
    """Run folders of profiler containers still on disk."""
    return list((config.run_dir / "p").iterdir())


async def test_the_profiler_runs_hardened_and_its_report_is_read(
        config: ProfilerConfig, adapter_dir: Path) -> None:
    backend = FakeBackend()
    report = await run_profiler(backend, config, adapter_dir, ProfileOptions(prompt_lengths=(32,)))
    assert (report.adapter_rank, report.machine) == (8, "a CPU")
    assert [(p.prompt_length, p.samples, p.model.t0_ms) for p in report.profiles] == [
        (32, [(1, 30.5), (2, 39.5)], 30.0)]
    [spec] = backend.specs
    assert spec.entrypoint == ["python3", "-m", "lorafaas.runtime.profiler"]
    assert spec.command is not None
    assert " ".join(spec.command) == ("--backbone /backbone --adapter /adapter --json "
                                      f"{OUTPUT_TARGET}/{REPORT_NAME} --max-batch 16 --repeats 3 "
                                      "--prompt-lengths 32 --threads 2")
    assert spec.labels == {LABEL_INVOKER: "inv0", LABEL_ACTION: PROFILE_LABEL}
    assert (spec.user, spec.memory_mb, spec.pids_limit) == ("65534:65534", 2048, 256)
    assert {(m.target, m.read_only) for m in spec.mounts} == {
        ("/backbone", True), ("/adapter", True), (OUTPUT_TARGET, False)}
    assert next(m.source for m in spec.mounts if m.target == "/backbone") == \
        config.publish_dir
    assert backend.adapter_files == ["adapter_config.json", "adapter_model.safetensors"]
    assert backend.removed == [spec.name]
    assert leftover_folders(config) == []


async def test_a_failed_profiler_is_reported_with_its_logs_and_removed(
        config: ProfilerConfig, adapter_dir: Path) -> None:
    backend = FakeBackend(exit_code=1, report=None)
    with pytest.raises(ProfilingFailed, match=r"exit status 1\)[\s\S]*the profiler broke"):
        await run_profiler(backend, config, adapter_dir, ProfileOptions())
    assert backend.removed == [backend.specs[0].name]
    assert leftover_folders(config) == []


async def test_a_malformed_report_fails(config: ProfilerConfig, adapter_dir: Path) -> None:
    backend = FakeBackend(report={"adapter_rank": 8, "machine": "m", "profiles": [{}]})
    with pytest.raises(ProfilingFailed, match="malformed"):
        await run_profiler(backend, config, adapter_dir, ProfileOptions())
    assert backend.removed == [backend.specs[0].name]


async def test_a_profiler_over_its_time_is_removed(config: ProfilerConfig, adapter_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefill_runner, "POLL_S", 0.01)
    backend = FakeBackend(exit_code=None)
    with pytest.raises(ProfilingFailed, match="more than 0 s"):
        await run_profiler(backend, config, adapter_dir, ProfileOptions(timeout_s=0.05))
    assert backend.removed == [backend.specs[0].name]
    assert leftover_folders(config) == []


async def test_a_cancelled_profile_removes_its_container(
        config: ProfilerConfig, adapter_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefill_runner, "POLL_S", 0.01)
    backend = FakeBackend(exit_code=None)
    task = asyncio.create_task(run_profiler(backend, config, adapter_dir, ProfileOptions()))
    while not backend.specs:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.removed == [backend.specs[0].name]
    assert leftover_folders(config) == []
