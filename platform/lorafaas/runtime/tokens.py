"""Token-id helpers shared by the general path (runtime.batched) and the native engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the native engine must not import transformers to use this
    from transformers import PreTrainedTokenizerBase


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Any id works under the mask; the tokenizer's pad token when it has one."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0
