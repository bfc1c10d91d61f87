"""The GPU check's container steps: function containers on the GPU, attached to the backbone
server of step 2 exactly as the pool makes them (invoker.device_options and the Docker
backend's run options); they need a Docker engine with the NVIDIA runtime and a CUDA
runtime image (`python -m lorafaas.images --accelerator cuda`)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from gpu_steps import MAX_NEW_TOKENS, PROMPT, Context, _control, _reference
from probes import FAIL, MIB, PASS, Outcome, nvidia_smi_used_mib

READY_S = 120.0
REQUEST_S = 120.0
RUNTIME_SOCKET = "runtime.sock"


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over a function container's runtime socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        """Connect to the socket instead of a TCP port."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def post(path: Path, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body to the runtime; its JSON answer (RuntimeError on a non-200)."""
    connection = UnixHTTP(path, REQUEST_S)
    try:
        connection.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{route} answered {response.status}: {answer}")
    return dict(answer)


class FunctionContainer:
    """One container of the demo adapter on the GPU, with its own channel."""

    def __init__(self, context: Context, image: str) -> None:
        from lorafaas.invoker.docker_backend import DockerBackend

        self.context, self.image = context, image
        self.name = f"lorafaas-gpu-check-{uuid.uuid4().hex[:8]}"
        self.root = context.work / "c" / self.name[-8:]
        self.backend = DockerBackend()
        self.id: str | None = None
        self.pid = 0

    def start(self) -> None:
        """Open its channel, start it as the pool would, /init it."""
        from lorafaas.invoker.backend import ContainerSpec, Mount
        from lorafaas.invoker.device_options import device_options

        assert self.context.publish_dir is not None and self.context.adapter_dir is not None
        for part in ("io", "attach", "adapter"):
            (self.root / part).mkdir(parents=True)
            (self.root / part).chmod(0o777)
        for item in self.context.adapter_dir.iterdir():
            shutil.copy(item, self.root / "adapter" / item.name)
        _control({"op": "open", "channel": self.name[-8:],
                  "path": str(self.root / "attach" / "attach.sock")}, self.context)
        device = device_options("cuda-ipc", self.context.publish_dir, self.context.device)
        spec = ContainerSpec(
            name=self.name, image=self.image, memory_mb=4096, pids_limit=256, labels={},
            mounts=[Mount(self.root / "io", "/lorafaas/io", read_only=False),
                    Mount(self.root / "adapter", "/adapter"),
                    Mount(self.root / "attach", "/lorafaas/attach"), *device.mounts],
            environment={"LORAFAAS_CONTAINER_NAME": self.name,
                         "LORAFAAS_RUNTIME_SOCKET": f"/lorafaas/io/{RUNTIME_SOCKET}",
                         "LORAFAAS_ATTACH_SOCKET": "/lorafaas/attach/attach.sock",
                         "LORAFAAS_ADAPTER_DIR": "/adapter", **device.environment},
            gpu=device.gpu)
        info = self.backend.start(spec)
        self.id, self.pid = info.id, info.pid
        self._wait_ready()
        post(self.root / "io" / RUNTIME_SOCKET, "/init",
             {"value": {"name": "guest/gpu-check", "main": "main"}})

    def run(self) -> str:
        """The greedy answer to the check's prompt."""
        answer = post(self.root / "io" / RUNTIME_SOCKET, "/run",
                      {"value": {"prompt": PROMPT, "max_tokens": MAX_NEW_TOKENS,
                                 "temperature": 0}})
        return str(answer.get("result", answer).get("text"))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while not (self.root / "io" / RUNTIME_SOCKET).exists():
            if time.monotonic() > deadline or (self.id and not self.backend.is_running(self.id)):
                raise RuntimeError(f"container {self.name} did not start its runtime")
            time.sleep(0.2)

    def remove(self) -> None:
        """Remove the container and close its channel."""
        if self.id is not None:
            self.backend.remove(self.id)
        _control({"op": "close", "channel": self.name[-8:]}, self.context)
        self.backend.close()


def function_container(context: Context, image: str) -> Outcome:
    """Step 3: one function container on the GPU answers what peft answers on the GPU."""
    _reference(context)
    expected = context.tokenizer.decode(context.reference_tokens, skip_special_tokens=True)
    container = FunctionContainer(context, image)
    try:
        container.start()
        text = container.run()
    finally:
        container.remove()
    figure = f"container text {text!r}, peft {expected!r}"
    return Outcome(PASS if text.strip() == expected.strip() else FAIL, figure)


def two_containers(context: Context, image: str) -> Outcome:
    """Step 4: two containers share the backbone: the weights are counted once, in the
    server; neither container holds a copy (nvidia-smi per process)."""
    containers = [FunctionContainer(context, image) for _ in range(2)]
    try:
        for container in containers:
            container.start()
            container.run()
        used = [nvidia_smi_used_mib(c.pid) for c in containers]
    finally:
        for container in containers:
            container.remove()
    server = nvidia_smi_used_mib(context.server.pid) if context.server else None
    weights = context.published_bytes / MIB
    # A copy would add the weights to a container's own context (step 2's attached process).
    bound = (context.attach_smi_mib or 0) + weights / 2 + 64
    figure = (f"weights {weights:.0f} MiB; server {server} MiB; containers {used} MiB "
              f"(a copy would exceed {bound:.0f} MiB each)")
    ok = all(u is not None and u < bound for u in used)
    return Outcome(PASS if ok else FAIL, figure)
