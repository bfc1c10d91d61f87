"""Streaming a generation as text deltas whose concatenation is exactly the final text."""

from __future__ import annotations

from lorafaas.runtime.tokens import TextTokenizer


class IncrementalText:
    """Turns a growing list of token ids into text deltas.

    The whole text is decoded again at each step (decoding token by token would split
    multi-byte characters and drop tokenizer spacing rules). A tail that could still
    become a stop string, or that ends in half a character, is held back until it settles;
    `finish` hands over the rest of the final text so the deltas always add up to it.
    """

    def __init__(self, tokenizer: TextTokenizer, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.holdback = max((len(stop) for stop in stops), default=1) - 1
        self.tokens: list[int] = []
        self.sent = 0

    def add(self, token_ids: list[int]) -> str:
        """The new text that can be sent after these tokens ('' when none yet)."""
        self.tokens.extend(token_ids)
        text = str(self.tokenizer.decode(self.tokens, skip_special_tokens=True))
        # One token may complete a stop string and run past it: the text ends before the
        # earliest stop, as the final result's does, and nothing after it is ever sent.
        cut = min((text.find(stop) for stop in self.stops if stop in text), default=None)
        settled = len(text) - self.holdback if cut is None else cut
        while settled > self.sent and text[settled - 1] == "\ufffd":
            settled -= 1  # half a multi-byte character: wait for the rest
        if settled <= self.sent:
            return ""
        delta, self.sent = text[self.sent:settled], settled
        return delta

    def finish(self, final_text: str) -> str:
        """What is left of the final text (stop strings cut) after the deltas sent.

        The held-back tail is never shorter than a stop string, so what was sent is
        always a prefix of the final text.
        """
        return final_text[self.sent:]
