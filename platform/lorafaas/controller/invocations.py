"""Invoking an action: create the activation, run it on the invoker, store the record.

A non-blocking invocation is written to `pending_invocations` before it is accepted (the
202), and that row is deleted in the transaction that writes its record. The controller
holds the row's lease while it runs it (`lorafaas.registry.leases`): the ones a stopped or
crashed controller left behind are run again by exactly one controller, the only one at
its next start, or, of several (`resuming`), the first to find the lease run out. A
blocking one is recorded when it ends, as OpenWhisk does: its caller waits for the answer,
so the request does not wait for a pending row as well; if the blocking wait runs out first,
the row is written before the 202 (`make_durable`), so every 202 is durable.

A blocking caller is answered as soon as the record is built (`Invocation.answer`); the
record, its usage and the end of its pending row are committed just after, off the
caller's path. Until that commit, reads of the activation on this controller wait for it
(`settled`), so a GET that follows the answer finds the record. A crash in between loses
the record of a blocking activation whose caller had its answer (as an unsynced commit may
lose it when the machine crashes); a non-blocking one keeps its pending row, so it runs
again rather than being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.adapters.archive import HANDLER_NAME
from lorafaas.background import running_in_background
from lorafaas.billing.ledger import MeteredActivation, meter_activation
from lorafaas.billing.prices import PriceSheet
from lorafaas.controller.context_length import ContextCheck
from lorafaas.controller.function_refs import action_backbone, code_digest, function_ref
from lorafaas.controller.invoke_params import check_generation_parameters
from lorafaas.controller.protocol import LORA_KIND, SEQUENCE_KIND, parameter_values
from lorafaas.controller.sequences import SequenceRunner
from lorafaas.controller.throttle import InvocationThrottle, SharedCounts
from lorafaas.errors import Forbidden, NotFound
from lorafaas.invoking.activations import ActivationRequest, ActivationResult, DeltaSink
from lorafaas.invoking.client import InvokerClient
from lorafaas.names import InvalidName, QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import leases
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import commit_unsynced
from lorafaas.registry.models import Action, Activation, PendingInvocation, UsageRecord
from lorafaas.registry.namespaces import Identity, find_namespace
from lorafaas.registry.packages import Resolved, is_shared_run_name, resolve_action, resolve_shared
from lorafaas.registry.profiles import record_loads

logger = logging.getLogger(__name__)

DRAIN_S = 30.0  # how long a stopping controller lets its activations end
CLAIM_LIMIT = 100  # pending rows claimed per pass: a large takeover spreads over passes


@dataclass
class Durability:
    """Whether an activation's pending row exists, and whether its record is stored: the
    two writes never interleave (the lock), so no pending row outlives its record."""

    pending: PendingInvocation
    durable: bool  # its pending row is written
    stored: bool = False  # its record is written
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Invocation:
    """A started activation: its id, the task that finishes it (its record stored), and
    the answer (its record built, maybe not stored yet: see the module doc)."""

    activation_id: str
    task: asyncio.Task[Activation]
    durability: Durability
    answer: asyncio.Future[Activation]


class InvocationService:
    """Starts activations and stores their records when they end."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ArtifactStore,
                 invoker: InvokerClient, throttle: InvocationThrottle,
                 tasks: set[asyncio.Task[Any]], *, prices: PriceSheet,
                 context: ContextCheck | None = None, controller_id: str | None = None,
                 shared: SharedCounts | None = None) -> None:
        self.sessions = sessions
        self.controller_id = controller_id or uuid.uuid4().hex[:16]  # its pending rows' owner
        self.prices = prices
        self.store = store
        self.invoker = invoker  # the seam: the activation runs wherever the invoker puts it
        self.throttle = throttle
        self.shared = shared  # the throttles held across controllers (None: this one alone)
        self._releases: set[asyncio.Task[None]] = set()
        self.tasks = tasks
        self.context = context  # refuses prompts plus max_tokens past the context length
        self.sequences = SequenceRunner(self)  # runs the actions of kind sequence
        # Activations answered whose record is being committed: id -> (namespace, task).
        self._storing: dict[str, tuple[str, asyncio.Task[Activation]]] = {}
        self._running: set[str] = set()  # ids of the activations this controller runs
        self._resuming: set[str] = set()  # ids claimed by a pass, not yet started
        self._background: set[asyncio.Task[Any]] = set()  # leases being released

    async def start(self, identity: Identity, action: Action, parameters: dict[str, Any],
                    on_delta: DeltaSink | None = None, *, durable: bool = True,
                    resolved: Resolved | None = None, cause: str | None = None) -> Invocation:
        """Accept the activation and start it in the background; its record is stored even
        if nobody waits. `durable`: stored as pending first, so that it runs even after a
        crash (a blocking caller, which waits for the answer, passes False). `cause`: the
        sequence activation running it, whose admission it runs under (never throttled).

        Raises BadRequest (400) when the default handler would refuse the parameters or the
        prompt plus max_tokens exceeds the backbone's context length, and TooManyRequests
        (429) when the namespace is over its throttles: all before anything is stored, run
        or billed. `resolved`: how the name called reached the action (a package, a
        binding); it runs under that name, in the caller's namespace. Parameters merge as
        `merged_parameters` does.
        """
        resolved = resolved or Resolved(action, qualified_name(identity.namespace, action),
                                        qualified_name(identity.namespace, action))
        if action.exec_kind == SEQUENCE_KIND:
            await self.sequences.check(identity, resolved, parameters)
        else:
            self.check_parameters(action, {**parameter_values(resolved.inherited()),
                                           **parameters})
            if self.context is not None and not self._own_code(action):
                self.context.check(action_backbone(action), parameters)
        if cause is None:
            await self._admit(identity.namespace)
        else:
            await self._hold(identity.namespace)
        try:
            pending = PendingInvocation(activation_id=uuid.uuid4().hex,
                                        namespace=identity.namespace,
                                        action=_pending_name(resolved),
                                        subject=identity.subject, parameters=parameters,
                                        received_ms=int(time.time() * 1000))
            if durable:
                await self._write_pending(pending)
        except BaseException:
            self._release(identity.namespace)
            raise
        return self._submit(Durability(pending, durable), resolved, on_delta, cause)

    async def _admit(self, namespace: str) -> None:
        if self.shared is None:
            self.throttle.admit(namespace)
        else:
            await self.shared.admit(namespace)
            self.throttle.hold(namespace)

    async def _hold(self, namespace: str) -> None:
        if self.shared is not None:
            await self.shared.hold(namespace)
        self.throttle.hold(namespace)

    def _release(self, namespace: str) -> None:
        self.throttle.release(namespace)
        if self.shared is not None:  # off the caller's path: a done callback calls it
            task = asyncio.ensure_future(self.shared.release(namespace))
            self._releases.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("a shared throttle's release failed: %s", error)

    async def make_durable(self, invocation: Invocation) -> None:
        """Write the activation's pending row unless it has one or its record is stored:
        before a 202 for a blocking invocation still running."""
        state = invocation.durability
        async with state.lock:
            if state.durable or state.stored:
                return
            await self._write_pending(PendingInvocation(
                activation_id=state.pending.activation_id, namespace=state.pending.namespace,
                action=state.pending.action, subject=state.pending.subject,
                parameters=state.pending.parameters, received_ms=state.pending.received_ms))
            state.durable = True

    async def settled(self, namespace: str | None, activation_id: str | None = None) -> None:
        """Wait until the records answered but not yet committed are stored: the one of
        `activation_id`, or every one of the namespace (None: of every namespace), so that
        a read of its records, usage or profiles that follows finds them."""
        tasks = [task for key, (owner, task) in self._storing.items()
                 if namespace in (None, owner) and activation_id in (None, key)]
        if tasks:
            await asyncio.wait(tasks)  # a failed store fails its own task, not this read

    async def _write_pending(self, pending: PendingInvocation) -> None:
        leases.lease(pending, self.controller_id)
        async with self.sessions() as session, session.begin():
            session.add(pending)

    def check_parameters(self, action: Action, parameters: dict[str, Any]) -> None:
        """Refuse parameters the action's default handler would refuse (400)."""
        if self._own_code(action):
            return  # its own handler (or a code action's main) takes any parameters
        check_generation_parameters({**parameter_values(action.parameters), **parameters},
                                    int(action.limits["max_tokens"]))

    def _own_code(self, action: Action) -> bool:
        """Whether the owner's code takes the parameters: a code action, or a handler."""
        return action.exec_kind != LORA_KIND or \
            (self.store.folder(code_digest(action)) / HANDLER_NAME).exists()

    async def resume_pending(self, every: bool = False) -> int:
        """Claim and run the accepted invocations that have no record and whose lease ran
        out, at most `CLAIM_LIMIT` of them (`every`: all of them, for the only controller,
        at its start); return how many were started."""
        async with self.sessions() as session, session.begin():
            rows = await leases.claim(session, self.controller_id, every=every,
                                      limit=None if every else CLAIM_LIMIT)
        started = 0
        # Renewed until started: a row claimed and not started (a failure below) lapses.
        self._resuming = {pending.activation_id for pending in rows}
        try:
            for pending in rows:
                if pending.activation_id in self._running:
                    continue  # its own, renewed late: it runs here already
                resolved = await self._pending_action(pending)
                if resolved is None:
                    continue
                await self._hold(pending.namespace)  # accepted already: never refused now
                self._submit(Durability(pending, durable=True), resolved, None)
                started += 1
        finally:
            self._resuming = set()
        if started or every:
            logger.info("%d pending activations resubmitted", started)
        return started

    @contextlib.asynccontextmanager
    async def resuming(self, drain_s: float = DRAIN_S) -> AsyncIterator[None]:
        """Until exit, renew the leases of the activations this controller runs and resume
        those whose controller's lease ran out (one of several controllers). On exit, stop
        claiming, let what runs end (within `drain_s`, its leases still renewed), then give
        up the leases left, so that another controller resumes them at once."""
        async with running_in_background(self._renewing()):
            try:
                async with running_in_background(self._claiming()):
                    yield
            finally:
                await self.drain(drain_s)
        try:
            async with self.sessions() as session, session.begin():
                await leases.release(session, self.controller_id)
        except Exception:  # their leases run out instead
            logger.warning("pending activations' leases not released", exc_info=True)

    async def _renewing(self) -> None:
        # Its own loop: a long claiming pass never delays renewal past the lease.
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    await leases.renew(session, self.controller_id,
                                       self._running | self._resuming)
            except Exception:  # the registry away: tried again next time
                logger.warning("pending activations' leases not renewed", exc_info=True)
            await asyncio.sleep(leases.RENEW_S)

    async def _claiming(self) -> None:
        while True:
            try:
                await self.resume_pending()
            except Exception:  # the registry or the broker away: tried again next time
                logger.warning("pending activations not resumed", exc_info=True)
            await asyncio.sleep(leases.RENEW_S)

    async def drain(self, timeout_s: float) -> None:
        """Let the running activations end within `timeout_s`; cancel those still running."""
        tasks = list(self.tasks)
        if not tasks:
            return
        _, left = await asyncio.wait(tasks, timeout=timeout_s)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)

    async def _pending_action(self, pending: PendingInvocation) -> Resolved | None:
        async with self.sessions() as session, session.begin():
            namespace = await find_namespace(session, pending.namespace)
            action = None
            if namespace is not None:
                # Resolved again: a binding reaches what its package holds now. A name made
                # before names were checked as OpenWhisk's names nothing now.
                with contextlib.suppress(NotFound, InvalidName, Forbidden):
                    name = QualifiedName.parse(pending.action, pending.namespace)
                    if name.namespace != pending.namespace:  # checked again: unpublished?
                        action = await resolve_shared(session, pending.namespace, name)
                    else:
                        found = await action_rows.find_action(session, namespace.id, name)
                        action = await resolve_action(session, name, found)
            if action is None:  # deleted since: nothing is left to run
                logger.warning("activation %s of %s/%s dropped: the action no longer exists",
                               pending.activation_id, pending.namespace, pending.action)
                await session.execute(delete(PendingInvocation).where(
                    PendingInvocation.activation_id == pending.activation_id))
        return action

    def _submit(self, state: Durability, resolved: Resolved, on_delta: DeltaSink | None,
                cause: str | None = None) -> Invocation:
        pending, action = state.pending, resolved.action
        if action.exec_kind == SEQUENCE_KIND:
            return self._track(asyncio.create_task(self.sequences.run(state, resolved)), state)
        request = ActivationRequest(
            activation_id=pending.activation_id, namespace=pending.namespace, name=action.name,
            version=action.version, subject=pending.subject,
            function=function_ref(pending.namespace, action,
                                  self.store.folder(code_digest(action)), resolved.invoked),
            parameters=merged_parameters(resolved, pending.parameters),
            limits=action.limits, received_at=pending.received_ms / 1000,
            bound=resolved.name if resolved.name != resolved.invoked else None, cause=cause,
            durable=state.durable)
        answer: asyncio.Future[Activation] = asyncio.get_running_loop().create_future()
        # Retrieved here, so that an answer nobody waited for (non-blocking) logs nothing;
        # the task carries the failure as well.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        task = asyncio.create_task(self._run_and_store(request, on_delta, state, answer))
        return self._track(task, state, answer)

    def _track(self, task: asyncio.Task[Activation], state: Durability,
               answer: asyncio.Future[Activation] | None = None) -> Invocation:
        """The started activation; `answer` None: answered when its task ends (a sequence,
        whose record is stored by its runner)."""
        self.tasks.add(task)
        self._running.add(state.pending.activation_id)
        task.add_done_callback(lambda done: self._finished(done, state))
        return Invocation(state.pending.activation_id, task, state,
                          task if answer is None else answer)

    def _finished(self, task: asyncio.Task[Activation], state: Durability) -> None:
        pending = state.pending
        self.tasks.discard(task)
        self._running.discard(pending.activation_id)
        self._release(pending.namespace)
        if state.durable and not state.stored and not task.cancelled():
            # It failed before its record was stored: its row is given up, to run again
            # (cancelled: this controller stops, and gives up its leases as it does).
            release = asyncio.ensure_future(self._release_lease(pending.activation_id))
            self._background.add(release)
            release.add_done_callback(self._background.discard)

    async def _release_lease(self, activation_id: str) -> None:
        try:
            async with self.sessions() as session, session.begin():
                await leases.release(session, self.controller_id, [activation_id])
        except Exception:  # its lease runs out instead: it is no longer renewed
            logger.warning("lease of activation %s not released", activation_id,
                           exc_info=True)

    async def _run_and_store(self, request: ActivationRequest, on_delta: DeltaSink | None,
                             state: Durability, answer: asyncio.Future[Activation]
                             ) -> Activation:
        try:
            result = await self.invoker.run(request, on_delta)
            metered = meter_activation(request, result, self.prices)
            row = _activation_row(request, result, {"key": "cost", "value": metered.annotation})
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except BaseException as error:
            if not answer.done():
                answer.set_exception(error)
            raise
        if not answer.done():  # done: its caller stopped waiting (cancelled it)
            answer.set_result(row)
        task = asyncio.current_task()
        assert task is not None
        self._storing[request.activation_id] = (request.namespace, task)
        try:
            # The caller woken by the answer writes it before this task goes on.
            await asyncio.sleep(0)
            await self._store(request, result, metered, row, state)
        finally:
            del self._storing[request.activation_id]
        return row

    async def _store(self, request: ActivationRequest, result: ActivationResult,
                     metered: MeteredActivation, row: Activation, state: Durability) -> None:
        """Commit the record, its usage, its start's loads and the end of its pending row."""
        # The record, its usage, the artifact loads its start measured and the end of its
        # pending row commit together: the record is written anyway, so the profiles cost no
        # transaction of their own, and the upserts cannot conflict (registry.profiles).
        # Unsynced: a crash of the machine may lose this commit, not a crash of the platform;
        # and what a lost commit drops with the record is the deletion of its pending row, so
        # a non-blocking activation runs again rather than being lost.
        async with state.lock, commit_unsynced(self.sessions) as session:
            # Plain INSERTs, not the ORM's unit of work: this transaction is on the
            # critical path of every blocking invocation.
            await session.execute(insert(Activation), [set_columns(row)])
            if metered.rows:
                await session.execute(insert(UsageRecord),
                                      [set_columns(usage) for usage in metered.rows])
            await record_loads(session, request.namespace, request.function.name.relative,
                               request.function.adapter_digest, result.loads, result.end_ms)
            if state.durable:
                await session.execute(delete(PendingInvocation).where(
                    PendingInvocation.activation_id == request.activation_id))
            state.stored = True
        logger.info("activation %s of %s ended with status %d", request.activation_id,
                    request.function.name, result.status_code)


