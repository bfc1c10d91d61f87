"""Running a sequence: each component in turn, blocking, on the invocation service.

As OpenWhisk's `SequenceActions`: the sequence's parameters (its package's and binding's
under its own defaults, under the caller's) go to the first component; each component's
result is the next one's parameters; a component whose result holds `error`, or that fails,
ends the sequence with its response. The sequence's own record has the last response, the
component activation ids in `logs`, `duration` the sum of its components' durations (the
time they ran, not the time the sequence took: `end - start`), and the annotations
`topmost`, `path` (the sequence's own fully qualified name), `kind: sequence`, for a
sequence inside a sequence `causedBy: sequence` (and `cause`, the outer activation), and
`limits` (the sequence's timeout and logs, the largest memory its components' records name;
absent when no component left a record). Each component's record has `cause` (the sequence
activation) and `causedBy: sequence`; a record is written in the caller's namespace.

One mapping for LoRA chains (`lora_parameters`): a result `{"text", ...}` going to a lora
component that is given no `prompt` or `messages` gets `prompt` = that text.

Components run under the sequence's admission: the sequence counts once against the
namespace's throttles, and a component is never refused by them (`cause` holds its slot).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert

from lorafaas.controller.protocol import (
    LOG_LIMIT_MB,
    LORA_KIND,
    SEQUENCE_KIND,
    parameter_values,
)
from lorafaas.controller.sequence_actions import (
    NOT_FOUND,
    SEQUENCE_LIMIT,
    TOO_LONG,
    find_component,
    parse_component,
)
from lorafaas.errors import LoraFaasError
from lorafaas.registry.db import commit_unsynced
from lorafaas.registry.models import Action, Activation, PendingInvocation
from lorafaas.registry.namespaces import Identity, find_namespace
from lorafaas.registry.packages import Resolved

if TYPE_CHECKING:
    from lorafaas.controller.invocations import Durability, InvocationService

logger = logging.getLogger(__name__)

SUCCESS, APPLICATION_ERROR, WHISK_ERROR = 0, 1, 3
_STATUS = {SUCCESS: "success", APPLICATION_ERROR: "application error",
           WHISK_ERROR: "whisk internal error"}
FAILED = "Sequence failed."


def response(status_code: int, result: dict[str, Any]) -> dict[str, Any]:
    """An activation's `response` field."""
    return {"status": _STATUS[status_code], "statusCode": status_code,
            "success": status_code == SUCCESS, "result": result}


def lora_parameters(payload: dict[str, Any], component: Action) -> dict[str, Any]:
    """The parameters a component gets: the payload, and for a lora component given no
    prompt, `prompt` = the previous component's `text`."""
    text = payload.get("text")
    if component.exec_kind == LORA_KIND and isinstance(text, str) and \
            "prompt" not in payload and "messages" not in payload:
        return {**payload, "prompt": text}
    return payload


@dataclass
class Accounting:
    """What a sequence has run so far (OpenWhisk's `SequenceAccounting`)."""

    response: dict[str, Any]  # the last response: its result is the next payload
    status_code: int = SUCCESS
    logs: list[str] = field(default_factory=list)  # component activation ids, in order
    atomic: int = 0  # actions run, nested sequences inlined
    duration_ms: int = 0  # the components' durations, summed (OpenWhisk's `duration`)
    max_memory: int | None = None
    stopped: bool = False

    def ran(self, row: Activation) -> None:
        """A component's record: the sequence goes on unless its result holds `error`."""
        self.logs.append(row.activation_id)
        self.response, self.status_code = row.response, row.status_code
        self.duration_ms += row.duration_ms if row.duration_ms is not None else \
            row.end_ms - row.start_ms
        memory = record_memory(row)
        if memory is not None:
            self.max_memory = max(memory, self.max_memory or 0)
        result = row.response.get("result")
        self.stopped = row.status_code != SUCCESS or \
            (isinstance(result, dict) and "error" in result)

    def fail(self, status_code: int, message: str) -> None:
        """The sequence ends with an error of its own (no component record)."""
        self.response, self.status_code = response(status_code, {"error": message}), status_code
        self.stopped = True


