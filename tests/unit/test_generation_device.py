"""Single-request generation puts the tokenizer's output on the model's device, as the
batched path does: the device is only logic here (`meta` stands in for a GPU)."""

from __future__ import annotations

from typing import Any

import torch

from lorafaas.runtime import generation
from lorafaas.runtime.request import GenerationRequest

META = torch.device("meta")


class MetaModel(torch.nn.Module):
    """A model whose weights are on `meta`: records what generate() is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(2, device=META))
        self.generation_config = None
        self.seen: dict[str, Any] = {}

    def generate(self, **kwargs: Any) -> torch.Tensor:
        self.seen = kwargs
        return torch.tensor([[5, 6, 7]])


class Tokenizer:
    """Tensors on the CPU, as a Hugging Face tokenizer returns them."""

    eos_token_id = 0
    pad_token_id = 0

    def __call__(self, text: str, return_tensors: str) -> dict[str, Any]:
        return {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2),
                "token_type_ids": None}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def test_on_device_moves_every_tensor_and_leaves_other_values() -> None:
    moved = generation.on_device({"input_ids": torch.tensor([1]), "length": 3}, META)
    assert moved["input_ids"].device == META and moved["length"] == 3


def test_the_model_device_is_that_of_its_weights() -> None:
    assert generation.model_device(MetaModel()) == META


def test_single_request_generation_hands_generate_inputs_on_the_models_device() -> None:
    model = MetaModel()
    generation.generate(model, Tokenizer(), GenerationRequest("hi", max_tokens=1))  # type: ignore[arg-type]
    assert model.seen["input_ids"].device == META
    assert model.seen["attention_mask"].device == META
