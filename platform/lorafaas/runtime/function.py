"""One LoRA function in its container: backbone attach, adapter, tokenizer, warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from peft import PeftModel
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorafaas.runtime.attach import BackboneAttachment, build_backbone
from lorafaas.runtime.generation import GenerationRequest, TokenSink, generate, plain_chat

T = TypeVar("T")
WARMUP_PROMPT = "Warm up the kernels at the function's shapes."


@dataclass(frozen=True)
class RuntimePaths:
    """Where the invoker mounted the function's parts inside the container."""

    attach_socket: Path
    backbone_dir: Path
    adapter_dir: Path


class LoadedFunction:
    """The backbone with this function's adapter (unmerged) and tokenizer, ready to run."""

    def __init__(self, model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                 attachment: BackboneAttachment, breakdown: dict[str, float]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.attachment = attachment
        self.breakdown = breakdown

    def run(self, request: GenerationRequest, sink: TokenSink | None = None
            ) -> tuple[dict[str, Any], dict[str, float]]:
        """Generate for one request (`sink` receives each new token's ids)."""
        return generate(self.model, self.tokenizer, request, sink)

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """A chat as the prompt text: the tokenizer's chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True))
        return plain_chat(messages)


def _timed(breakdown: dict[str, float], name: str, step: Callable[[], T]) -> T:
    started = time.monotonic()
    value = step()
    breakdown[name] = round((time.monotonic() - started) * 1000, 3)
    return value


def load_function(paths: RuntimePaths, client: str) -> LoadedFunction:
    """Load every artifact of the function, timing each (milliseconds)."""
    breakdown: dict[str, float] = {}
    attachment = _timed(breakdown, "backbone",
                        lambda: BackboneAttachment(paths.attach_socket, client))
    backbone = _timed(breakdown, "backbone_build",
                      lambda: build_backbone(attachment.descriptor, paths.backbone_dir))
    breakdown["backbone"] += breakdown.pop("backbone_build")
    # Unmerged: y = xW + s·(xA)B. Merging would write the shared backbone weights.
    model = _timed(breakdown, "adapter",
                   lambda: PeftModel.from_pretrained(backbone, str(paths.adapter_dir),
                                                     is_trainable=False))
    model.eval()
    tokenizer = _timed(breakdown, "tokenizer", lambda: _load_tokenizer(paths))
    _timed(breakdown, "kernels", lambda: _warm_up(model, tokenizer))
    return LoadedFunction(model, tokenizer, attachment, breakdown)


def _load_tokenizer(paths: RuntimePaths) -> PreTrainedTokenizerBase:
    # An adapter may ship its own tokenizer (added tokens); else the backbone's.
    source = paths.adapter_dir if (paths.adapter_dir / "tokenizer.json").exists() \
        else paths.backbone_dir
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)


def _warm_up(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    inputs = tokenizer(WARMUP_PROMPT, return_tensors="pt")
    with torch.inference_mode():
        model(**inputs)
