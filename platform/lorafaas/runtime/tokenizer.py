"""The function's tokenizer without transformers: the `tokenizers` library on the
`tokenizer.json` the backbone server published (it always publishes one), with the special
tokens and decode options of `tokenizer_config.json`, and the chat template beside them.

It encodes and decodes as transformers' fast tokenizer on the same files does (transformers
calls the same library): special tokens added by the file's post-processor, special tokens
skipped on decode where asked, the config's `clean_up_tokenization_spaces` (never for BPE,
as transformers 5 does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from lorafaas.runtime.chat import ChatTemplate, load_chat_template

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                  "cls_token", "mask_token")
# transformers' clean_up_tokenization: spaces its WordPiece-era decoders left before marks.
_CLEAN_UPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
              (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class ServingTokenizer:
    """A published tokenizer: encode, decode, special ids and the chat template."""

    def __init__(self, tokenizer: Tokenizer, config: dict[str, Any],
                 chat_template: ChatTemplate | None) -> None:
        self._tokenizer = tokenizer
        self.special_tokens_map = {name: text for name in SPECIAL_TOKENS
                                   if (text := _token_text(config.get(name))) is not None}
        self.eos_token_id = self._id_of("eos_token")
        self.pad_token_id = self._id_of("pad_token")
        self.bos_token_id = self._id_of("bos_token")
        model = json.loads(tokenizer.to_str()).get("model", {}).get("type")
        self._clean_up = bool(config.get("clean_up_tokenization_spaces")) and model != "BPE"
        self.chat_template = chat_template

    @classmethod
    def from_folder(cls, folder: Path) -> ServingTokenizer:
        """The tokenizer of a published folder (tokenizer.json, tokenizer_config.json)."""
        config_path = folder / TOKENIZER_CONFIG
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_JSON)), config,
                   load_chat_template(folder, config))

    def _id_of(self, name: str) -> int | None:
        text = self.special_tokens_map.get(name)
        return None if text is None else self._tokenizer.token_to_id(text)

    def __call__(self, text: str) -> dict[str, list[int]]:
        """`{"input_ids": [...]}` with the special tokens the tokenizer adds."""
        return {"input_ids": self._tokenizer.encode(text, add_special_tokens=True).ids}

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of these ids."""
        text = self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)
        if self._clean_up:
            for before, after in _CLEAN_UPS:
                text = text.replace(before, after)
        return text

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """The chat as prompt text with the template (which must exist)."""
        assert self.chat_template is not None
        return self.chat_template.render(messages, self.special_tokens_map)


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
