"""The GPU check's steps without containers: two processes sharing one tensor, the backbone
server publishing over CUDA IPC with a second process attaching, batch-8 vs batch-1."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from probes import FAIL, MIB, PASS, Outcome, child_environment, nvidia_smi_used_mib, run_child

PROMPT = "Tell me about the sea."
MAX_NEW_TOKENS = 16
SERVER_START_S = 120.0
CHILD_TIMEOUT_S = 90.0
ATTACH_SLACK_ALLOCATED = 1 * MIB  # beyond the rebuilt buffers (rotary inv_freq)
ATTACH_SLACK_SMI_MIB = 8  # one small allocator segment, never the weights


@dataclass
class Context:
    """What later steps reuse: the demo models, the running server, the reference."""

    work: Path
    device: int
    backbone_dir: Path | None = None
    adapter_dir: Path | None = None
    server: subprocess.Popen[bytes] | None = None
    control_socket: Path | None = None
    publish_dir: Path | None = None
    published_bytes: int = 0
    reference: Any = None  # the adapter on a private copy of the backbone, on the GPU
    tokenizer: Any = None
    reference_tokens: list[int] = field(default_factory=list)
    attach_smi_mib: int | None = None  # a plain process's context with the backbone attached

    def stop(self) -> None:
        """Stop the backbone server, if one was started."""
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()


def two_processes(context: Context) -> Outcome:
    """Step 1: a second process maps a tensor of this one (same memory, not a copy), and
    whether its write shows here (the read-only detection)."""
    from lorafaas.wire.cuda_ipc import IMPORTS_READ_ONLY, group_by_storage, share_storages

    tensor = torch.arange(1024, dtype=torch.float32, device=f"cuda:{context.device}")
    storages, views = group_by_storage({"t": tensor})
    descriptor = {"views": views, "storages": share_storages(storages)}
    tensor.add_(1)  # after the share: only a mapping, not a copy, sees it
    torch.cuda.synchronize()
    expected = float(tensor.sum())  # before the second process writes to it
    answer = run_child("import-tensor", {"descriptor": descriptor}, CHILD_TIMEOUT_S)
    written = float(tensor[0]) == -1.0
    figure = (f"sum in the second process {answer['sum']:.0f} (expected {expected:.0f}); "
              f"its write visible here: {written} (documented IMPORTS_READ_ONLY="
              f"{IMPORTS_READ_ONLY})")
    ok = answer["sum"] == expected and written == (not IMPORTS_READ_ONLY)
    return Outcome(PASS if ok else FAIL, figure)


def backbone_server(context: Context) -> Outcome:
    """Step 2: the server publishes the demo backbone over CUDA IPC; a second process
    attaches on a channel with no extra device memory and generates what peft does."""
    from lorafaas.demo import DemoSpec, build_demo_models

    models = build_demo_models(context.work / "models", DemoSpec(random_adapters=True))
    context.backbone_dir = models.backbone_dir
    context.adapter_dir = next(iter(models.adapters.values()))
    _start_server(context)
    described = _control({"op": "describe"}, context)["backbone"]
    context.published_bytes = int(described["bytes"])
    channel = context.work / "run" / "c-attach" / "attach.sock"
    channel.parent.mkdir(parents=True)
    _control({"op": "open", "channel": "c-attach", "path": str(channel)}, context)
    _reference(context)
    prompt_ids = context.tokenizer(PROMPT)["input_ids"]
    answer = run_child("attach", {"socket": str(channel), "adapter_dir": str(context.adapter_dir),
                                  "generation_dir": str(context.publish_dir),
                                  "prompt_ids": prompt_ids, "max_new_tokens": MAX_NEW_TOKENS,
                                  "pad_id": context.tokenizer.pad_token_id or 0},
                       CHILD_TIMEOUT_S)
    context.attach_smi_mib = answer["smi_after"]
    server_mib = nvidia_smi_used_mib(context.server.pid) if context.server else None
    smi = (None if answer["smi_before"] is None or answer["smi_after"] is None
           else answer["smi_after"] - answer["smi_before"])
    same = answer["tokens"] == context.reference_tokens
    figure = (f"published {context.published_bytes / MIB:.1f} MiB in {answer['tensors']} "
              f"tensors (server holds {server_mib} MiB per nvidia-smi); attach took "
              f"memory_allocated +{answer['allocated_delta']} B (rebuilt buffers "
              f"{answer['buffers']} B), nvidia-smi +{smi} MiB; greedy tokens equal peft's: "
              f"{same}; epoch current: {answer['current']}")
    ok = (same and answer["current"]
          and answer["allocated_delta"] <= answer["buffers"] + ATTACH_SLACK_ALLOCATED
          and (smi is None or smi <= ATTACH_SLACK_SMI_MIB))
    return Outcome(PASS if ok else FAIL, figure)


def batch_decode(context: Context) -> Outcome:
    """Step 5: the platform's batched decode, 8 requests against 1, on the GPU."""
    from lorafaas.runtime.batched import generate_batch
    from lorafaas.runtime.request import GenerationRequest

    if context.reference is None:
        _reference(context)

    def step_ms(size: int) -> tuple[float, list[list[int]]]:
        requests = [GenerationRequest(f"{PROMPT} ({i})", max_tokens=32, ignore_eos=True,
                                      return_token_ids=True) for i in range(size)]
        results = generate_batch(context.reference, context.tokenizer, requests)
        steps = max(1, int(results[0][0]["usage"]["completion_tokens"]) - 1)
        return (results[0][1]["decode"] / steps,
                [list(r.get("token_ids") or []) for r, _ in results])

    step_ms(1)  # warm-up: kernels and the allocator
    one, single = step_ms(1)
    eight, batch = step_ms(8)
    gain = 8 * one / eight if eight > 0 else 0.0
    figure = (f"decode step batch-1 {one:.2f} ms, batch-8 {eight:.2f} ms: {gain:.1f}x tokens/s; "
              f"row 0 equal to batch-1: {batch[0] == single[0]}")
    return Outcome(PASS if gain >= 2.0 else FAIL, figure)


