"""The default handler's invocation parameters, checked before anything runs or is billed.

The runtime checks the same rules (`lorafaas.runtime.generation.parse_request`); checking
them here too refuses a bad invocation with a 400 before its activation exists, instead of
an application error after a container ran it. An action with its own `__main__.py` handler
takes any parameters: only its handler knows them.
"""

from __future__ import annotations

from typing import Any, cast

from lorafaas.errors import BadRequest

RUNTIME_DEFAULT_MAX_TOKENS = 64  # the runtime's default when `max_tokens` is absent
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch's manual_seed accepts


def check_generation_parameters(parameters: dict[str, Any], max_tokens_limit: int) -> None:
    """Refuse what the default handler would refuse, naming the parameter."""
    _check_prompt(parameters)
    max_tokens = parameters.get("max_tokens", RUNTIME_DEFAULT_MAX_TOKENS)
    _check_number(max_tokens, "max_tokens", 1, max_tokens_limit, integral=True)
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        if name in parameters:
            _check_number(parameters[name], name, 0.0, high, integral=False)
    if parameters.get("seed") is not None:
        _check_number(parameters["seed"], "seed", *SEED_RANGE, integral=True)
    _check_stop(parameters.get("stop"))
    for name in ("stream", "ignore_eos", "return_token_ids"):
        if name in parameters and not isinstance(parameters[name], bool):
            raise BadRequest(f"'{name}' must be true or false", param=name)


def _check_prompt(parameters: dict[str, Any]) -> None:
    if isinstance(parameters.get("prompt"), str):
        return
    messages = parameters.get("messages")
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str)
            and isinstance(m.get("role", "user"), str) for m in messages):
        return
    param = "messages" if "messages" in parameters else "prompt"
    raise BadRequest("the parameters need a 'prompt' string or a 'messages' list of "
                     "{role, content} objects with string content", param=param)


def _check_number(value: Any, name: str, low: float, high: float, *, integral: bool) -> None:
    kinds: tuple[type, ...] = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise BadRequest(f"'{name}' must be {'an integer' if integral else 'a number'}",
                         param=name)
    number = cast(float, value)
    if not low <= number <= high:
        raise BadRequest(f"'{name}' must be between {low:g} and {high:g}, not {str(value)[:40]}",
                         param=name)


def _check_stop(stop: Any) -> None:
    if stop is None or stop == [] or stop == "":
        return
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise BadRequest("'stop' must be a string or a list of non-empty strings", param="stop")
