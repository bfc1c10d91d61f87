"""The controller's context-length check and the checkpoint's serving dtype (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorafaas.backbone.checkpoint import checkpoint_dtype, context_length, serving_dtype
from lorafaas.controller.context_length import ContextCheck
from lorafaas.demo.tokenizer import TokenizerSpec, train_backend_tokenizer
from lorafaas.errors import BadRequest

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{{ eos_token }}\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkpoint config of context length 64 and a published tokenizer with a template."""
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    (checkpoint / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    published = tmp_path_factory.mktemp("published")
    tokenizer = train_backend_tokenizer(TokenizerSpec(vocab_size=300, corpus_sentences=500))
    tokenizer.save(str(published / "tokenizer.json"))
    (published / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": "</s>"}}))
    (published / "chat_template.jinja").write_text(TEMPLATE)
    return checkpoint, published


def check(backbone: tuple[Path, Path]) -> ContextCheck:
    checkpoint, published = backbone
    return ContextCheck({"tiny": published}, {"tiny": checkpoint})


def test_max_tokens_alone_past_the_context_is_refused(backbone: tuple[Path, Path]) -> None:
    with pytest.raises(BadRequest, match="max_tokens 64 does not fit the context length 64"):
        check(backbone).check(None, {"prompt": "hi", "max_tokens": 64})


def test_prompt_plus_max_tokens_names_both(backbone: tuple[Path, Path]) -> None:
    prompt = "the old captain found a golden key"
    tokens = len(train_backend_tokenizer(TokenizerSpec(vocab_size=300, corpus_sentences=500))
                 .encode(prompt).ids)
    assert 10 < tokens < 60
    check(backbone).check("tiny", {"prompt": prompt, "max_tokens": 64 - tokens})
    with pytest.raises(BadRequest, match=rf"prompt \({tokens} tokens\) plus max_tokens "
                                         rf"{65 - tokens} exceeds the context length 64"):
        check(backbone).check("tiny", {"prompt": prompt, "max_tokens": 65 - tokens})


def test_default_max_tokens_counts(backbone: tuple[Path, Path]) -> None:
    """Without max_tokens, the runtime's default (64) is what must fit."""
    with pytest.raises(BadRequest, match="max_tokens 64"):
        check(backbone).check(None, {"prompt": "hi"})


def test_messages_are_counted_as_the_template_renders_them(backbone: tuple[Path, Path]
                                                           ) -> None:
    checker = check(backbone)
    messages = [{"role": "user", "content": "hello there"}]
    tokenizer = checker._tokenizer("tiny")
    assert tokenizer is not None
    rendered = "<|user|> hello there</s>\n<|assistant|> "
    assert tokenizer.count_chat(messages) == tokenizer.count(rendered)
    assert tokenizer.count(rendered) > tokenizer.count("hello there")


def test_unknown_backbone_or_malformed_max_tokens_is_left_to_others(
        backbone: tuple[Path, Path]) -> None:
    check(backbone).check("other", {"prompt": "hi", "max_tokens": 10_000})
    check(backbone).check(None, {"prompt": "hi", "max_tokens": "many"})


def write_config(folder: Path, values: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(values))
    return folder


@pytest.mark.parametrize(("values", "expected"), [
    ({"dtype": "bfloat16", "torch_dtype": "float32"}, "bfloat16"),
    ({"torch_dtype": "float16"}, "float16"),
    ({"text_config": {"dtype": "bfloat16"}}, "bfloat16"),
    ({}, "float32"),
    ({"dtype": "float64"}, "float32"),
])
def test_checkpoint_dtype(tmp_path: Path, values: dict[str, object], expected: str) -> None:
    """`dtype`, else `torch_dtype`, else float32 (a dtype not served becomes float32)."""
    assert checkpoint_dtype(write_config(tmp_path / "c", values)) == expected


def test_serving_dtype_auto_or_asked(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "c", {"dtype": "bfloat16"})
    assert serving_dtype(folder) == "bfloat16"
    assert serving_dtype(folder, "float32") == "float32"
    with pytest.raises(ValueError, match="'float8' is not one of auto, float32"):
        serving_dtype(folder, "float8")


def test_context_length_reads_positions() -> None:
    assert context_length({"max_position_embeddings": 4096}) == 4096
    assert context_length({"text_config": {"max_position_embeddings": 128}}) == 128
    assert context_length({"n_positions": 1024}) == 1024
    assert context_length({}) is None
