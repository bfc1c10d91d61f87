"""Several invokers' Prometheus metrics as one text: each sample gains an `invoker` label,
and each metric's HELP and TYPE lines are written once."""

from __future__ import annotations

from collections.abc import Mapping

from lorafaas.invoking.client import MetricsText

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def labelled(line: str, invoker_id: str) -> str:
    """One sample line with the invoker's label first among its labels."""
    label = f'invoker="{invoker_id}"'
    name, brace, rest = line.partition("{")
    if brace:
        return f"{name}{{{label},{rest}" if not rest.startswith("}") else f"{name}{{{label}{rest}"
    name, _, value = line.partition(" ")
    return f"{name}{{{label}}} {value}"


def merge_metrics(texts: Mapping[str, MetricsText]) -> MetricsText:
    """The invokers' metrics (invoker id -> its text) as one exposition."""
    seen: set[str] = set()
    lines: list[str] = []
    for invoker_id in sorted(texts):
        for line in texts[invoker_id].body.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                if line not in seen:
                    seen.add(line)
                    lines.append(line)
                continue
            lines.append(labelled(line, invoker_id))
    content_type = next((t.content_type for t in texts.values()), CONTENT_TYPE)
    return MetricsText("\n".join(lines) + "\n" if lines else "", content_type)