class SequenceRunner:
    """Runs sequences on the invocation service and stores their records."""

    def __init__(self, service: InvocationService, limit: int = SEQUENCE_LIMIT) -> None:
        self.service = service
        self.limit = limit

    async def check(self, identity: Identity, resolved: Resolved,
                    parameters: dict[str, Any]) -> None:
        """Refuse, before the sequence is accepted, what its first atomic component would
        refuse (400): a bad invocation of a sequence runs and bills nothing either.
        `parameters`: the invocation's."""
        seen: set[int] = set()
        action = resolved.action
        while action.exec_kind == SEQUENCE_KIND and action.components and \
                action.id not in seen:
            seen.add(action.id)
            parameters = {**parameter_values(resolved.parameters()), **parameters}
            first = parse_component(action.components[0], identity.namespace)
            async with self.service.sessions() as session:
                found = await find_component(session, identity, first, owner=resolved)
            if found is None:
                return  # the run records it: the component may be created meanwhile
            resolved, action = found, found.action
        if action.exec_kind != SEQUENCE_KIND:
            parameters = {**parameter_values(resolved.inherited()), **parameters}
            self.service.check_parameters(action, lora_parameters(parameters, action))

    async def run(self, state: Durability, resolved: Resolved) -> Activation:
        """Run a topmost sequence accepted by the service and store its record."""
        pending = state.pending
        identity = await self._identity(pending.namespace, pending.subject)
        row, _ = await self._sequence(identity, resolved, pending.activation_id,
                                      pending.parameters, cause=None, atomic=0)
        async with state.lock, commit_unsynced(self.service.sessions) as session:
            await session.execute(insert(Activation), [_columns(row)])
            if state.durable:
                await session.execute(delete(PendingInvocation).where(
                    PendingInvocation.activation_id == row.activation_id))
            state.stored = True
        logger.info("sequence activation %s of %s/%s ended with status %d", row.activation_id,
                    row.namespace, row.name, row.status_code)
        return row

    async def _identity(self, namespace: str, subject: str) -> Identity:
        async with self.service.sessions() as session:
            found = await find_namespace(session, namespace)
        return Identity(subject=subject, namespace=namespace,
                        namespace_id=found.id if found is not None else -1, key_uuid="")

    async def _sequence(self, identity: Identity, resolved: Resolved, activation_id: str,
                        parameters: dict[str, Any], *, cause: str | None,
                        atomic: int) -> tuple[Activation, int]:
        """Run the components; return the sequence's record (stored by the caller) and the
        actions run so far, counted from the topmost sequence's start."""
        started = time.time()
        action = resolved.action
        payload = {**parameter_values(resolved.parameters()), **parameters}
        accounting = Accounting(response(SUCCESS, payload), atomic=atomic)
        for text in action.components or []:
            if accounting.atomic >= self.limit:
                accounting.fail(APPLICATION_ERROR, TOO_LONG)
                break
            await self._component(identity, resolved, text, activation_id, accounting)
            if accounting.stopped:
                break
        record = _record(identity, resolved, activation_id, accounting, started, cause)
        return record, accounting.atomic

    async def _component(self, identity: Identity, sequence: Resolved, text: str,
                         sequence_id: str, accounting: Accounting) -> None:
        """Run one component (an action or a nested sequence) of `sequence` and account for
        it."""
        component = parse_component(text, identity.namespace)
        async with self.service.sessions() as session:
            resolved = await find_component(session, identity, component, owner=sequence)
        if resolved is None:
            accounting.fail(APPLICATION_ERROR, NOT_FOUND)
            return
        action = resolved.action
        payload = accounting.response.get("result")
        payload = lora_parameters(payload if isinstance(payload, dict) else {}, action)
        try:
            if action.exec_kind == SEQUENCE_KIND:
                row = await self._nested(identity, resolved, payload, sequence_id,
                                         accounting)
            else:
                invocation = await self.service.start(identity, action, payload, durable=False,
                                                      cause=sequence_id, resolved=resolved)
                row = await invocation.task
                accounting.atomic += 1
        except LoraFaasError as error:  # refused its parameters: the sequence's error
            accounting.fail(APPLICATION_ERROR, f"{component}: {error.message}")
            return
        except Exception:
            logger.exception("component %s of sequence activation %s failed", component,
                             sequence_id)
            accounting.fail(WHISK_ERROR, FAILED)
            return
        accounting.ran(row)

    async def _nested(self, identity: Identity, resolved: Resolved, payload: dict[str, Any],
                      cause: str, accounting: Accounting) -> Activation:
        """A sequence inside the sequence: its own record, caused by the outer one."""
        row, accounting.atomic = await self._sequence(identity, resolved, uuid.uuid4().hex,
                                                      payload, cause=cause,
                                                      atomic=accounting.atomic)
        async with commit_unsynced(self.service.sessions) as session:
            await session.execute(insert(Activation), [_columns(row)])
        return row


def record_memory(row: Activation) -> int | None:
    """The memory limit a record's `limits` annotation names (OpenWhisk's `maxMemory`
    reads it so, a nested sequence's included)."""
    limits = next((a["value"] for a in row.annotations if a.get("key") == "limits"), None)
    memory = limits.get("memory") if isinstance(limits, dict) else None
    return memory if isinstance(memory, int) and not isinstance(memory, bool) else None


def sequence_limits(action: Action, max_memory: int) -> dict[str, Any]:
    """The record's `limits`: the sequence's timeout and logs with the largest memory of its
    components (OpenWhisk's `ActionLimits(timeout, memory, logs)`, concurrency its default)."""
    return {"timeout": action.limits.get("timeout"), "memory": max_memory,
            "logs": action.limits.get("logs", LOG_LIMIT_MB), "concurrency": 1}


def _record(identity: Identity, resolved: Resolved, activation_id: str,
            accounting: Accounting, started: float, cause: str | None) -> Activation:
    ended = time.time()
    action = resolved.action
    annotations: list[dict[str, Any]] = [
        {"key": "topmost", "value": cause is None},
        {"key": "path", "value": str(resolved.name)},
        {"key": "kind", "value": SEQUENCE_KIND}]
    if cause is not None:
        annotations.append({"key": "causedBy", "value": SEQUENCE_KIND})
    if accounting.max_memory is not None:
        annotations.append({"key": "limits",
                            "value": sequence_limits(action, accounting.max_memory)})
    return Activation(activation_id=activation_id, namespace=identity.namespace,
                      name=action.name, version=action.version, subject=identity.subject,
                      start_ms=int(started * 1000), end_ms=int(ended * 1000),
                      status_code=accounting.status_code, response=accounting.response,
                      logs=list(accounting.logs), annotations=annotations, cause=cause,
                      duration_ms=accounting.duration_ms)


def _columns(row: Activation) -> dict[str, Any]:
    # Imported here: the invocation service imports this module (it dispatches to it).
    from lorafaas.controller.invocations import set_columns

    return set_columns(row)
