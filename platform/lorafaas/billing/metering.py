"""The arithmetic of metering: who used which share of each step, and what that costs.

Pure functions, no I/O. On a CPU host an activation is billed the CPU time the host read
from its container's cgroup while it ran (its share of a batch's, split by tokens: see
lorafaas.invoker.cpu_shares), so a busy neighbour, which makes it wait for a core but not
compute more, does not make it pay more: accelerator-seconds are those CPU-seconds over the
priced accelerator's vCPUs, and its GB-seconds are the memory limit times that CPU time on
the container's own cores. Where the host could not read the counter (and on an accelerator
host) an activation's accelerator-seconds are its share of every batched step it took part
in, in wall time, split by the tokens each sequence processed in that step (a prefill
processes the prompt, a decode step one token), and its GB-seconds the memory limit times
its share of the container's busy time; the record says which measure billed it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lorafaas.billing.prices import GB_MB, PriceSheet

K = TypeVar("K", bound=Hashable)
# Timings the invoker adds to the runtime's (never the runtime's own: the runner replaces
# them): the CPU time billed to the request, and that time on the container's cores.
CPU_KEY = "cpuMs"
BUSY_KEY = "cpuBusyMs"
CGROUP_CPU = "cgroup-cpu"  # the measures, as the cost annotation names them
WALL_TIME = "wall-time"
DURATION = "duration"  # a code action: its run time × its memory limit, as OpenWhisk bills
# Timings a function's own handler reports: the tokens of all its `llm` calls (its result
# is the owner's, so its `usage`, if any, is no measure).
PROMPT_TOKENS_KEY = "promptTokens"
COMPLETION_TOKENS_KEY = "completionTokens"


@dataclass(frozen=True)
class Step:
    """One measured step of the backbone: its duration and the tokens each sequence in it
    processed."""

    duration_s: float
    tokens: Mapping[Hashable, int]


def split_by_tokens(duration_s: float, tokens: Sequence[int]) -> list[float]:
    """Split one step's duration among its sequences in proportion to their tokens.

    The shares add up to the duration; a step where nobody processed a token is split evenly.
    """
    if duration_s < 0:
        raise ValueError(f"a step cannot last {duration_s} s")
    if not tokens or any(count < 0 for count in tokens):
        raise ValueError(f"a step needs sequences with token counts >= 0, not {list(tokens)}")
    total = sum(tokens)
    if total == 0:
        return [duration_s / len(tokens)] * len(tokens)
    return [duration_s * count / total for count in tokens]


def attribute_steps(steps: Iterable[Step]) -> dict[Hashable, float]:
    """Accelerator-seconds of each sequence: the sum of its shares of every step it was in."""
    seconds: dict[Hashable, float] = {}
    for step in steps:
        keys = list(step.tokens)
        shares = split_by_tokens(step.duration_s, [step.tokens[key] for key in keys])
        for key, share in zip(keys, shares, strict=True):
            seconds[key] = seconds.get(key, 0.0) + share
    return seconds


def gb_seconds(memory_mb: float, busy_s: float, share: float = 1.0) -> float:
    """Memory limit (GB) × the part of the container's busy time that is this activation's."""
    if memory_mb < 0 or busy_s < 0 or not 0 <= share <= 1:
        raise ValueError(f"bad GB-seconds inputs: {memory_mb} MB, {busy_s} s, share {share}")
    return memory_mb / GB_MB * busy_s * share


@dataclass(frozen=True)
class Usage:
    """What one activation used."""

    accelerator_s: float
    gb_s: float
    prompt_tokens: int
    completion_tokens: int
    measure: str = WALL_TIME  # what the seconds are: CGROUP_CPU or WALL_TIME
    cpu_s: float | None = None  # with CGROUP_CPU: the CPU-seconds billed


@dataclass(frozen=True)
class Cost:
    """USD of each part of a usage."""

    accelerator: float
    memory: float
    prompt: float
    completion: float

    @property
    def total(self) -> float:
        """The sum of the parts."""
        return self.accelerator + self.memory + self.prompt + self.completion


def cost_of(usage: Usage, prices: PriceSheet) -> Cost:
    """The usage times the price sheet."""
    return Cost(accelerator=usage.accelerator_s * prices.accelerator_second,
                memory=usage.gb_s * prices.gb_second,
                prompt=usage.prompt_tokens * prices.prompt_mtok / 1e6,
                completion=usage.completion_tokens * prices.completion_mtok / 1e6)


def single_sequence_steps(key: K, timings_ms: Mapping[str, float], prompt_tokens: int,
                          completion_tokens: int) -> list[Step]:
    """The steps of a generation that ran alone (batch size 1): its prefill, then its decode.

    A batched runtime that reports its own share (`compute`, ms) is trusted instead.
    """
    if "compute" in timings_ms:
        return [Step(timings_ms["compute"] / 1000, {key: prompt_tokens + completion_tokens})]
    return [Step(timings_ms.get("prefill", 0.0) / 1000, {key: prompt_tokens}),
            Step(timings_ms.get("decode", 0.0) / 1000, {key: completion_tokens})]


def activation_usage(timings_ms: Mapping[str, float], memory_mb: float,
                     result: Mapping[str, Any],
                     cpus_per_accelerator: float | None = None) -> Usage:
    """Meter one activation: by the CPU time the host measured where it did and the
    accelerator is CPUs (`cpus_per_accelerator` of them), else from the runtime's timings:
    alone in its container, or in a batch whose runtime reports each request's share
    (`compute`).

    An activation that never reached the runtime (no timings) used no accelerator and its
    container was not busy for it.
    """
    reported = result.get("usage")
    tokens: Mapping[str, Any] = reported if isinstance(reported, Mapping) else {}
    if PROMPT_TOKENS_KEY in timings_ms:  # a handler ran: the runtime counted its calls
        tokens = {"prompt_tokens": int(timings_ms[PROMPT_TOKENS_KEY]),
                  "completion_tokens": int(timings_ms.get(COMPLETION_TOKENS_KEY, 0))}
    prompt = _count(tokens.get("prompt_tokens"))
    completion = _count(tokens.get("completion_tokens"))
    if cpus_per_accelerator is not None and CPU_KEY in timings_ms:
        cpu_s = timings_ms[CPU_KEY] / 1000
        busy_s = timings_ms.get(BUSY_KEY, timings_ms[CPU_KEY]) / 1000
        return Usage(cpu_s / cpus_per_accelerator, gb_seconds(memory_mb, busy_s), prompt,
                     completion, CGROUP_CPU, cpu_s)
    steps = single_sequence_steps("self", timings_ms, prompt, completion)
    accelerator_s = attribute_steps(steps).get("self", 0.0)
    # In a batch the container is busy for every request at once: each pays for its share
    # of the busy steps (`compute`), not for the whole time its batch ran before it ended.
    busy_s = timings_ms.get("compute", timings_ms.get("total", 0.0)) / 1000
    return Usage(accelerator_s, gb_seconds(memory_mb, busy_s), prompt, completion)


def code_action_usage(timings_ms: Mapping[str, float], memory_mb: float) -> Usage:
    """Meter a code action as OpenWhisk does: its memory limit (GB) × the time its code ran
    (`total`, ms, as its runtime measured it); no accelerator, no tokens."""
    run_s = max(0.0, float(timings_ms.get("total", 0.0))) / 1000
    return Usage(0.0, gb_seconds(memory_mb, run_s), 0, 0, DURATION)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def cost_annotation(usage: Usage, cost: Cost, prices: PriceSheet) -> dict[str, Any]:
    """The `cost` annotation of an activation record."""
    return {"currency": "USD", "total": round(cost.total, 12),
            "accelerator": round(cost.accelerator, 12), "memory": round(cost.memory, 12),
            "promptTokens": round(cost.prompt, 12),
            "completionTokens": round(cost.completion, 12),
            "acceleratorSeconds": round(usage.accelerator_s, 6),
            "gbSeconds": round(usage.gb_s, 6), "acceleratorKind": prices.accelerator_kind,
            "measure": usage.measure,
            **({"cpuSeconds": round(usage.cpu_s, 6)} if usage.cpu_s is not None else {})}
