"""What the platform adds to a warm invocation: end-to-end time minus the runtime's generation.

    .venv/bin/python tests/benchmarks/bench_warm_path.py [--calls 200] [--before DIR] [--rounds 2]

Runs the whole single-machine platform (controller, invoker, backbone server, SQLite
registry, the real Docker engine) on loopback, creates one function from the demo pirate
adapter, warms it, then times `--calls` blocking invocations
(`?blocking=true&result=true`, `max_tokens` 2). For each call: the end-to-end time the
client saw, and the runtime's generation time (prefill + decode, `total` in the timings its
/run answered, read where the invoker receives them); their difference is the platform's
overhead. (The record's metered `acceleratorSeconds` is no generation time since metering
reads the container's CPU time: it is that time over the CPUs of one accelerator, half of
it on a 2-vCPU sheet, so it is reported beside the measure but not used.) With `--before DIR` (a checkout of an older commit, say
`git worktree add /tmp/before <commit>`), the same measurement runs first on that code in a
subprocess (its own runtime image), in rounds that alternate with this code's, and the
table shows both. Writes
docs/benchmarks/warm_path.md and warm_path.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "docs" / "benchmarks"
COMMAND = ".venv/bin/python tests/benchmarks/bench_warm_path.py"
PARAMETERS = {"prompt": "Ahoy", "max_tokens": 2}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the nearest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def measure(code_root: Path, calls: int) -> dict[str, Any]:
    """Run the platform of `code_root` and time `calls` warm invocations of one function."""
    sys.path.insert(0, str(code_root / "platform"))
    import aiohttp
    import docker
    from aiohttp import web

    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.demo import build_demo_models
    from lorafaas.images.runtime_image import ensure_runtime_image
    from lorafaas.invoker.runtime_client import RuntimeClient
    from lorafaas.registry.db import upgrade
    from lorafaas.settings import load_settings, replace

    generated = _record_generation(RuntimeClient)
    home = Path(os.environ.get("LORAFAAS_HOME", "~/.lorafaas")).expanduser()
    models = build_demo_models(home / "models")
    engine = docker.from_env(timeout=600)
    image = ensure_runtime_image(engine, home=home, repo_root=code_root)
    engine.close()
    work = Path(tempfile.mkdtemp(prefix="lfw-", dir="/tmp"))
    settings = replace(load_settings({"LORAFAAS_HOME": str(work / "home")}),
                       run_dir=work / "run", shm_dir=Path("/dev/shm") / f"lfw-{work.name}",
                       runtime_image=image, backbone_dir=models.backbone_dir,
                       models_dir=models.backbone_dir.parent,
                       invoker_id=f"bench{uuid.uuid4().hex[:6]}", port=0, prewarm_min=0,
                       prewarm_max=0, preload_spare_share=0.0, prefill_profiling="off",
                       database_url=f"sqlite:///{work / 'registry.db'}")
    upgrade(settings.database_url)
    user, _, key = (await ensure_guest(settings)).partition(":")
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/api/v1/namespaces/_"
    try:
        headers = {"Authorization": aiohttp.encode_basic_auth(user, key)}
        async with aiohttp.ClientSession(headers=headers) as client:
            return await _time_calls(client, base, models.adapters["pirate"], calls, generated)
    finally:
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(settings.shm_dir, ignore_errors=True)


def _record_generation(client_class: Any) -> dict[str, float]:
    """Wrap the invoker's /run call to keep each activation's generation time (ms): the
    runtime's prefill + decode as its answer reports them."""
    generated: dict[str, float] = {}
    run = client_class.run

    async def timed_run(self: Any, payload: dict[str, Any]) -> Any:
        outcome = await run(self, payload)
        timings = outcome.timings
        generated[str(payload.get("activation_id"))] = float(
            timings.get("total", timings.get("prefill", 0.0) + timings.get("decode", 0.0)))
        return outcome

    client_class.run = timed_run
    return generated


async def _time_calls(client: Any, base: str, adapter_dir: Path, calls: int,
                      generated: dict[str, float]) -> dict[str, Any]:
    """Create the function, warm it, and time the calls (ms)."""
    import base64
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(adapter_dir.iterdir()):
            if path.is_file():
                archive.write(path, path.name)
    code = base64.b64encode(buffer.getvalue()).decode()
    async with client.put(f"{base}/actions/warm", json={"exec": {"kind": "lora", "binary": True, "code": code}},
                          params={"overwrite": "true"}) as response:
        assert response.status == 200, await response.text()
    url = f"{base}/actions/warm?blocking=true&result=true"
    for _ in range(5):  # the cold start, then a few warm calls
        async with client.post(url, json=PARAMETERS) as response:
            assert response.status == 200, await response.text()
    ids: list[str] = []
    end_to_end: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        async with client.post(url, json=PARAMETERS) as response:
            await response.read()
        end_to_end.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
        ids.append(response.headers["x-openwhisk-activation-id"])
    generation = [generated[activation_id] for activation_id in ids]
    metered, kinds, logs = [], [], 0
    for activation_id in ids:
        async with client.get(f"{base}/activations/{activation_id}") as response:
            record = await response.json()
        notes = {a["key"]: a["value"] for a in record["annotations"]}
        metered.append(notes["cost"]["acceleratorSeconds"] * 1000)
        kinds.append(notes["startKind"])
        logs += len(record["logs"])
    overhead = [e - g for e, g in zip(end_to_end, generation, strict=True)]
    return {"end_to_end": end_to_end, "generation": generation, "overhead": overhead,
            "metered": metered, "warm": kinds.count("warm"), "log_lines": logs,
            "load": [os.getloadavg()[0]]}


