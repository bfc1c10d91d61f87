"""Run the prefill profiler where functions run: a one-off container of the runtime image.

The container is hardened as a function container is (the backend's: no network,
read-only root, no capabilities, memory and pids limits, unprivileged user) and labelled
with this invoker's id, so that the orphan clean-up at start and stop removes it should the
invoker die meanwhile. It mounts what the backbone server published and an adapter folder of the
wanted rank read-only, and a folder for the JSON report read-write, and runs
`python -m lorafaas.runtime.profiler` at the torch thread count of function containers.
The container and its folders are removed however the run ends (exit, failure, timeout,
cancellation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.invoker.backend import (
    LABEL_ACTION,
    LABEL_INVOKER,
    ContainerBackend,
    ContainerInfo,
    ContainerSpec,
    Mount,
)
from lorafaas.invoker.containers import ContainerFolders
from lorafaas.wire.prefill_fit import PrefillProfile

logger = logging.getLogger(__name__)

PROFILE_LABEL = "(prefill profile)"
OUTPUT_TARGET = "/lorafaas/out"
REPORT_NAME = "profile.json"
POLL_S = 0.5
LOG_TAIL_LINES = 20


class ProfilingFailed(Exception):
    """The profiler's container did not produce a usable report."""


@dataclass(frozen=True)
class ProfileOptions:
    """What the profiler measures: b = 1…max_batch at each prompt length."""

    prompt_lengths: tuple[int, ...] = (32, 128)
    max_batch: int = 16
    repeats: int = 3  # timed sweeps; the median is kept
    timeout_s: float = 1200.0  # loading the backbone plus every sweep


@dataclass(frozen=True)
class ProfilerConfig:
    """Where and how the profiler's container runs (as the pool's containers do)."""

    invoker_id: str
    image: str
    run_dir: Path
    publish_dir: Path  # what the backbone server published (containers read only that)
    memory_mb: int
    pids_limit: int
    torch_threads: int  # 0: torch's default


@dataclass(frozen=True)
class ProfileReport:
    """What the profiler reported: the adapter's rank, its machine, a fit per prompt length."""

    adapter_rank: int
    machine: str
    profiles: list[PrefillProfile]


def profiler_arguments(options: ProfileOptions, torch_threads: int) -> list[str]:
    """The profiler's command line inside the container."""
    arguments = ["--backbone", "/backbone", "--adapter", "/adapter",
                 "--json", f"{OUTPUT_TARGET}/{REPORT_NAME}",
                 "--max-batch", str(options.max_batch), "--repeats", str(options.repeats),
                 "--prompt-lengths", *(str(length) for length in options.prompt_lengths)]
    if torch_threads > 0:
        arguments += ["--threads", str(torch_threads)]
    return arguments


def profiler_spec(config: ProfilerConfig, folders: ContainerFolders,
                  options: ProfileOptions) -> ContainerSpec:
    """The one-off container: the profiler instead of the runtime server."""
    return ContainerSpec(
        name=f"lorafaas-{config.invoker_id}-{folders.root.name}", image=config.image,
        mounts=[Mount(config.publish_dir, "/backbone"), Mount(folders.adapter, "/adapter"),
                Mount(folders.io, OUTPUT_TARGET, read_only=False)],
        environment={}, labels={LABEL_INVOKER: config.invoker_id, LABEL_ACTION: PROFILE_LABEL},
        memory_mb=config.memory_mb, pids_limit=config.pids_limit,
        entrypoint=["python3", "-m", "lorafaas.runtime.profiler"],
        command=profiler_arguments(options, config.torch_threads))


def parse_report(data: Any) -> ProfileReport:
    """The profiler's JSON report; ProfilingFailed when it is not one."""
    try:
        profiles = [PrefillProfile.from_dict(p) for p in data["profiles"]]
        report = ProfileReport(int(data["adapter_rank"]), str(data["machine"]), profiles)
    except (KeyError, TypeError, ValueError) as error:
        raise ProfilingFailed(f"the profiler's report is malformed: {error!r}") from error
    if not profiles:
        raise ProfilingFailed("the profiler's report holds no profile")
    return report


async def run_profiler(backend: ContainerBackend, config: ProfilerConfig, adapter_dir: Path,
                       options: ProfileOptions) -> ProfileReport:
    """Profile the backbone with the adapter in a one-off container; remove it afterwards."""
    folders = ContainerFolders(config.run_dir / "p" / uuid.uuid4().hex[:10])
    folders.create()
    spec = profiler_spec(config, folders, options)
    try:
        folders.fill_adapter(adapter_dir)
        started = time.time()
        info = await _start(backend, spec)
        logger.info("prefill profiler %s started for adapter %s", spec.name, adapter_dir.name)
        await _wait_for_success(backend, info, started, options.timeout_s)
        return parse_report(_read_json(folders.io / REPORT_NAME))
    finally:
        # By name: it is known even when the start was cut short.
        await asyncio.to_thread(backend.remove, spec.name)
        folders.remove()


async def _start(backend: ContainerBackend, spec: ContainerSpec) -> ContainerInfo:
    start = asyncio.ensure_future(asyncio.to_thread(backend.start, spec))
    try:
        return await asyncio.shield(start)
    except asyncio.CancelledError:
        # The engine call goes on in its thread: let it end, so that the container it
        # creates exists when the caller removes it, instead of appearing just after.
        await asyncio.wait([start])
        raise


async def _wait_for_success(backend: ContainerBackend, info: ContainerInfo, started: float,
                            timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        code, oom = await _exit_status(backend, info)
        if code == 0:
            return
        if code is not None or oom:
            reason = "killed for memory" if oom else f"exit status {code}"
            raise ProfilingFailed(f"the profiler failed ({reason}):\n"
                                  + await _log_tail(backend, info, started))
        if time.monotonic() > deadline:
            raise ProfilingFailed(f"the profiler took more than {timeout_s:.0f} s:\n"
                                  + await _log_tail(backend, info, started))
        await asyncio.sleep(POLL_S)


async def _exit_status(backend: ContainerBackend, info: ContainerInfo) -> tuple[int | None, bool]:
    """Exit code (None while it runs) and OOM flag; ProfilingFailed when it is gone."""
    status = await asyncio.to_thread(backend.exit_status, info.id)
    if status[0] is None and not await asyncio.to_thread(backend.is_running, info.id):
        status = await asyncio.to_thread(backend.exit_status, info.id)  # it may just have ended
        if status[0] is None:
            raise ProfilingFailed(f"the profiler's container {info.name} is gone")
    return status


async def _log_tail(backend: ContainerBackend, info: ContainerInfo, started: float) -> str:
    lines = await asyncio.to_thread(backend.logs, info.id, started - 1, time.time() + 1)
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ProfilingFailed(f"the profiler wrote no readable report: {error}") from error
