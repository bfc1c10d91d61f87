"""Invoking an action: create the activation, run it on the invoker, store the record."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.billing.ledger import meter_activation
from lorafaas.billing.prices import PriceSheet
from lorafaas.controller.protocol import parameter_values
from lorafaas.controller.throttle import InvocationThrottle
from lorafaas.invoker.invoker import ActivationRequest, ActivationResult, Invoker
from lorafaas.invoker.pool import FunctionRef
from lorafaas.invoker.runtime_client import DeltaSink
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.models import Action, Activation
from lorafaas.registry.namespaces import Identity

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
                 tasks: set[asyncio.Task[Any]], *, prices: PriceSheet) -> None:
        self.sessions = sessions
        self.prices = prices
        self.store = store
        self.invoker = invoker
        self.throttle = throttle
        self.tasks = tasks

    def start(self, identity: Identity, action: Action, parameters: dict[str, Any],
              on_delta: DeltaSink | None = None) -> Invocation:
        """Start the activation in the background; its record is stored even if nobody waits.

        Raises TooManyRequests (429) when the namespace is over its throttles.
        """
        self.throttle.admit(identity.namespace)
        request = ActivationRequest(
            activation_id=uuid.uuid4().hex, namespace=identity.namespace, name=action.name,
            version=action.version, subject=identity.subject,
            function=FunctionRef(
                key=function_key(identity.namespace, action),
                path=f"{identity.namespace}/{action.name}",
                adapter_dir=self.store.folder(action.artifact_digest),
                memory_mb=action.limits["memory"]),
            parameters={**parameter_values(action.parameters), **parameters},
            limits=action.limits, received_at=time.time())
        task = asyncio.create_task(self._run_and_store(request, on_delta))
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, identity.namespace))
        return Invocation(request.activation_id, task)

    def _finished(self, task: asyncio.Task[Activation], namespace: str) -> None:
        self.tasks.discard(task)
        self.throttle.release(namespace)

    async def _run_and_store(self, request: ActivationRequest,
                             on_delta: DeltaSink | None) -> Activation:
        result = await self.invoker.run(request, on_delta)
        metered = meter_activation(request, result, self.prices)
        row = _activation_row(request, result, {"key": "cost", "value": metered.annotation})
        async with self.sessions() as session, session.begin():  # record and usage together
            session.add(row)
            session.add_all(metered.rows)
        logger.info("activation %s of %s/%s ended with status %d", request.activation_id,
                    request.namespace, request.name, result.status_code)
        return row


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