def _pending_name(resolved: Resolved) -> str:
    """The name a pending row keeps, to resolve it again: the name called in the caller's
    namespace, or the fully qualified name of another namespace's shared action."""
    if is_shared_run_name(resolved.invoked):
        return resolved.name.absolute
    return resolved.invoked.relative


def merged_parameters(resolved: Resolved, invocation: dict[str, Any]) -> dict[str, Any]:
    """OpenWhisk's order: package < binding < action < invocation (an invocation naming a
    `final` one of the others is refused before: `protocol.check_invoke_parameters`)."""
    return {**parameter_values(resolved.parameters()), **invocation}


def set_columns(row: object) -> dict[str, Any]:
    """The column values set on a new ORM object (so the database fills the others)."""
    return {attr.key: row.__dict__[attr.key] for attr in inspect(row).mapper.column_attrs
            if attr.key in row.__dict__}


def _activation_row(request: ActivationRequest, result: ActivationResult,
                    cost: dict[str, Any]) -> Activation:
    # A sequence's component: OpenWhisk's `cause` and `causedBy` (controller.sequences).
    caused = [] if request.cause is None else [{"key": "causedBy", "value": SEQUENCE_KIND}]
    return Activation(activation_id=request.activation_id, namespace=request.namespace,
                      name=request.name, version=request.version, subject=request.subject,
                      start_ms=result.start_ms, end_ms=result.end_ms,
                      status_code=result.status_code, response=result.response, logs=result.logs,
                      annotations=[*_bound_annotations(request, result.annotations), *caused,
                                   cost], cause=request.cause)


def _bound_annotations(request: ActivationRequest,
                       annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Through a binding, OpenWhisk's record names the action's own path and the binding;
    # a shared package's action called by its own name, its path alone.
    if request.bound is None:
        return annotations
    kept = [a for a in annotations if a["key"] not in ("path", "binding")]
    path = {"key": "path", "value": str(request.bound)}
    if is_shared_run_name(request.function.name):
        return [*kept, path]
    binding = f"{request.function.name.namespace}/{request.function.name.package}"
    return [*kept, path, {"key": "binding", "value": binding}]
