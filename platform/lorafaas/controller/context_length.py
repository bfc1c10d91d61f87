"""Refuse an invocation whose prompt plus `max_tokens` exceeds its backbone's context length.

Checked in the controller, before the activation is accepted: a 400 costs no pending row,
no batch slot and no container start. The prompt is counted exactly as the runtime will
tokenize it, with the light `tokenizers` library on the `tokenizer.json` that the backbone
server published (no torch here); `messages` are first rendered with the model's chat
template (jinja2, as transformers renders it). Where the template cannot be rendered here,
the messages' contents alone are counted, a lower bound, so the check never refuses a
request that fits. An adapter that ships its own tokenizer is counted with the backbone's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from lorafaas.backbone.checkpoint import context_length, read_config
from lorafaas.controller.invoke_params import RUNTIME_DEFAULT_MAX_TOKENS
from lorafaas.errors import BadRequest

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


@dataclass
class PublishedTokenizer:
    """A backbone's published tokenizer and chat template, for counting prompt tokens."""

    tokenizer: Tokenizer
    chat_template: str | None
    special_tokens: dict[str, str]

    @classmethod
    def load(cls, publish_dir: Path) -> PublishedTokenizer:
        """Read `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja`."""
        config_path = publish_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        template_path = publish_dir / "chat_template.jinja"
        template = template_path.read_text() if template_path.exists() else config.get(
            "chat_template")
        special = {key: _token_text(config.get(key)) for key in SPECIAL_TOKENS}
        return cls(Tokenizer.from_file(str(publish_dir / "tokenizer.json")),
                   template if isinstance(template, str) else None,
                   {key: value for key, value in special.items() if value is not None})

    def count(self, text: str) -> int:
        """Tokens of `text` with the special tokens the runtime adds (BOS, say)."""
        return len(self.tokenizer.encode(text, add_special_tokens=True).ids)

    def count_chat(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of the chat as the runtime renders it (a lower bound if it cannot here)."""
        if self.chat_template is not None:
            try:
                return self.count(_render(self.chat_template, messages, self.special_tokens))
            except TemplateError as error:
                logger.info("chat template not rendered for counting: %s", error)
        return sum(self.count(str(m.get("content", ""))) for m in messages)


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json holds a special token as its text or as an AddedToken dict.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _raise(message: str) -> None:
    raise TemplateError(message)


def _render(template: str, messages: list[dict[str, Any]], special: dict[str, str]) -> str:
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[loopcontrols])
    environment.globals["raise_exception"] = _raise
    return environment.from_string(template).render(messages=messages,
                                                    add_generation_prompt=True, **special)


class ContextCheck:
    """Each backbone's context length and published tokenizer (read on first use); the
    first backbone is the default (of actions without a `backbone` annotation)."""

    def __init__(self, publish_dirs: Mapping[str, Path], checkpoint_dirs: Mapping[str, Path]
                 ) -> None:
        self.default = next(iter(checkpoint_dirs))
        self._publish_dirs = dict(publish_dirs)
        self._lengths = {name: context_length(read_config(d))
                         for name, d in checkpoint_dirs.items()}
        self._tokenizers: dict[str, PublishedTokenizer] = {}

    def check(self, backbone: str | None, parameters: dict[str, Any]) -> None:
        """BadRequest naming both figures when the prompt and max_tokens do not fit."""
        backbone = backbone or self.default
        limit = self._lengths.get(backbone)
        max_tokens = parameters.get("max_tokens", RUNTIME_DEFAULT_MAX_TOKENS)
        if limit is None or isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return  # no known limit, or a malformed max_tokens the runtime refuses itself
        if max_tokens >= limit:
            raise BadRequest(f"max_tokens {max_tokens} does not fit the context length "
                             f"{limit} of backbone {backbone!r}")
        prompt_tokens = self._prompt_tokens(backbone, parameters)
        if prompt_tokens is not None and prompt_tokens + max_tokens > limit:
            raise BadRequest(f"the prompt ({prompt_tokens} tokens) plus max_tokens "
                             f"{max_tokens} exceeds the context length {limit} of backbone "
                             f"{backbone!r}")

    def _prompt_tokens(self, backbone: str, parameters: dict[str, Any]) -> int | None:
        tokenizer = self._tokenizer(backbone)
        if tokenizer is None:
            return None
        prompt, messages = parameters.get("prompt"), parameters.get("messages")
        if isinstance(prompt, str):
            return tokenizer.count(prompt)
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
            return tokenizer.count_chat(messages)
        return None

    def _tokenizer(self, backbone: str) -> PublishedTokenizer | None:
        if backbone not in self._tokenizers:
            publish_dir = self._publish_dirs.get(backbone)
            if publish_dir is None or not (publish_dir / "tokenizer.json").exists():
                return None
            self._tokenizers[backbone] = PublishedTokenizer.load(publish_dir)
        return self._tokenizers[backbone]
