"""Namespace containers in the invoker: where each request runs, and how it gets there.

With `LORAFAAS_SHARED_CONTAINERS=namespace`, the dispatcher asks `NamespaceSharing.route`
for every request: the placement policy (`lorafaas.invoker.placement`) keeps a function
with traffic of its own on its own containers (its own `FunctionRef`, the unshared path)
and sends the others to their invoking namespace's container, which the pool holds as
one more "function" (`namespace_ref`): one per namespace and backbone, started on demand,
counted in the pool's memory, kept alive and evicted as any container. Each request sent
there names its function's folder (slot) in the container, linked in just before
(`NamespaceFolders.add`, which refuses another namespace's function).

Only a function whose adapter the namespace container's native engine serves shares;
the others keep their own containers (`shareable`). A function with its own handler
(`__main__.py` in its zip) runs owner code beside the model, and a code action is nothing
but owner code: `FunctionTraits.has_handler` keeps both out, whatever their rate, and
`shareable` refuses a folder with a handler as well.

Pre-loading and keep-alive (`lorafaas.invoker.maintenance`) see a function placed here
through `shared_ref` and `holds`: its adapter loaded in its namespace container counts as
a loaded container of its own would, and `preload` loads it there ahead of its first
request (starting the namespace container, pre-loaded, when none runs). The pool counts
each namespace container at its memory limit, which holds its adapter budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorafaas.adapters.archive import HANDLER_NAME
from lorafaas.invoker.backend import ContainerSpec
from lorafaas.invoker.containers import (
    NAMESPACE_KEY_PREFIX,
    ContainerFolders,
    ContainerState,
    PooledContainer,
    is_namespace_key,
)
from lorafaas.invoker.namespace_containers import NamespaceFolders, namespace_spec, slot_of
from lorafaas.invoker.placement import (
    FunctionPlacement,
    FunctionTraits,
    Placement,
    PlacementConfig,
    PlacementPolicy,
    SharedContainers,
)
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, UnknownBackbone
from lorafaas.invoker.runtime_client import RuntimeUnavailable
from lorafaas.invoking.activations import FunctionRef
from lorafaas.names import QualifiedName

if TYPE_CHECKING:
    from lorafaas.invoking.activations import ActivationRequest

logger = logging.getLogger(__name__)
# The record's `container` annotation: which kind of container ran the activation.
NAMESPACE_CONTAINER = "namespace"
FUNCTION_CONTAINER = "function"
# What a namespace container's native engine cannot serve (as `runtime.engine.lora`
# refuses it; read here from the adapter's config without loading torch).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# The shared decode's composition in a namespace container's /health.
STEP_KEYS = ("steps", "stepRows", "stepFunctions", "maxFunctionsPerStep")
MB = 1024 * 1024


@dataclass(frozen=True)
class SharingConfig:
    """The namespace containers' settings."""

    placement: PlacementConfig
    memory_mb: int = 4_096  # each namespace container's memory limit
    adapter_budget_mb: int = 512  # adapters it keeps loaded (the coldest unpinned go)

    @property
    def enabled(self) -> bool:
        """Whether any function may share."""
        return self.placement.mode is SharedContainers.NAMESPACE


def container_kind(container: PooledContainer) -> str:
    """`namespace` or `function`: the record's annotation."""
    return NAMESPACE_CONTAINER if is_namespace_key(container.function_key) \
        else FUNCTION_CONTAINER


def namespace_key(namespace: str, backbone: str) -> str:
    """The pool's key of one namespace's container on one backbone."""
    return f"{NAMESPACE_KEY_PREFIX}{namespace}/{backbone}"


def shareable(adapter_dir: Path) -> bool:
    """Whether a namespace container's native engine can serve the adapter: plain LoRA with
    nothing it does not compute exactly, and no tokenizer of its own."""
    if any((adapter_dir / name).exists() for name in (*_TOKENIZER_FILES, HANDLER_NAME)):
        return False
    try:
        config: dict[str, Any] = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    # Import here: the runtime's reader pulls in torch, which the controller has anyway.
    from lorafaas.runtime.engine.lora import AdapterUnsupported, _check_config

    try:
        _check_config(config)
    except AdapterUnsupported as error:
        logger.info("%s keeps its own containers: %s", adapter_dir.name, error)
        return False
    return True


