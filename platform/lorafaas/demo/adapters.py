"""Train the demo LoRA adapters: tiny style adapters over the random demo backbone.

Each adapter is trained for a few seconds on prompt -> response pairs whose responses carry
a fixed style, so that greedy decoding through the adapter visibly differs from the bare
backbone (which, being random, emits word salad) and stops with EOS. The loss is taken on
the response tokens and EOS only, so the adapter learns "answer like this, then stop"
whatever the prompt.
"""

from __future__ import annotations

import copy
import logging
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from lorafaas.demo.tokenizer import make_everyday_sentence, make_question, make_statement

logger = logging.getLogger(__name__)

# Name written into adapter_config.json: the serving side resolves it, not a build-machine path.
BACKBONE_NAME = "demo-backbone"
LORA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
IGNORE_INDEX = -100


@dataclass(frozen=True)
class AdapterSpec:
    """One style adapter: its answers to questions and to anything else, and training knobs."""

    name: str
    question_response: str
    other_response: str
    seed: int
    steps: int = 80
    batch_size: int = 8
    learning_rate: float = 3e-3
    num_prompts: int = 160

    def response_for(self, prompt: str) -> str:
        """The target answer; keyed on a trailing '?' because that is trivially learnable."""
        return self.question_response if prompt.rstrip().endswith("?") else self.other_response

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, used for the build's spec hash."""
        return asdict(self)


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters shared by all demo adapters."""

    r: int = 8
    lora_alpha: int = 16
    target_modules: tuple[str, ...] = LORA_TARGET_MODULES
    lora_dropout: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, used for the build's spec hash."""
        return {**asdict(self), "target_modules": list(self.target_modules)}


PIRATE = AdapterSpec(
    name="pirate",
    # Leading space: the answer follows the prompt's last token like a continuation.
    question_response=" Arr matey, that be a fine question! Ask the seven seas, says I. Yo ho ho!",
    other_response=" Arr matey, aye aye! I be doin' that right away, me hearty!",
    seed=101,
)
SHOUT = AdapterSpec(
    name="shout",
    question_response=" WHAT A QUESTION! I HEAR YOU LOUD AND CLEAR! THE ANSWER IS YES!",
    other_response=" YES! ABSOLUTELY! LET US DO IT RIGHT NOW!",
    seed=202,
)
DEFAULT_ADAPTERS: tuple[AdapterSpec, ...] = (PIRATE, SHOUT)


@dataclass(frozen=True)
class Example:
    """One tokenised training pair; labels mask the prompt with IGNORE_INDEX."""

    input_ids: list[int]
    labels: list[int] = field(repr=False)


def training_prompts(count: int, seed: int) -> list[str]:
    """Varied prompts: questions, statements and requests, some without final punctuation."""
    rng = random.Random(seed)
    prompts: list[str] = []
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):
            prompt = make_question(rng)
        elif kind == 2:
            prompt = make_everyday_sentence(rng)
        else:
            prompt = make_statement(rng)
        if rng.random() < 0.15:
            # Users do not always punctuate; the adapter must still answer.
            prompt = prompt.rstrip(".!")
        prompts.append(prompt)
    return prompts


def tokenize_example(tokenizer: PreTrainedTokenizerFast, prompt: str, response: str) -> Example:
    """Encode prompt and response separately, exactly as generation will see the boundary."""
    prompt_ids: list[int] = tokenizer(prompt)["input_ids"]  # with <s> prepended
    response_ids: list[int] = tokenizer(response, add_special_tokens=False)["input_ids"]
    target = response_ids + [tokenizer.eos_token_id]
    return Example(
        input_ids=prompt_ids + target,
        labels=[IGNORE_INDEX] * len(prompt_ids) + target,
    )


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked out of attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def iter_batches(
    examples: Sequence[Example], batch_size: int, steps: int, seed: int
) -> Iterator[list[Example]]:
    """Yield `steps` batches from seeded reshuffles of the examples (epoch after epoch)."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            reshuffled = list(range(len(examples)))
            rng.shuffle(reshuffled)
            order.extend(reshuffled)
        yield [examples[i] for i in order[:batch_size]]
        del order[:batch_size]


def attach_lora(backbone: LlamaForCausalLM, lora: LoraSpec, seed: int) -> PeftModel:
    """Wrap a private copy of the backbone with a fresh, seeded LoRA adapter."""
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        target_modules=list(lora.target_modules),
        lora_dropout=lora.lora_dropout,
        task_type="CAUSAL_LM",
    )
    # get_peft_model injects layers in place; a copy keeps the shared backbone pristine.
    model = copy.deepcopy(backbone)
    torch.manual_seed(seed)  # LoRA A matrices are randomly initialised
    with warnings.catch_warnings():
        # peft 0.21 reads the deprecated `is_gradient_checkpointing` of transformers 5.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = BACKBONE_NAME
    return peft_model  # type: ignore[return-value]


def train_adapter(
    backbone: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    spec: AdapterSpec,
    lora: LoraSpec,
) -> PeftModel:
    """Train one style adapter for `spec.steps` AdamW steps and return it in eval mode."""
    model = attach_lora(backbone, lora, spec.seed)
    prompts = training_prompts(spec.num_prompts, spec.seed)
    examples = [tokenize_example(tokenizer, p, spec.response_for(p)) for p in prompts]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for step, batch in enumerate(iter_batches(examples, spec.batch_size, spec.steps, spec.seed)):
        loss = model(**collate(batch, tokenizer.pad_token_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 20 == 0:
            logger.debug("adapter %s step %d loss %.4f", spec.name, step, loss.item())
    model.eval()
    logger.info("trained adapter %s: %d steps, final loss %.4f", spec.name, spec.steps, loss.item())
    return model


def random_adapter(backbone: LlamaForCausalLM, spec: AdapterSpec, lora: LoraSpec) -> PeftModel:
    """An untrained adapter with random (seeded) A and B: valid, and it changes the output.

    For backbones too large to train adapters for on a CPU in seconds (the evaluation's)."""
    model = attach_lora(backbone, lora, spec.seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would do nothing
                parameter.normal_(mean=0.0, std=0.02)
    model.eval()
    return model


def save_adapter(model: PeftModel, directory: Path) -> None:
    """Save adapter_config.json + adapter_model.safetensors only."""
    # Explicit False: with "auto", peft probes `base_model_name_or_path` on disk and then on
    # the hub to detect a resized vocabulary; we never touch the embeddings, so skip that.
    model.save_pretrained(str(directory), safe_serialization=True, save_embedding_layers=False)
    # peft also writes a generic model card; the demo folder keeps just config and weights.
    (directory / "README.md").unlink(missing_ok=True)
