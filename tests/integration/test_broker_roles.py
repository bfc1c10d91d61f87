"""The multi-machine roles on one machine, all real: one nats-server, one PostgreSQL
registry, one `lorafaas serve --role controller` and two `--role invoker` processes (each
with its own backbone server, run and shared-memory folders) on loopback, Docker.

One set-up serves the module: invocations of every kind land on both invokers; then one
invoker is killed with SIGKILL under non-blocking load, and every accepted activation ends
recorded exactly once, and its restart leaves none of the dead run's containers.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from lorafaas.balancer.ring import probe_order, stable_hash
from lorafaas.invoker.backend import LABEL_INVOKER
from lorafaas.registry.db import sync_url, upgrade
from tests.db_fixtures import fresh_postgres_database, postgres_server_url
from tests.nats_fixtures import free_port, nats_server

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
INVOKERS = ("b19a", "b19b")  # sorted: placement indexes them in this order
# f0 and f2 are homed on the second invoker, f1 and f3 on the first (asserted below).
FUNCTIONS = {"f0": "pirate", "f1": "shout", "f2": "pirate", "f3": "shout"}
MAX_TOKENS = 6
DEADLINE_S = 240


@dataclass
class Role:
    """One `lorafaas serve` process of the set-up."""

    name: str
    env: dict[str, str]
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it, its output in its log."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lorafaas.cli", "serve", *self.args], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: its containers and backbone server with it) and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Cluster:
    """The set-up: its URLs, its processes and the guest's credential."""

    api: str
    database_url: str
    controller: Role
    invokers: dict[str, Role]
    credential: str = ""
    folders: list[Path] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 300) -> tuple[int, Any, dict[str, str]]:
        token = base64.b64encode(self.credential.encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method, headers={
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
                return (response.status, json.loads(raw) if "json" in kind else raw.decode(),
                        dict(response.headers))
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read()), dict(error.headers)

    def record(self, activation_id: str) -> dict[str, Any]:
        """The activation's record once stored (a generous deadline: cores are shared)."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            status, body, _ = self.request("GET", f"/api/v1/namespaces/_/activations/"
                                                  f"{activation_id}")
            if status == 200:
                return dict(body)
            time.sleep(0.5)
        raise AssertionError(f"activation {activation_id} was never recorded")


def wait_until(check: Any, what: str, role: Role, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert role.process is not None and role.process.poll() is None, \
            f"{role.name} exited: {role.tail()}"
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not in {timeout} s: {role.tail()}")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def labelled_containers(docker_client: Any, invoker_id: str) -> set[str]:
    """The engine's containers of the invoker, running or not."""
    return {c.name for c in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_INVOKER}={invoker_id}"})}


def _env(base: dict[str, str], **values: str) -> dict[str, str]:
    return {**base, **{f"LORAFAAS_{k.upper()}": v for k, v in values.items()}}


def _invoker(name: str, base: dict[str, str], root: Path) -> Role:
    run_dir = Path(tempfile.mkdtemp(prefix=f"lf-{name}-", dir="/tmp"))
    shm = Path("/dev/shm") / f"lorafaas-{name}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = _env(base, invoker_id=name, run_dir=str(run_dir), shm_dir=str(shm), port=str(port))
    return Role(name, env, ["--role", "invoker"], root / f"{name}.log")


def _invoker_health(role: Role) -> Any:
    return get_json(f"http://127.0.0.1:{role.env['LORAFAAS_PORT']}/health")


@pytest.fixture(scope="module")
def cluster(demo_models: Any, runtime_image: str) -> Iterator[Cluster]:
    with fresh_postgres_database(postgres_server_url()) as database_url, \
            nats_server() as broker_url:
        upgrade(database_url)
        root = Path(tempfile.mkdtemp(prefix="lorafaas-roles-"))
        base = _env({k: v for k, v in os.environ.items() if not k.startswith("LORAFAAS_")},
                    home=str(root / "home"), database_url=database_url,
                    broker_url=broker_url, backbone=str(demo_models.backbone_dir),
                    models_dir=str(demo_models.backbone_dir.parent),
                    runtime_image=runtime_image, prewarm_min="0", prewarm_max="0",
                    preload_spare_share="0", prefill_profiling="off",
                    # The test reads which invoker ran a function from its own containers.
                    shared_containers="off")
        base["PYTHONPATH"] = str(REPO / "platform")
        port = free_port()
        controller = Role("controller", _env(base, port=str(port),
                                             run_dir=str(root / "controller-run"),
                                             shm_dir=str(root / "controller-shm")),
                          ["--role", "controller"], root / "controller.log")
        cluster = Cluster(f"http://127.0.0.1:{port}", database_url, controller,
                          {name: _invoker(name, base, root) for name in INVOKERS},
                          folders=[root])
        try:
            controller.start()
            line = wait_until(lambda: next((l for l in controller.log.read_text().splitlines()
                                            if "guest namespace key (AUTH):" in l), None),
                              "the controller's guest key", controller)
            cluster.credential = line.split("(AUTH):", 1)[1].strip()
            wait_until(lambda: get_json(cluster.api + "/api/v1") is not None,
                       "the controller's API", controller)
            for role in cluster.invokers.values():
                role.start()
            for role in cluster.invokers.values():
                wait_until(lambda r=role: (_invoker_health(r) or {}).get("status") == "ok",
                           f"{role.name}'s health", role)
            yield cluster
        finally:
            for role in [*cluster.invokers.values(), controller]:
                role.stop()
            for role in cluster.invokers.values():
                shutil.rmtree(role.env["LORAFAAS_RUN_DIR"], ignore_errors=True)
                shutil.rmtree(role.env["LORAFAAS_SHM_DIR"], ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def test_the_functions_are_homed_on_both_invokers() -> None:
    homes = {name: INVOKERS[next(probe_order(stable_hash("guest", f"guest/{name}"),
                                             len(INVOKERS)))]
             for name in FUNCTIONS}
    assert set(homes.values()) == set(INVOKERS)  # the set-up below relies on it


def test_a_controller_without_broker_or_postgres_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAFAAS_")}
    env.update(PYTHONPATH=str(REPO / "platform"), LORAFAAS_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "lorafaas.cli", "serve", "--role",
                           "controller"], check=False, env=env, capture_output=True, text=True,
                          timeout=120,
                          cwd=REPO)
    assert done.returncode != 0
    assert "LORAFAAS_BROKER_URL" in done.stderr and "LORAFAAS_DATABASE_URL" in done.stderr
    assert not (tmp_path / "lorafaas.db").exists()  # refused before anything was made


def test_invocations_of_every_kind_land_on_both_invokers(cluster: Cluster, make_zip: Any,
                                                         demo_models: Any,
                                                         docker_client: Any) -> None:
    for name, adapter in FUNCTIONS.items():
        code = base64.b64encode(make_zip(demo_models.adapters[adapter])).decode()
        status, body, _ = cluster.request("PUT", f"/api/v1/namespaces/_/actions/{name}",
                                          {"exec": {"kind": "lora", "code": code}})
        assert status == 200, body
    for name in FUNCTIONS:
        status, record, _ = cluster.request(
            "POST", f"/api/v1/namespaces/_/actions/{name}?blocking=true",
            {"prompt": "Ahoy", "max_tokens": MAX_TOKENS, "temperature": 0})
        if status == 202:  # the blocking wait ran out (a cold start on a loaded machine)
            status, record = 200, cluster.record(record["activationId"])
        assert status == 200, record
        assert record["response"]["statusCode"] == 0, record
        assert record["response"]["result"]["usage"]["completion_tokens"] >= 1
    status, streamed, headers = cluster.request("POST", "/v1/completions", {
        "model": "f1", "prompt": "Ahoy", "stream": True, "max_tokens": MAX_TOKENS,
        "temperature": 0})
    assert status == 200
    chunks = [json.loads(line[len("data: "):]) for line in streamed.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(c["choices"][0]["text"] for c in chunks)
    assert cluster.record(headers["x-openwhisk-activation-id"])["response"]["statusCode"] == 0
    accepted = []
    for name in FUNCTIONS:
        status, body, _ = cluster.request("POST", f"/api/v1/namespaces/_/actions/{name}",
                                          {"prompt": "Ahoy", "max_tokens": MAX_TOKENS})
        assert status == 202, body
        accepted.append(body["activationId"])
    for activation_id in accepted:
        assert cluster.record(activation_id)["response"]["statusCode"] == 0
    for invoker_id in INVOKERS:  # each ran its home functions in its own containers
        assert labelled_containers(docker_client, invoker_id), invoker_id
    # The action's containers, read from its invoker's heartbeat.
    status, action, _ = cluster.request("GET", "/api/v1/namespaces/_/actions/f0?code=false")
    assert status == 200, action
    assert action["instances"], action


def test_a_killed_invoker_loses_no_activation_and_leaves_no_container(
        cluster: Cluster, docker_client: Any) -> None:
    victim = cluster.invokers[INVOKERS[1]]
    before = labelled_containers(docker_client, victim.name)
    assert before, "the victim ran containers before it was killed"

    def invoke(index: int) -> str:
        name = list(FUNCTIONS)[index % len(FUNCTIONS)]
        status, body, _ = cluster.request("POST", f"/api/v1/namespaces/_/actions/{name}",
                                          {"prompt": f"Ahoy {index}",
                                           "max_tokens": MAX_TOKENS})
        assert status == 202, body
        return str(body["activationId"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = list(pool.map(invoke, range(16)))
        wait_until(lambda: (_invoker_health(victim) or {}).get("inflight", 0) > 0,
                   "activations running on the victim", victim)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)  # mid-load: some of its work unfinished
        victim.process.wait()
        second = list(pool.map(invoke, range(16, 32)))
    accepted = first + second
    for activation_id in accepted:
        assert cluster.record(activation_id)["response"]["statusCode"] == 0

    engine = create_engine(sync_url(cluster.database_url))
    try:
        with engine.connect() as connection:
            counts: dict[str, int] = dict(connection.execute(text(
                "SELECT activation_id, count(*) FROM activations "
                "WHERE activation_id = ANY(:ids) GROUP BY activation_id"),
                {"ids": accepted}).all())
            pending = connection.execute(text(
                "SELECT count(*) FROM pending_invocations WHERE activation_id = ANY(:ids)"),
                {"ids": accepted}).scalar_one()
    finally:
        engine.dispose()
    assert len(counts) == len(accepted) and set(counts.values()) == {1}
    assert pending == 0
    survivor = cluster.invokers[INVOKERS[0]]
    assert f"of dead invoker {victim.name} ran on {survivor.name}" in \
        survivor.log.read_text(), "what the victim took was redelivered to the survivor"

    victim.start()  # the same id and run folder: it reclaims what the dead run left
    wait_until(lambda: (_invoker_health(victim) or {}).get("status") == "ok",
               "the restarted invoker's health", victim)
    assert labelled_containers(docker_client, victim.name) & before == set()
