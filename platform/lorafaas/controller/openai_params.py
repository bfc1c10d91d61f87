"""Which OpenAI request parameters the platform honours, ignores, or refuses.

A parameter the platform cannot honour is refused with a 400 naming it, never ignored: a
client that asks for `n=2`, log-probabilities or a tool call must not get an answer that
silently lacks them. Each refused parameter is accepted at its neutral value (`n: 1`,
`logprobs: false`, `presence_penalty: 0`...), which is what clients send by default, and a
parameter that is in no list below is refused too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lorafaas.controller.openai_errors import InvalidParameter

# Honoured: read by openai_protocol.
HONOURED = frozenset({"model", "messages", "prompt", "max_tokens", "max_completion_tokens",
                      "temperature", "top_p", "seed", "stop", "stream", "stream_options",
                      "ignore_eos"})
# Accepted and without effect on the output: who the caller is, what it tags requests with.
IGNORED = frozenset({"user", "metadata", "safety_identifier", "prompt_cache_key",
                     "parallel_tool_calls"})


def _none(value: Any) -> bool:
    return value is None


def _none_or(*neutral: Any) -> Callable[[Any], bool]:
    # `is` for booleans: 0 == False, and `logprobs: 0` asks for log-probabilities.
    def neutral_value(value: Any) -> bool:
        return value is None or any(value is n if isinstance(n, bool) else
                                    (value == n and not isinstance(value, bool))
                                    for n in neutral)
    return neutral_value


def _zero(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and value == 0)


def _text_format(value: Any) -> bool:
    return value is None or value == {"type": "text"}


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


# Refused unless neutral: the test of the neutral value and what the platform lacks.
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (_none_or(1), "only n=1 is supported: each request generates one choice"),
    "best_of": (_none_or(1), "only best_of=1 is supported"),
    "logprobs": (_none_or(False), "log-probabilities are not supported"),
    "top_logprobs": (_none_or(0), "log-probabilities are not supported"),
    "echo": (_none_or(False), "echo is not supported"),
    "suffix": (_none_or(""), "suffix (insertion) is not supported"),
    "response_format": (_text_format, "only response_format {\"type\": \"text\"} is supported"),
    "tools": (_empty, "tools (function calling) are not supported"),
    "tool_choice": (_none_or("none"), "tools (function calling) are not supported"),
    "functions": (_empty, "functions (function calling) are not supported"),
    "function_call": (_none_or("none"), "functions (function calling) are not supported"),
    "logit_bias": (_empty, "logit_bias is not supported"),
    "presence_penalty": (_zero, "presence_penalty is not supported (only 0)"),
    "frequency_penalty": (_zero, "frequency_penalty is not supported (only 0)"),
    "modalities": (lambda v: v is None or v == ["text"], "only the text modality is supported"),
    "audio": (_none, "audio output is not supported"),
    "prediction": (_none, "predicted outputs are not supported"),
    "reasoning_effort": (_none, "reasoning_effort is not supported"),
    "verbosity": (_none, "verbosity is not supported"),
    "web_search_options": (_none, "web search is not supported"),
    "store": (_none_or(False), "stored completions are not supported"),
    "service_tier": (_none_or("auto", "default"), "only the default service tier exists"),
}


def check_parameters(body: dict[str, Any]) -> None:
    """Refuse, naming it, the first parameter the platform cannot honour."""
    for name, value in body.items():
        if name in HONOURED or name in IGNORED:
            continue
        if name not in REFUSED:
            raise InvalidParameter(f"Unsupported parameter: '{name}' is not supported by "
                                   "this server.", name, "unsupported_parameter")
        neutral, reason = REFUSED[name]
        if not neutral(value):
            raise InvalidParameter(f"Unsupported value of '{name}': {reason}.", name,
                                   "unsupported_parameter")


def optional_int(body: dict[str, Any], name: str, low: int) -> int | None:
    """An integer parameter of at least `low`, or None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameter(f"'{name}' must be an integer of at least {low}, not "
                               f"{value!r}.", name)
    return value


def optional_number(body: dict[str, Any], name: str, low: float, high: float
                    ) -> float | None:
    """A number parameter between `low` and `high`, or None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise InvalidParameter(f"'{name}' must be a number between {low:g} and {high:g}, "
                               f"not {value!r}.", name)
    return value


def optional_stop(body: dict[str, Any]) -> list[str] | None:
    """`stop`: a string or a list of up to 4 non-empty strings (OpenAI's limit)."""
    value = body.get("stop")
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > 4
            or not all(isinstance(s, str) and s for s in stops)):
        raise InvalidParameter("'stop' must be a string or a list of up to 4 non-empty "
                               "strings.", "stop")
    return stops or None


def optional_bool(body: dict[str, Any], name: str) -> bool:
    """A boolean parameter (false when absent or null)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidParameter(f"'{name}' must be true or false, not {value!r}.", name)
    return value


def include_usage(body: dict[str, Any], stream: bool) -> bool:
    """Whether a stream ends with a usage chunk: `stream_options: {"include_usage": true}`."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise InvalidParameter("The 'stream_options' parameter is only allowed when 'stream' "
                               "is enabled.", "stream_options")
    # include_obfuscation pads chunks against side channels; it changes no text.
    if not isinstance(options, dict) or not set(options) <= {"include_usage",
                                                             "include_obfuscation"}:
        raise InvalidParameter("'stream_options' supports only 'include_usage'.",
                               "stream_options")
    value = options.get("include_usage")
    if value is not None and not isinstance(value, bool):
        raise InvalidParameter("'stream_options.include_usage' must be true or false.",
                               "stream_options")
    return bool(value)