def summary(samples: dict[str, Any]) -> dict[str, float]:
    """p50 and p90 of each series."""
    return {f"{name}_p{q}": percentile(samples[name], q)
            for name in ("end_to_end", "generation", "overhead", "metered") for q in (50, 90)}


def run_elsewhere(code_root: Path, calls: int) -> dict[str, Any]:
    """The measurement on another checkout's code, in a subprocess of its own."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--calls", str(calls), "--code", str(code_root),
                        "--json", out.name], check=True,
                       env={**os.environ, "PYTHONPATH": str(code_root / "platform")})
        return dict(json.loads(Path(out.name).read_text()))


def write_report(runs: dict[str, dict[str, Any]], calls: int, commits: dict[str, str]) -> None:
    """The Markdown table and the plot."""
    import platform as stdlib_platform

    rows = [("| code | commit | end-to-end p50 | p90 | generation p50 | p90 | "
            "overhead p50 | p90 | metered p50 | warm calls | log lines |"),
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, samples in runs.items():
        s = summary(samples)
        rows.append(f"| {label} | `{commits[label]}` | {s['end_to_end_p50']:.1f} | "
                    f"{s['end_to_end_p90']:.1f} | {s['generation_p50']:.1f} | "
                    f"{s['generation_p90']:.1f} | **{s['overhead_p50']:.1f}** | "
                    f"{s['overhead_p90']:.1f} | {s['metered_p50']:.1f} | "
                    f"{samples['warm']}/{calls} | {samples['log_lines']} |")
    loads = ", ".join(f"{label} {' / '.join(f'{v:.1f}' for v in samples['load'])}"
                      for label, samples in runs.items())
    text = "\n".join([
        "# The warm path: what the platform adds to a warm invocation", "",
        (f"`{COMMAND}` ({calls} blocking calls `?blocking=true&result=true` of one warm "
        f"function, demo backbone with the pirate adapter, `{json.dumps(PARAMETERS)}`, SQLite "
        "registry, real Docker engine). Milliseconds. *Generation* is the runtime's "
        "prefill + decode as its /run answer reports them; *overhead* is end-to-end minus "
        "generation, per call. *Metered* is the record's `cost.acceleratorSeconds` (the "
        "container's CPU time over the accelerator's vCPUs: not a generation time); *log "
        "lines*: in all the records."), "",
        *rows, "",
        (f"Machine: {stdlib_platform.processor() or stdlib_platform.machine()}, "
        f"{os.cpu_count()} CPUs, {stdlib_platform.platform()}; shared with other work (load "
        f"average at the end of each round: {loads}), so absolute figures vary between runs: "
        "compare the rows of one run."), ""])
    (OUT_DIR / "warm_path.md").write_text(text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, samples in runs.items():
        axis.hist(samples["overhead"], bins=40, alpha=0.6, label=f"{label} (overhead)")
    axis.set_xlabel("end-to-end minus generation (ms)")
    axis.set_ylabel("calls")
    axis.set_title(f"Warm-path overhead, {calls} calls")
    axis.legend()
    figure.tight_layout()
    figure.savefig(OUT_DIR / "warm_path.png", dpi=100)


def commit_of(root: Path) -> str:
    """The short commit of a checkout (with `+` when it has changes)."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "platform"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return head + ("+" if dirty else "")


def main() -> None:
    """Measure, then report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per code, alternating (the calls are split among them)")
    parser.add_argument("--code", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # a subprocess's answer
    args = parser.parse_args()
    if args.json is not None:
        args.json.write_text(json.dumps(asyncio.run(measure(args.code.resolve(), args.calls))))
        return
    codes = {"this": REPO_ROOT} if args.before is None else {"before": args.before.resolve(),
                                                             "after": REPO_ROOT}
    commits = {label: commit_of(root) for label, root in codes.items()}
    runs: dict[str, dict[str, Any]] = {}
    # Rounds alternate between the two codes, so that both see the machine's load alike.
    for round_no in range(args.rounds):
        calls = args.calls // args.rounds + (round_no < args.calls % args.rounds)
        for label, root in codes.items():
            samples = run_elsewhere(root, calls)
            if label not in runs:
                runs[label] = samples
                continue
            for key, value in samples.items():
                runs[label][key] += value
    for label, samples in runs.items():
        print(label, {k: round(v, 2) for k, v in summary(samples).items()})
    write_report(runs, args.calls, commits)


if __name__ == "__main__":
    main()
