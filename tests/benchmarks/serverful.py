"""The evaluation's serverful reference: one long-running process, always on, holding the
backbone and every function's adapter, serving mixed-adapter batches.

    python tests/benchmarks/serverful.py --socket PATH --backbone DIR \\
        --adapter NAME=DIR [--adapter NAME=DIR ...] [--max-batch 8]

It loads the backbone once with transformers and each adapter with peft under its own name
(`PeftModel.load_adapter`), then serves `POST /generate` `{"adapter", "prompt",
"max_tokens"}` on a Unix socket. Requests wait in one in-process queue; whenever the model
is free, everything waiting (up to `--max-batch`) runs as one batch whatever its adapters,
peft's mixed-adapter inference (`generate(..., adapter_names=[...])`, greedy). The answer:
`{"ttft_ms", "e2e_ms", "prompt_tokens", "completion_tokens", "token_ids", "batch_size"}`,
times measured in this process from the request's arrival to its first token and to its
last. It prints `READY <socket>` when it accepts requests. The benchmark harness starts it with
`ServerfulProcess` and measures its memory by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

logger = logging.getLogger("serverful")
READY = "READY"


@dataclass(frozen=True)
class Item:
    """One request to the serverful model."""

    adapter: str
    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class Done:
    """When a request's first and last tokens came (monotonic seconds) and its counts."""

    first_token_at: float
    ended_at: float
    prompt_tokens: int
    token_ids: list[int]


class StepClock:
    """A generate() streamer that notes when each decoding step's tokens came."""

    def __init__(self) -> None:
        self.prompt_seen = False
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        """generate() hands the prompt first, then each step's new tokens."""
        if self.prompt_seen:
            self.times.append(time.monotonic())
        self.prompt_seen = True

    def end(self) -> None:
        """The generation ended."""


class MixedAdapterModel:
    """The backbone with every adapter loaded by name (unmerged), and the tokenizer."""

    def __init__(self, backbone_dir: Path, adapters: dict[str, Path]) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(str(backbone_dir), dtype=torch.float32,
                                                    local_files_only=True)
        names = list(adapters)
        model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0],
                                          is_trainable=False)
        for name in names[1:]:
            model.load_adapter(str(adapters[name]), adapter_name=name, is_trainable=False)
        model.eval()
        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir), local_files_only=True)
        self.tokenizer.padding_side = "left"  # every row's next token in the last column

    def generate(self, items: list[Item]) -> list[Done]:
        """One mixed-adapter batch, greedy; each row cut at its own max_tokens or EOS."""
        import torch

        encoded = self.tokenizer([item.prompt for item in items], return_tensors="pt",
                                 padding=True)
        clock = StepClock()
        with torch.inference_mode():
            output = self.model.generate(
                **encoded, adapter_names=[item.adapter for item in items],
                max_new_tokens=max(item.max_tokens for item in items), do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id, streamer=clock)
        new_tokens = output[:, encoded["input_ids"].shape[1]:].tolist()
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        done = []
        for item, tokens, prompt_tokens in zip(items, new_tokens, prompt_lengths, strict=True):
            count = _completion_length(tokens[:item.max_tokens], self.tokenizer.eos_token_id)
            # Its last token came with the step that made it (later steps served others).
            done.append(Done(clock.times[0], clock.times[count - 1], int(prompt_tokens),
                             tokens[:count]))
        return done


def _completion_length(tokens: list[int], eos_id: int | None) -> int:
    """Tokens the row generated: up to and with its first EOS (generate pads after it)."""
    if eos_id is not None and eos_id in tokens:
        return tokens.index(eos_id) + 1
    return max(1, len(tokens))


