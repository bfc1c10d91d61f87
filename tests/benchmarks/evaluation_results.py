"""The evaluation's measurements kept as JSON (docs/evaluation/runs.json), so that a run of
some experiments (`--experiments ... --keep`) reports them with those measured before."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_evaluation import Experiment, SystemRun


@dataclass(frozen=True)
class RecordedWorkload:
    """What the report needs of a workload replayed in an earlier run."""

    description: str
    duration_s: float


def run_as_json(run: SystemRun) -> dict[str, Any]:
    """One system's measurements as JSON values."""
    return {"system": run.system, "experiment": dataclasses.asdict(run.experiment),
            "workload": {"description": run.workload.description,
                         "duration_s": run.workload.duration_s},
            "ttft_ms": run.ttft_ms, "e2e_ms": run.e2e_ms, "kinds": dict(run.kinds),
            "errors": run.errors, "memory_mb": [list(s) for s in run.memory_mb],
            "limits_gb_s": run.limits_gb_s, "accelerator_usd": run.accelerator_usd,
            "billed_usd": run.billed_usd, "always_on_usd": run.always_on_usd,
            "slo_ms": run.slo_ms, "measured": run.measured}


def run_from_json(value: dict[str, Any]) -> SystemRun:
    """The measurements saved by `run_as_json`."""
    experiment = value["experiment"]
    return SystemRun(
        value["system"], Experiment(**{**experiment, "systems": tuple(experiment["systems"])}),
        RecordedWorkload(**value["workload"]),  # type: ignore[arg-type]
        ttft_ms=value["ttft_ms"], e2e_ms=value["e2e_ms"], kinds=Counter(value["kinds"]),
        errors=value["errors"], memory_mb=[(t, mb, int(n)) for t, mb, n in value["memory_mb"]],
        limits_gb_s=value["limits_gb_s"], accelerator_usd=value["accelerator_usd"],
        billed_usd=value["billed_usd"], always_on_usd=value["always_on_usd"],
        slo_ms=value["slo_ms"], measured=value.get("measured", ""))


def save_runs(runs: list[SystemRun], path: Path) -> None:
    """Write every run's measurements."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([run_as_json(run) for run in runs]))


def load_runs(path: Path) -> list[SystemRun]:
    """The runs saved at `path` (none if there is no file)."""
    if not path.exists():
        return []
    return [run_from_json(value) for value in json.loads(path.read_text())]


def merged(earlier: list[SystemRun], new: list[SystemRun]) -> list[SystemRun]:
    """The new runs, plus the earlier ones of experiments not run again (earlier first)."""
    rerun = {run.experiment.name for run in new}
    return [run for run in earlier if run.experiment.name not in rerun] + new
