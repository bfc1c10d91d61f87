"""Chat templates rendered as transformers renders them, with jinja2 alone.

The template is the published `chat_template.jinja`, else `chat_template` in
`tokenizer_config.json` (a string, or named templates of which `default` is used). The
environment is transformers' (`apply_chat_template`): a sandbox, `trim_blocks` and
`lstrip_blocks`, loop controls, its `tojson` (no HTML escaping), `raise_exception` and
`strftime_now`; the template sees `messages` (keys whose value is None dropped),
`add_generation_prompt` and the named special tokens (`bos_token`, `eos_token`...).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

CHAT_TEMPLATE_FILE = "chat_template.jinja"


class ChatTemplate:
    """One compiled chat template."""

    def __init__(self, source: str) -> None:
        # jinja2 only where a checkpoint has a template: the import is not free.
        from jinja2 import nodes
        from jinja2.exceptions import TemplateError
        from jinja2.ext import Extension, loopcontrols
        from jinja2.parser import Parser
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class GenerationBlocks(Extension):
            """`{% generation %}...{% endgeneration %}` (assistant-mask markers): the body."""

            tags = {"generation"}  # noqa: RUF012 (jinja2 reads it as a class attribute)

            def parse(self, parser: Parser) -> nodes.Node:
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return nodes.Scope(body, lineno=lineno)

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
                   separators: Any = None, sort_keys: bool = False) -> str:
            return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                              separators=separators, sort_keys=sort_keys)

        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlocks, loopcontrols])
        environment.filters["tojson"] = tojson
        environment.globals["raise_exception"] = raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = environment.from_string(source)

    def render(self, messages: list[dict[str, Any]], special_tokens: dict[str, str]) -> str:
        """The chat as prompt text, ending with the assistant's turn opened."""
        plain = [{key: value for key, value in message.items() if value is not None}
                 for message in messages]
        return self._template.render(messages=plain, tools=None, documents=None,
                                     add_generation_prompt=True, **special_tokens)


def load_chat_template(folder: Path, tokenizer_config: dict[str, Any]) -> ChatTemplate | None:
    """The folder's chat template, or None when it has none."""
    path = folder / CHAT_TEMPLATE_FILE
    source: Any = path.read_text() if path.exists() else tokenizer_config.get("chat_template")
    if isinstance(source, list):  # named templates: [{"name", "template"}, ...]
        named = {entry.get("name"): entry.get("template") for entry in source}
        source = named.get("default")
    return ChatTemplate(source) if isinstance(source, str) and source else None