@dataclass
class _Waiting:
    item: Item
    arrived_at: float
    future: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class BatchingFront:
    """The in-process queue: whatever waits when the model is free runs as one batch."""

    def __init__(self, model: MixedAdapterModel, max_batch: int) -> None:
        self.model = model
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Waiting] = asyncio.Queue()

    async def submit(self, item: Item) -> dict[str, Any]:
        """Queue one request and wait for its answer."""
        waiting = _Waiting(item, time.monotonic())
        await self.queue.put(waiting)
        return await waiting.future

    async def run(self) -> None:
        """Serve batches until cancelled."""
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                done = await asyncio.to_thread(self.model.generate, [w.item for w in batch])
            except Exception as error:  # answered to each request; the server goes on
                logger.exception("batch of %d failed", len(batch))
                for waiting in batch:
                    waiting.future.set_exception(error)
                continue
            for waiting, outcome in zip(batch, done, strict=True):
                waiting.future.set_result({
                    "ttft_ms": (outcome.first_token_at - waiting.arrived_at) * 1000,
                    "e2e_ms": (outcome.ended_at - waiting.arrived_at) * 1000,
                    "prompt_tokens": outcome.prompt_tokens,
                    "completion_tokens": len(outcome.token_ids),
                    "token_ids": outcome.token_ids, "batch_size": len(batch)})


front_key = web.AppKey("front", BatchingFront)


async def handle_generate(request: web.Request) -> web.Response:
    """`POST /generate`: one request, answered when its generation ends."""
    body = await request.json()
    item = Item(str(body["adapter"]), str(body["prompt"]), int(body["max_tokens"]))
    return web.json_response(await request.app[front_key].submit(item))


async def serve(args: argparse.Namespace) -> None:
    """Load everything, then serve the socket until cancelled."""
    adapters = dict(spec.split("=", 1) for spec in args.adapter)
    model = await asyncio.to_thread(MixedAdapterModel, args.backbone,
                                    {name: Path(path) for name, path in adapters.items()})
    front = BatchingFront(model, args.max_batch)
    app = web.Application()
    app[front_key] = front
    app.add_routes([web.post("/generate", handle_generate)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    args.socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(args.socket)).start()
    worker = asyncio.create_task(front.run())
    print(f"{READY} {args.socket}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        worker.cancel()
        await runner.cleanup()


def main() -> None:
    """Run the serverful reference server."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--backbone", type=Path, required=True)
    parser.add_argument("--adapter", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


class ServerfulProcess:
    """The serverful reference as a child process, and a client for it."""

    def __init__(self, socket_path: Path, backbone_dir: Path, adapters: dict[str, Path],
                 max_batch: int = 8) -> None:
        self.socket_path = socket_path
        self.command = [sys.executable, str(Path(__file__).resolve()), "--socket",
                        str(socket_path), "--backbone", str(backbone_dir),
                        "--max-batch", str(max_batch)]
        for name, path in adapters.items():
            self.command += ["--adapter", f"{name}={path}"]
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        """The server's process id (it must be running)."""
        assert self.process is not None
        return self.process.pid

    @contextlib.asynccontextmanager
    async def running(self, timeout_s: float = 600) -> AsyncIterator[ServerfulProcess]:
        """Start the server, wait for READY, and stop it at the end."""
        self.process = await asyncio.create_subprocess_exec(*self.command,
                                                            stdout=asyncio.subprocess.PIPE)
        try:
            assert self.process.stdout is not None
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
            if not line.startswith(READY.encode()):
                raise RuntimeError("the serverful reference did not start")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                timeout=aiohttp.ClientTimeout(total=None))
            yield self
        finally:
            if self._session is not None:
                await self._session.close()
            if self.process.returncode is None:
                self.process.terminate()
                await self.process.wait()

    async def generate(self, adapter: str, prompt: str, max_tokens: int) -> dict[str, Any]:
        """One request; the server's answer (see the module doc)."""
        assert self._session is not None
        async with self._session.post("http://serverful/generate", json={
                "adapter": adapter, "prompt": prompt, "max_tokens": max_tokens}) as answer:
            answer.raise_for_status()
            result: dict[str, Any] = await answer.json()
            return result


if __name__ == "__main__":
    main()
