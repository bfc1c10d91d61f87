"""The runtime renders chat templates (jinja2 alone) as transformers renders them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError

from lorafaas.runtime.chat import ChatTemplate, load_chat_template

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% continue %}{% endif %}\n"
    "  <|{{ message['role'] }}|> {{ message['content'] }}"
    "{% if message.meta is defined %} {{ message.meta | tojson }}{% endif %}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{% generation %}<|assistant|>{% endgeneration %}{% endif %}")
MESSAGES = [{"role": "system", "content": "skipped"},
            {"role": "user", "content": "héllo <b>", "meta": {"k": "é<>"}},
            {"role": "assistant", "content": "hi", "name": None}]
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


def test_rendered_as_transformers_renders_it() -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    expected, _ = render_jinja_template([MESSAGES], chat_template=TEMPLATE,
                                        add_generation_prompt=True, **SPECIAL)
    rendered = ChatTemplate(TEMPLATE).render(MESSAGES, SPECIAL)
    assert rendered == expected[0]
    assert '{"k": "é<>"}' in rendered  # tojson escapes no HTML, keeps non-ASCII


def test_raise_exception_fails_the_render() -> None:
    template = ChatTemplate("{{ raise_exception('only user turns') }}")
    with pytest.raises(TemplateError, match="only user turns"):
        template.render(MESSAGES, SPECIAL)


def test_the_template_file_wins_over_the_tokenizer_config(tmp_path: Path) -> None:
    assert load_chat_template(tmp_path, {}) is None
    config = {"chat_template": [{"name": "tool_use", "template": "tools"},
                                {"name": "default", "template": "plain"}]}
    named = load_chat_template(tmp_path, config)
    assert named is not None and named.render([], {}) == "plain"
    (tmp_path / "chat_template.jinja").write_text("file")
    from_file = load_chat_template(tmp_path, json.loads(json.dumps(config)))
    assert from_file is not None and from_file.render([], {}) == "file"
