"""Invoking an action: create the activation, run it on the invoker, store the record.

An accepted invocation is written to `pending_invocations` before it starts, and that row is
deleted in the transaction that writes its record: the ones a stopped or crashed controller
left behind are run again at the next start (`resume_pending`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.billing.ledger import meter_activation
from lorafaas.billing.prices import PriceSheet
from lorafaas.controller.context_length import ContextCheck
from lorafaas.controller.prefill import PrefillProfiling
from lorafaas.controller.protocol import parameter_values
from lorafaas.controller.throttle import InvocationThrottle
from lorafaas.invoker.invoker import ActivationRequest, ActivationResult, Invoker
from lorafaas.invoker.pool import FunctionRef
from lorafaas.invoker.runtime_client import DeltaSink
from lorafaas.registry import actions as action_rows
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.models import Action, Activation, PendingInvocation
from lorafaas.registry.namespaces import Identity, find_namespace
from lorafaas.registry.profiles import record_loads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    """A started activation: its id and the task that finishes it."""

    activation_id: str
    task: asyncio.Task[Activation]


class InvocationService:
    """Starts activations and stores their records when they end."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ArtifactStore,
                 invoker: Invoker, throttle: InvocationThrottle,
                 tasks: set[asyncio.Task[Any]], *, prices: PriceSheet,
                 prefill: PrefillProfiling | None = None,
                 context: ContextCheck | None = None) -> None:
        self.sessions = sessions
        self.prices = prices
        self.store = store
        self.invoker = invoker
        self.throttle = throttle
        self.tasks = tasks
        self.prefill = prefill  # sizes batches by the function's profiled T(b)
        self.context = context  # refuses prompts plus max_tokens past the context length

    async def start(self, identity: Identity, action: Action, parameters: dict[str, Any],
                    on_delta: DeltaSink | None = None) -> Invocation:
        """Accept the activation (stored as pending) and start it in the background; its
        record is stored even if nobody waits.

        Raises BadRequest (400) when the prompt plus max_tokens exceeds the backbone's
        context length, TooManyRequests (429) when the namespace is over its throttles.
        """
        if self.context is not None:
            self.context.check(action_annotation(action, "backbone"), parameters)
        self.throttle.admit(identity.namespace)
        try:
            pending = PendingInvocation(activation_id=uuid.uuid4().hex,
                                        namespace=identity.namespace, action=action.name,
                                        subject=identity.subject, parameters=parameters,
                                        received_ms=int(time.time() * 1000))
            async with self.sessions() as session, session.begin():
                session.add(pending)
        except BaseException:
            self.throttle.release(identity.namespace)
            raise
        return self._submit(pending, action, on_delta)

    async def resume_pending(self) -> int:
        """Run the invocations accepted before the last stop that have no record; return
        how many were started."""
        async with self.sessions() as session:
            rows = list(await session.scalars(select(PendingInvocation)
                                              .order_by(PendingInvocation.received_ms)))
        started = 0
        for pending in rows:
            action = await self._pending_action(pending)
            if action is None:
                continue
            self.throttle.hold(pending.namespace)  # accepted already: never refused now
            self._submit(pending, action, None)
            started += 1
        logger.info("%d pending activations resubmitted", started)
        return started

    async def _pending_action(self, pending: PendingInvocation) -> Action | None:
        async with self.sessions() as session, session.begin():
            namespace = await find_namespace(session, pending.namespace)
            action = None if namespace is None else await action_rows.find_action(
                session, namespace.id, pending.action)
            if action is None:  # deleted since: nothing is left to run
                logger.warning("activation %s of %s/%s dropped: the action no longer exists",
                               pending.activation_id, pending.namespace, pending.action)
                await session.execute(delete(PendingInvocation).where(
                    PendingInvocation.activation_id == pending.activation_id))
        return action

    def _submit(self, pending: PendingInvocation, action: Action,
                on_delta: DeltaSink | None) -> Invocation:
        request = ActivationRequest(
            activation_id=pending.activation_id, namespace=pending.namespace, name=action.name,
            version=action.version, subject=pending.subject,
            function=FunctionRef(
                key=function_key(pending.namespace, action),
                path=f"{pending.namespace}/{action.name}",
                adapter_dir=self.store.folder(action.artifact_digest),
                memory_mb=action.limits["memory"], adapter_digest=action.artifact_digest),
            parameters={**parameter_values(action.parameters), **pending.parameters},
            limits=action.limits, received_at=pending.received_ms / 1000)
        if self.prefill is not None:  # before the request reaches the dispatcher's queue
            self.prefill.function_used(request.function.key, action, request.function.adapter_dir)
        task = asyncio.create_task(self._run_and_store(request, on_delta))
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, pending.namespace))
        return Invocation(request.activation_id, task)

    def _finished(self, task: asyncio.Task[Activation], namespace: str) -> None:
        self.tasks.discard(task)
        self.throttle.release(namespace)

    async def _run_and_store(self, request: ActivationRequest,
                             on_delta: DeltaSink | None) -> Activation:
        result = await self.invoker.run(request, on_delta)
        metered = meter_activation(request, result, self.prices)
        row = _activation_row(request, result, {"key": "cost", "value": metered.annotation})
        # The record, its usage, the artifact loads its start measured and the end of its
        # pending row commit together: the record is written anyway, so the profiles cost no
        # transaction of their own, and the upserts cannot conflict (registry.profiles).
        async with self.sessions() as session, session.begin():
            session.add(row)
            session.add_all(metered.rows)
            await record_loads(session, request.namespace, request.name,
                               request.function.adapter_digest, result.loads, result.end_ms)
            await session.execute(delete(PendingInvocation)
                                  .where(PendingInvocation.activation_id == request.activation_id))
        logger.info("activation %s of %s/%s ended with status %d", request.activation_id,
                    request.namespace, request.name, result.status_code)
        return row


def action_annotation(action: Action, key: str) -> Any:
    """The value of one of the action's annotations, or None."""
    return next((a.get("value") for a in action.annotations or [] if a.get("key") == key), None)


def function_key(namespace: str, action: Action) -> str:
    """The pool's key of an action's code: containers are reused only for the same code."""
    return f"{namespace}/{action.name}@{action.version}:{action.artifact_digest}"


def _activation_row(request: ActivationRequest, result: ActivationResult,
                    cost: dict[str, Any]) -> Activation:
    return Activation(activation_id=request.activation_id, namespace=request.namespace,
                      name=request.name, version=request.version, subject=request.subject,
                      start_ms=result.start_ms, end_ms=result.end_ms,
                      status_code=result.status_code, response=result.response, logs=result.logs,
                      annotations=[*result.annotations, cost])