class NamespaceSharing:
    """Routes requests between functions' own containers and their namespaces' containers."""

    def __init__(self, config: SharingConfig, pool: ContainerPool,
                 policy: PlacementPolicy | None = None) -> None:
        self.config = config
        self.pool = pool
        self.policy = policy or PlacementPolicy(config.placement)
        self._shareable: dict[str, bool] = {}  # by function key (its code never changes)
        # Each namespace container's step counters, as its runtime last reported them.
        self.steps: dict[str, dict[str, int]] = {}
        # Each namespace container's loaded adapters (slot -> bytes), by container id, and
        # its adapter budget in bytes, as its runtime last reported them.
        self.adapters: dict[str, dict[str, int]] = {}
        self.budgets: dict[str, int] = {}
        self._invoked_in: dict[str, str] = {}  # function key -> the namespace last invoking it
        pool.namespace_start = self._start

    def route(self, request: ActivationRequest) -> FunctionRef:
        """Count the request; its own function, or the namespace container to send it to."""
        function = request.function
        try:
            backbone = self.pool.backbone_of(function)
        except UnknownBackbone:
            return function  # the pool refuses it where it always did
        traits = FunctionTraits(function.key, request.namespace, backbone,
                                has_handler=function.runs_alone,
                                shareable=not function.runs_alone
                                and self._is_shareable(function))
        if self.policy.arrived(traits).placement is Placement.OWN:
            return function
        self._invoked_in[function.key] = request.namespace
        return self._namespace_ref(request.namespace, backbone, function)

    def _namespace_ref(self, namespace: str, backbone: str,
                       function: FunctionRef) -> FunctionRef:
        # Not an entity name (parentheses): no action can be called so.
        return FunctionRef(namespace_key(namespace, backbone),
                           QualifiedName(namespace, None, "(namespace container)"),
                           function.adapter_dir, self.config.memory_mb, backbone=backbone)

    def shared_ref(self, function: FunctionRef) -> FunctionRef | None:
        """The namespace container the function's next request would go to; None when it
        runs in its own containers."""
        namespace = self._invoked_in.get(function.key)
        placement = self.policy.describe(function.key)
        if namespace is None or placement is None or placement.placement is Placement.OWN:
            return None
        try:
            backbone = self.pool.backbone_of(function)
        except UnknownBackbone:
            return None
        return self._namespace_ref(namespace, backbone, function)

    def holds(self, container: PooledContainer) -> set[str]:
        """Keys of the functions whose adapters a namespace container has loaded (as its
        runtime last reported them)."""
        loaded = self.adapters.get(container.info.id, {})
        return {key for key in self._invoked_in if slot_of(key) in loaded}

    def free_adapter_bytes(self, container: PooledContainer) -> int:
        """What is left of a namespace container's adapter budget."""
        budget = self.budgets.get(container.info.id, self.config.adapter_budget_mb * MB)
        return max(0, budget - sum(self.adapters.get(container.info.id, {}).values()))

    def container_of(self, ref: FunctionRef) -> PooledContainer | None:
        """The running (not starting) namespace container of a namespace ref."""
        return next((c for c in self.pool.containers() if c.function_key == ref.key
                     and c.state is not ContainerState.STARTING), None)

    async def preload(self, function: FunctionRef) -> bool:
        """Load the function's adapter into its namespace container ahead of its first
        request, starting the container (pre-loaded) if none runs; True if loaded."""
        ref = self.shared_ref(function)
        if ref is None:
            return False
        container = self.container_of(ref)
        if container is None:
            if not await self.pool.preload(ref):
                return False
            container = self.container_of(ref)
            if container is None:  # evicted at once
                return False
        namespace = ref.key.removeprefix(NAMESPACE_KEY_PREFIX).rsplit("/", 1)[0]
        folders = container.folders
        if not isinstance(folders, NamespaceFolders):
            return False
        slot = await asyncio.to_thread(folders.add, namespace, function.key,
                                       function.adapter_dir)
        try:
            answer = await container.client.load_adapter(slot)
        except RuntimeUnavailable as error:
            logger.warning("pre-loading %s into %s failed: %s", function.key,
                           container.info.name, error)
            return False
        if not answer.get("loaded"):
            logger.warning("%s cannot be pre-loaded into %s: %s", function.key,
                           container.info.name, answer.get("error"))
            return False
        self.adapters.setdefault(container.info.id, {})[slot] = int(answer.get("bytes", 0))
        logger.info("pre-loaded %s into namespace container %s (%.1f ms)", function.key,
                    container.info.name, float(answer.get("adapterLoad", 0.0)))
        return True

    def placements(self) -> dict[str, FunctionPlacement]:
        """Each function seen that may share: its placement, rate and credit now."""
        return {key: placement for key in self._shareable
                if (placement := self.policy.describe(key)) is not None}

    async def refresh_steps(self) -> None:
        """Read the step composition and loaded adapters of every namespace container that
        answers."""
        steps = {}
        running = set()
        for container in self.pool.containers():
            if not is_namespace_key(container.function_key) or container.function_key is None:
                continue
            running.add(container.info.id)
            try:
                async with asyncio.timeout(5):
                    health = await container.client.health()
            except (RuntimeUnavailable, TimeoutError):
                continue  # starting, busy or gone: its figures come next time
            label = container.function_key.removeprefix(NAMESPACE_KEY_PREFIX)
            steps[label] = {key: int(health.get(key, 0)) for key in STEP_KEYS}
            if isinstance(loaded := health.get("adapters"), dict):
                self.adapters[container.info.id] = {str(k): int(v) for k, v in loaded.items()}
            if isinstance(budget := health.get("adapterBudget"), int):
                self.budgets[container.info.id] = budget
        self.steps = steps
        for gone in set(self.adapters) - running:
            del self.adapters[gone]
            self.budgets.pop(gone, None)

    def forget(self, function_key_prefix: str) -> None:
        """An action was updated or deleted: its versions' histories go."""
        for key in [k for k in self._shareable if k.startswith(function_key_prefix)]:
            del self._shareable[key]
            self._invoked_in.pop(key, None)
            self.policy.forget(key)

    def _is_shareable(self, function: FunctionRef) -> bool:
        known = self._shareable.get(function.key)
        if known is None:
            known = self._shareable[function.key] = shareable(function.adapter_dir)
        return known

    def _start(self, root: Path, ref: FunctionRef,
               backbone: BackboneMounts) -> tuple[ContainerFolders, ContainerSpec]:
        """The pool's hook: a namespace container's folders, created, and its spec."""
        namespace = ref.key.removeprefix(NAMESPACE_KEY_PREFIX).rsplit("/", 1)[0]
        folders = NamespaceFolders(root, namespace)
        folders.create()
        pool = self.pool.config
        spec = namespace_spec(folders, backbone, name=f"lorafaas-{pool.invoker_id}-{root.name}",
                              image=pool.image, invoker_id=pool.invoker_id,
                              memory_mb=ref.memory_mb, pids_limit=pool.pids_limit,
                              adapter_budget_mb=self.config.adapter_budget_mb,
                              torch_threads=pool.torch_threads,
                              backbone_sharing=pool.backbone_sharing,
                              generation_defaults=pool.generation_defaults)
        return folders, spec


def function_slot(container: PooledContainer, request: ActivationRequest) -> str | None:
    """Link the request's function into its namespace container; its slot there (None: a
    function's own container)."""
    folders = container.folders
    if not isinstance(folders, NamespaceFolders):
        return None
    function = request.function
    return folders.add(request.namespace, function.key, function.adapter_dir)
