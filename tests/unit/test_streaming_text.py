"""Streamed text deltas add up to the final text, stop strings cut, whatever the tokens."""

from __future__ import annotations

from lorafaas.runtime.streaming import IncrementalText


class CharTokenizer:
    """Token ids are indexes into a fixed list of text pieces (several characters each)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.pieces[i] for i in ids)


def stream(pieces: list[str], stops: list[str], final: str) -> list[str]:
    text = IncrementalText(CharTokenizer(pieces), stops)  # type: ignore[arg-type]
    deltas = [text.add([i]) for i in range(len(pieces))]
    return [*deltas, text.finish(final)]


def test_a_token_running_past_a_stop_string_sends_nothing_after_it() -> None:
    deltas = stream(["m", "at", "ey", " matey"], ["e"], final="mat")
    assert "".join(deltas) == "mat"
    assert all("e" not in d and "y" not in d for d in deltas)


def test_a_longer_stop_string_is_held_back_until_it_settles() -> None:
    deltas = stream(["Hello", " wo", "rld", " E", "ND", " more"], [" END"], final="Hello world")
    assert "".join(deltas) == "Hello world"
    assert not any("E" in d for d in deltas)


def test_without_stops_every_piece_is_sent_as_it_comes() -> None:
    assert stream(["a", "b", "c"], [], final="abc") == ["a", "b", "c", ""]