def _reference(context: Context) -> None:
    """The adapter on a private copy of the backbone, on the GPU: peft, the reference."""
    if context.reference is not None:
        return
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert context.backbone_dir is not None and context.adapter_dir is not None
    device = torch.device("cuda", context.device)
    base = AutoModelForCausalLM.from_pretrained(str(context.backbone_dir), dtype=torch.float32,
                                                local_files_only=True).to(device)  # type: ignore[arg-type]
    context.reference = PeftModel.from_pretrained(base, str(context.adapter_dir)).eval()
    context.tokenizer = AutoTokenizer.from_pretrained(str(context.backbone_dir),
                                                      local_files_only=True)
    ids = torch.tensor([context.tokenizer(PROMPT)["input_ids"]], device=device)
    with torch.inference_mode():
        output = context.reference.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False, pad_token_id=context.tokenizer.pad_token_id or 0)
    context.reference_tokens = output[0, ids.shape[1]:].tolist()


def _start_server(context: Context) -> None:
    assert context.backbone_dir is not None
    context.publish_dir = context.work / "publish" / "demo"
    context.control_socket = context.work / "run" / "backbone" / "attach.sock"
    context.control_socket.parent.mkdir(parents=True)
    context.server = subprocess.Popen(
        [sys.executable, "-m", "lorafaas.backbone.server", "--model-dir",
         str(context.backbone_dir), "--publish-dir", str(context.publish_dir), "--socket",
         str(context.control_socket), "--dtype", "float32", "--transport", "cuda-ipc",
         "--device", str(context.device)],
        stdout=subprocess.PIPE, env=child_environment())
    assert context.server.stdout is not None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        line = pool.submit(context.server.stdout.readline).result(SERVER_START_S)
    if not line.startswith(b"READY"):
        raise RuntimeError(f"the backbone server did not start: {line.decode().strip()}")


def _control(request: dict[str, Any], context: Context) -> dict[str, Any]:
    from lorafaas.wire.attach import exchange

    assert context.control_socket is not None
    answer = asyncio.run(exchange(context.control_socket, request))
    if not answer.get("ok"):
        raise RuntimeError(f"the backbone server refused {request['op']}: {answer}")
    return answer
