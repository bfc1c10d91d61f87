"""The GPU check's second processes: `python3 children.py ROLE`, a JSON message on stdin,
one JSON line of figures on stdout.

- `import-tensor`: map a tensor another process shared (CUDA IPC), sum it, then write
  its first element (the read-only detection: the exporter looks whether it changed).
- `attach`: attach to a backbone server's channel as a function container does, build
  the model on the mapped weights, and say what that cost in device memory
  (`torch.cuda.memory_allocated` and nvidia-smi, before and after), then the greedy
  tokens of the adapter on it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from probes import nvidia_smi_used_mib


def import_tensor(message: dict[str, Any]) -> dict[str, Any]:
    """Sum a shared tensor, then write to it."""
    from lorafaas.wire.cuda_ipc import import_tensors

    tensor = import_tensors(message["descriptor"])["t"]
    total = float(tensor.sum())
    tensor[0] = -1.0
    torch.cuda.synchronize()
    return {"sum": total, "device": str(tensor.device)}


def attach(message: dict[str, Any]) -> dict[str, Any]:
    """Attach on a channel; the device memory it took; the adapter's greedy tokens."""
    from peft import PeftModel

    from lorafaas.runtime.attach import BackboneAttachment, build_backbone, published_tensors

    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the context exists before the first measure
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(), nvidia_smi_used_mib(os.getpid())
    attachment = BackboneAttachment(Path(message["socket"]), "gpu-check")
    generation_dir = Path(message["generation_dir"])
    tensors = published_tensors(attachment.descriptor, generation_dir)
    model = build_backbone(attachment.descriptor, generation_dir, tensors)
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated(), nvidia_smi_used_mib(os.getpid())
    buffers = sum(b.nbytes for _, b in model.named_buffers() if b.device.type == "cuda"
                  and not any(b.data_ptr() == t.data_ptr() for t in tensors.values()))
    adapted = PeftModel.from_pretrained(model, message["adapter_dir"], is_trainable=False)
    ids = torch.tensor([message["prompt_ids"]], device="cuda")
    with torch.inference_mode():
        output = adapted.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  max_new_tokens=message["max_new_tokens"], do_sample=False,
                                  pad_token_id=message["pad_id"])
    return {"allocated_delta": after[0] - before[0], "buffers": buffers,
            "smi_before": before[1], "smi_after": after[1], "tensors": len(tensors),
            "current": attachment.is_current(), "epoch": attachment.epoch,
            "tokens": output[0, ids.shape[1]:].tolist()}


ROLES = {"import-tensor": import_tensor, "attach": attach}

if __name__ == "__main__":
    result = ROLES[sys.argv[1]](json.loads(sys.stdin.read()))
    print(json.dumps(result), flush=True)
