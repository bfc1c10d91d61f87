"""Token-id helpers shared by the general path (runtime.batched) and the native engine, and
the tokenizer interface both use (transformers' tokenizers and `runtime.tokenizer` have it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class TextTokenizer(Protocol):
    """What serving asks of a tokenizer: encode a prompt, decode tokens, its special ids."""

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence id, if the tokenizer has one."""

    @property
    def pad_token_id(self) -> int | None:
        """The padding id, if the tokenizer has one."""

    def __call__(self, text: str, /) -> Mapping[str, Any]:
        """`{"input_ids": [...]}` of the text, with the tokenizer's special tokens."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = False) -> Any:
        """The text of these ids (a str; transformers types it wider)."""


def pad_id(tokenizer: TextTokenizer) -> int:
    """Any id works under the mask; the tokenizer's pad token when it has one."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0
