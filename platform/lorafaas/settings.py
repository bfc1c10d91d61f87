"""The platform's settings: one table of name, type, default and help, read once at start."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.backbone.accelerator import AcceleratorSetting, parse_accelerator
from lorafaas.backbone_specs import BackboneSpec, missing_folder, parse_backbones, single_backbone


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class SettingSpec:
    """One row of the settings table."""

    env: str
    default: str
    parse: Callable[[str], Any]
    help: str


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _name_list(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _price(value: str) -> float:
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise ValueError("must be a price of zero or more")
    return number


def _price_or_kind_default(value: str) -> float | None:
    # "kind": the accelerator kind's documented default (lorafaas.billing.prices).
    return None if value == "kind" else _price(value)


def _accelerator_kind(value: str) -> str:
    if value not in ("cpu", "h100"):
        raise ValueError("must be cpu or h100")
    return value


def _keepalive_policy(value: str) -> str:
    if value not in ("histogram", "fixed"):
        raise ValueError("must be histogram or fixed")
    return value


def _serving_dtype(value: str) -> str:
    if value not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError("must be auto, float32, bfloat16 or float16")
    return value


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError("must be on or off")
    return value == "on"


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be zero or a positive integer")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise ValueError("must be a number of zero or more")
    return number


def _share(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:  # also refuses NaN
        raise ValueError("must be a number from 0 to 1")
    return number


def _generation_defaults(value: str) -> str:
    if value not in ("greedy", "checkpoint"):
        raise ValueError("must be greedy or checkpoint")
    return value


def _batching(value: str) -> str:
    if value not in ("eager", "fill-or-expire", "continuous", "off"):
        raise ValueError("must be eager, fill-or-expire, continuous or off")
    return value


def _shared_containers(value: str) -> str:
    if value not in ("namespace", "off"):
        raise ValueError("must be namespace or off")
    return value


def _slo_ms(value: str) -> int:
    number = int(value)
    # The range of the action limit it is the default of (lorafaas.controller.protocol).
    if not 1 <= number <= 600_000:
        raise ValueError("must be between 1 and 600000 milliseconds")
    return number


def _auto_off(value: str) -> str:
    if value not in ("auto", "off"):
        raise ValueError("must be auto or off")
    return value


def _token_counts(value: str) -> tuple[int, ...]:
    counts = tuple(_positive_int(part) for part in _name_list(value))
    if not counts:
        raise ValueError("must list one or more positive token counts, comma-separated")
    return tuple(sorted(set(counts)))


def _offload_policy(value: str) -> str:
    if value not in ("value-density", "lru", "none"):
        raise ValueError("must be value-density, lru or none")
    return value


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return number


def _invoker_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError("must be 1 to 64 letters, digits, '-' or '_' (a broker subject token)")
    return value


class Role(enum.StrEnum):
    """What `lorafaas serve` runs: everything in one process, or one part over the broker."""

    ALL = "all"  # controller, invoker and backbone servers in one process, no broker
    CONTROLLER = "controller"  # the API; invokers reached over the broker
    INVOKER = "invoker"  # the pool, backbone servers and the broker's invoker service


@dataclass(frozen=True)
class Settings:
    """Frozen settings passed down to every component."""

    home: Path
    host: str
    port: int
    database_url: str
    run_dir: Path
    shm_dir: Path
    models_dir: Path
    backbone_dir: Path
    backbones: tuple[BackboneSpec, ...]
    backbone_dtype: str
    runtime_image: str
    max_adapter_bytes: int
    max_concurrent_uploads: int
    action_timeout_ms: int
    action_history: int
    container_memory_mb: int
    container_pids_limit: int
    container_start_timeout_s: int
    invoker_id: str
    broker_url: str
    guest_namespace: str
    invocations_per_minute: int
    concurrent_invocations: int
    login_failures_burst: int
    login_failures_per_minute: int
    max_instances: int
    pool_memory_mb: int
    prewarm_min: int
    prewarm_max: int
    prewarm_ttl_s: int
    keepalive_policy: str
    keepalive_fixed_s: int
    preloading: bool
    preload_spare_share: float
    backbone_sharing: bool
    generation_defaults: str
    maintenance_period_s: float
    container_threads: int
    batching: str
    shared_containers: str
    shared_own_at: float
    shared_share_at: float
    shared_dwell_s: float
    shared_rate_tau_s: float
    namespace_memory_mb: int
    namespace_adapter_budget_mb: int
    max_batch_size: int
    max_concurrent_batches: int
    slo_ttft_ms: int
    prefill_t0_ms: float
    prefill_alpha_ms: float
    prefill_profiling: str
    prefill_prompt_lengths: tuple[int, ...]
    accelerator: AcceleratorSetting
    accelerator_memory_mb: int
    offload_policy: str
    console_key_file: Path
    admin_namespaces: tuple[str, ...]
    accelerator_kind: str
    price_accelerator_hour: float | None
    price_gb_second: float | None
    price_prompt_mtok: float
    price_completion_mtok: float

    @property
    def backbone_specs(self) -> tuple[BackboneSpec, ...]:
        """The backbones served, the default first (`LORAFAAS_BACKBONES`, else the one of
        `LORAFAAS_BACKBONE`)."""
        return self.backbones or (single_backbone(self.backbone_dir, self.backbone_dtype),)

    @property
    def default_backbone(self) -> BackboneSpec:
        """The backbone of functions whose `backbone` annotation names none."""
        return self.backbone_specs[0]

    def check_backbone_folders(self) -> None:
        """Raise SettingsError, naming the key and the value, unless every backbone's folder
        holds a checkpoint (checked at start: `lorafaas setup` builds the demo's first)."""
        key = "backbones" if self.backbones else "backbone_dir"
        for spec in self.backbone_specs:
            problem = missing_folder(spec)
            if problem is not None:
                env = SETTINGS_TABLE[key].env
                value = (f"{spec.name}={spec.folder}" if self.backbones
                         else str(self.backbone_dir))
                raise SettingsError(f"setting {env}={value!r} is invalid: {problem}")

    def check_role(self, role: Role) -> None:
        """Refuse a multi-machine role without a broker and a PostgreSQL registry."""
        if role is Role.ALL:
            return
        database = SETTINGS_TABLE["database_url"].env
        broker = SETTINGS_TABLE["broker_url"].env
        problems = []
        if not self.broker_url:
            problems.append(f"{broker} is empty")
        if not self.database_url.startswith("postgresql"):
            problems.append(f"{database}={self.database_url!r} is not PostgreSQL")
        if problems:
            raise SettingsError(f"`serve --role {role}` needs a NATS broker ({broker}) and a "
                                f"PostgreSQL registry ({database}) shared by every "
                                f"controller and invoker: {'; '.join(problems)}")

    @property
    def artifacts_dir(self) -> Path:
        """Content-addressed store of uploaded adapters."""
        return self.home / "artifacts"

    @property
    def props_file(self) -> Path:
        """The `.wskprops`-style file with APIHOST and AUTH."""
        return self.home / "props"

    @property
    def api_host(self) -> str:
        """The URL clients use."""
        return f"http://{self.host}:{self.port}"

    @property
    def container_torch_threads(self) -> int:
        """Torch threads of each function container (0: torch's default)."""
        # Up to M batches run at once, each in its own container: each gets its share of
        # the cores (with batching off, requests are not capped: keep torch's default).
        if self.container_threads > 0 or self.batching == "off":
            return self.container_threads
        return max(1, (os.cpu_count() or 1) // self.max_concurrent_batches)


# The settings table: field -> spec. `{home}` in a default is replaced by the home folder.
SETTINGS_TABLE: Mapping[str, SettingSpec] = {
    "home": SettingSpec("LORAFAAS_HOME", "~/.lorafaas", _path,
                        "State folder: registry, artifacts, models, props file."),
    "host": SettingSpec("LORAFAAS_HOST", "127.0.0.1", str, "Address the API listens on."),
    "port": SettingSpec("LORAFAAS_PORT", "3233", _port, "Port the API listens on (0: any free)."),
    "database_url": SettingSpec("LORAFAAS_DATABASE_URL", "sqlite:///{home}/lorafaas.db", str,
                                "SQLAlchemy URL of the registry (sqlite or postgresql+psycopg)."),
    "run_dir": SettingSpec("LORAFAAS_RUN_DIR", "/tmp/lorafaas-run", _path,
                           "Folder of Unix sockets (short: socket paths are limited to 107 bytes)."),
    "shm_dir": SettingSpec("LORAFAAS_SHM_DIR", "/dev/shm/lorafaas", _path,
                           "tmpfs folder where backbone servers publish weights."),
    "models_dir": SettingSpec("LORAFAAS_MODELS_DIR", "{home}/models", _path,
                              "Folder of local models (the demo backbone and adapters)."),
    "backbone_dir": SettingSpec("LORAFAAS_BACKBONE", "{home}/models/demo-backbone", _path,
                                "The one backbone served when LORAFAAS_BACKBONES is empty: a "
                                "Hugging Face model folder, named after the folder, served in "
                                "LORAFAAS_BACKBONE_DTYPE."),
    "backbone_dtype": SettingSpec("LORAFAAS_BACKBONE_DTYPE", "auto", _serving_dtype,
                                  "Dtype LORAFAAS_BACKBONE is published and served in: "
                                  "`float32`, `bfloat16`, `float16`, or `auto` (the "
                                  "checkpoint's own: `dtype` in its config, else `torch_dtype`, "
                                  "else float32)."),
    "backbones": SettingSpec("LORAFAAS_BACKBONES", "", parse_backbones,
                             "Several backbones, the first the default: comma-separated "
                             "`name=folder[:dtype]` (dtype `float32`, `bfloat16`, `float16`, "
                             "or `auto`: the checkpoint's own), or the path of a `.toml` file "
                             "with one `[name]` table per backbone (`path`, optional `dtype`). "
                             "One backbone server each; an action's `backbone` annotation "
                             "picks one by name. Empty: LORAFAAS_BACKBONE alone."),
    "runtime_image": SettingSpec("LORAFAAS_RUNTIME_IMAGE", "lorafaas/runtime-python:latest", str,
                                 "Docker image of function containers."),
    "max_adapter_bytes": SettingSpec("LORAFAAS_MAX_ADAPTER_BYTES", str(256 * 1024 * 1024),
                                     _positive_int, "Largest adapter upload (decoded zip) in bytes."),
    "max_concurrent_uploads": SettingSpec(
        "LORAFAAS_MAX_CONCURRENT_UPLOADS", "4", _positive_int,
        "Adapter uploads received and validated at once (API and console); more get 429 "
        "with Retry-After."),
    "action_timeout_ms": SettingSpec("LORAFAAS_ACTION_TIMEOUT_MS", "60000", _positive_int,
                                     "Default action timeout limit in milliseconds."),
    "action_history": SettingSpec("LORAFAAS_ACTION_HISTORY", "5", _positive_int,
                                  "Versions kept per action, the current one included (each "
                                  "keeps its adapter in the store); updates prune older ones."),
    "container_memory_mb": SettingSpec("LORAFAAS_CONTAINER_MEMORY_MB", "2048", _positive_int,
                                       "Default memory limit of a function container."),
    "container_pids_limit": SettingSpec("LORAFAAS_CONTAINER_PIDS", "256", _positive_int,
                                        "Process limit of a function container."),
    "container_start_timeout_s": SettingSpec("LORAFAAS_CONTAINER_START_TIMEOUT_S", "60",
                                             _positive_int,
                                             "How long a new container may take to answer."),
    "invoker_id": SettingSpec("LORAFAAS_INVOKER_ID", "invoker0", _invoker_id,
                              "Name of this invoker (letters, digits, `-`, `_`); labels its "
                              "containers, and names it on the broker (`--role invoker`): "
                              "unique per invoker."),
    "broker_url": SettingSpec("LORAFAAS_BROKER_URL", "", str,
                              "NATS server (JetStream enabled) of the multi-machine roles, "
                              "`nats://host:4222`; `serve --role controller` and `--role "
                              "invoker` need it (with a PostgreSQL LORAFAAS_DATABASE_URL). "
                              "Empty: the single-machine default, no broker."),
    "guest_namespace": SettingSpec("LORAFAAS_GUEST_NAMESPACE", "guest", str,
                                   "Namespace created with a key at first start."),
    "invocations_per_minute": SettingSpec("LORAFAAS_INVOCATIONS_PER_MINUTE", "600", _positive_int,
                                          "Invocations a namespace may start per minute (429 "
                                          "beyond)."),
    "concurrent_invocations": SettingSpec("LORAFAAS_CONCURRENT_INVOCATIONS", "100", _positive_int,
                                          "Activations of a namespace in flight at once (429 "
                                          "beyond)."),
    "login_failures_burst": SettingSpec("LORAFAAS_LOGIN_FAILURES_BURST", "10", _positive_int,
                                        "Failed sign-ins (API keys and console) a client "
                                        "address may make at once before it gets 429; a key "
                                        "uuid may take three times as many."),
    "login_failures_per_minute": SettingSpec("LORAFAAS_LOGIN_FAILURES_PER_MINUTE", "10",
                                             _positive_int,
                                             "Failed sign-ins per minute an address regains "
                                             "(a key uuid: three times as many)."),
    "max_instances": SettingSpec("LORAFAAS_MAX_INSTANCES", "4", _positive_int,
                                 "Containers one function may run at once (requests wait "
                                 "beyond)."),
    "pool_memory_mb": SettingSpec("LORAFAAS_POOL_MEMORY_MB", "16384", _positive_int,
                                  "Memory of all function containers together (their limits); "
                                  "idle ones are evicted, least recently used first."),
    "prewarm_min": SettingSpec("LORAFAAS_PREWARM_MIN", "1", _non_negative_int,
                               "Stem cells (libraries and backbone loaded) kept at least, per "
                               "backbone."),
    "prewarm_max": SettingSpec("LORAFAAS_PREWARM_MAX", "4", _non_negative_int,
                               "Stem cells at most per backbone, as its cold starts ask for "
                               "more."),
    "prewarm_ttl_s": SettingSpec("LORAFAAS_PREWARM_TTL_S", "600", _positive_int,
                                 "An unused stem cell beyond the minimum goes after this."),
    "keepalive_policy": SettingSpec("LORAFAAS_KEEPALIVE_POLICY", "histogram", _keepalive_policy,
                                    "How long an idle container is kept: `histogram` (Shahrad "
                                    "et al.'s hybrid policy, per function) or `fixed`."),
    "keepalive_fixed_s": SettingSpec("LORAFAAS_KEEPALIVE_FIXED_S", "180", _non_negative_int,
                                     "Keep-alive of the `fixed` policy, and of the histogram "
                                     "policy while a function's idle times show no pattern "
                                     "(short, since a stem cell restarts it in ~150 ms; "
                                     "OpenWhisk keeps 600)."),
    "preloading": SettingSpec("LORAFAAS_PRELOADING", "on", _on_off,
                              "Pre-load functions whose next request is predicted, within the "
                              "pool's memory (`on` or `off`)."),
    "preload_spare_share": SettingSpec("LORAFAAS_PRELOAD_SPARE_SHARE", "0.5", _share,
                                       "Share of the pool's memory (0 to 1) kept filled with "
                                       "the functions of highest value density (request rate "
                                       "÷ memory, over the last hour), with pre-loading on: "
                                       "their containers stay loaded past their keep-alive, "
                                       "and are pre-loaded when they have none; cold starts "
                                       "still evict them when memory runs short."),
    "backbone_sharing": SettingSpec("LORAFAAS_BACKBONE_SHARING", "on", _on_off,
                                    "`on`: function containers map the backbone server's "
                                    "published weights (one copy for all). `off`: each "
                                    "container loads a private copy from the backbone's "
                                    "checkpoint folder, as OpenWhisk or InstaInfer functions "
                                    "do (the evaluation's baselines)."),
    "generation_defaults": SettingSpec("LORAFAAS_GENERATION_DEFAULTS", "greedy",
                                       _generation_defaults,
                                       "What a request that names no `temperature` or "
                                       "`top_p` samples with: `greedy` (greedy decoding) or "
                                       "`checkpoint` (the backbone's generation_config.json: "
                                       "its `do_sample`, `temperature` and `top_p`; its "
                                       "`top_k` and `repetition_penalty` are not applied). A "
                                       "request's own values always win; the EOS ids of the "
                                       "generation config apply either way."),
    "container_threads": SettingSpec("LORAFAAS_CONTAINER_THREADS", "0", _non_negative_int,
                                     "Torch threads of each function container (0: the cores "
                                     "divided by LORAFAAS_MAX_CONCURRENT_BATCHES, so batches "
                                     "running at once do not contend; torch's default when "
                                     "batching is off)."),
    "maintenance_period_s": SettingSpec("LORAFAAS_MAINTENANCE_PERIOD_S", "1.0", _positive_float,
                                        "How often the pool checks health, stem cells, "
                                        "keep-alive and pre-loading."),
    # Batching (lorafaas.invoker.dispatcher); T(b) = T0 + α·(b−1) is the prefill model until
    # a function's adapter rank has a profile of its own (lorafaas.invoker.prefill_profiling).
    "batching": SettingSpec("LORAFAAS_BATCHING", "eager", _batching,
                            "How the invoker batches a function's requests: `eager` (a batch "
                            "closes as soon as one of the M slots is free, so requests batch "
                            "only while the slots are taken), `fill-or-expire` (it closes when "
                            "full or when its oldest request's SLO slack runs out), "
                            "`continuous` (a request joins the decode running in a container "
                            "of its function between two steps, iteration-level batching) or "
                            "`off` (each request runs alone at once)."),
    # Namespace containers (lorafaas.invoker.sharing, lorafaas.invoker.placement).
    "shared_containers": SettingSpec(
        "LORAFAAS_SHARED_CONTAINERS", "namespace", _shared_containers,
        "`namespace` (the default): functions of one namespace without traffic enough to "
        "fill batches of their own share their namespace's container (one per namespace "
        "and backbone), decoding together; functions of different namespaces never share. "
        "`off`: every function has its own containers (the behaviour before namespace "
        "containers, for comparisons)."),
    "shared_own_at": SettingSpec("LORAFAAS_SHARED_OWN_AT", "2", _positive_float,
                                 "Requests a second at which a function leaves its "
                                 "namespace's container for its own containers."),
    "shared_share_at": SettingSpec("LORAFAAS_SHARED_SHARE_AT", "1", _non_negative_float,
                                   "Requests a second at which it goes back to the "
                                   "namespace's container (below LORAFAAS_SHARED_OWN_AT)."),
    "shared_dwell_s": SettingSpec("LORAFAAS_SHARED_DWELL_S", "30", _non_negative_float,
                                  "Seconds a function's rate must stay past the other "
                                  "side's threshold before it moves (no flapping)."),
    "shared_rate_tau_s": SettingSpec("LORAFAAS_SHARED_RATE_TAU_S", "30", _positive_float,
                                     "Time constant in seconds of each function's decaying "
                                     "rate estimate."),
    "namespace_memory_mb": SettingSpec("LORAFAAS_NAMESPACE_MEMORY_MB", "4096", _positive_int,
                                       "Memory limit of a namespace container, counted in "
                                       "the pool's size."),
    "namespace_adapter_budget_mb": SettingSpec(
        "LORAFAAS_NAMESPACE_ADAPTER_BUDGET_MB", "512", _positive_int,
        "Adapters a namespace container keeps loaded; beyond it, the least recently used "
        "one not running goes."),
    "max_batch_size": SettingSpec("LORAFAAS_MAX_BATCH_SIZE", "8", _positive_int,
                                  "Largest batch, whatever the SLO and T(b) allow; with "
                                  "`continuous` batching, most requests decoding at once in "
                                  "one container (more go to another container, or wait)."),
    "max_concurrent_batches": SettingSpec("LORAFAAS_MAX_CONCURRENT_BATCHES", "2", _positive_int,
                                          "Batches running at once on the accelerator (the "
                                          "cap of M); ready batches wait, least deadline "
                                          "margin first."),
    "slo_ttft_ms": SettingSpec("LORAFAAS_SLO_TTFT_MS", "2000", _slo_ms,
                               "Default `slo_ttft_ms` limit of an action: its time-to-first-"
                               "token objective in milliseconds (1 to 600000)."),
    "prefill_t0_ms": SettingSpec("LORAFAAS_PREFILL_T0_MS", "35", _non_negative_float,
                                 "T0 of the prefill model T(b) = T0 + α·(b−1), in ms, of adapter "
                                 "ranks not profiled yet (default: the demo backbone on 2 CPU "
                                 "cores, docs/benchmarks/batching.md)."),
    "prefill_alpha_ms": SettingSpec("LORAFAAS_PREFILL_ALPHA_MS", "16", _non_negative_float,
                                    "α of the prefill model: the cost in ms of each request "
                                    "added to a batch."),
    "prefill_profiling": SettingSpec("LORAFAAS_PREFILL_PROFILING", "auto", _auto_off,
                                     "`auto`: when a function of an adapter rank without a "
                                     "stored fit is deployed or invoked (and batching is on), "
                                     "profile T(b) for b = 1…16 in a one-off container in the "
                                     "background, one rank at a time, store the fit and size "
                                     "that rank's batches by it; refitted when the backbone, "
                                     "runtime image or machine changes. `off`: no background "
                                     "profiling (fits stored by `lorafaas admin profile` still "
                                     "apply)."),
    "prefill_prompt_lengths": SettingSpec("LORAFAAS_PREFILL_PROMPT_LENGTHS", "32,128",
                                          _token_counts,
                                          "Prompt lengths in tokens at which T(b) is profiled "
                                          "(comma-separated); batches are sized by the fit at "
                                          "the longest."),
    "accelerator": SettingSpec("LORAFAAS_ACCELERATOR", "auto", parse_accelerator,
                               "Where backbones are served: `auto` (CUDA IPC on GPU 0 where "
                               "the host has an NVIDIA GPU its torch can use, else tmpfs), "
                               "`cpu` (tmpfs), or `cuda` / `cuda:N` (CUDA IPC on GPU N; the "
                               "start fails without it). The runtime image is built for the "
                               "same choice."),
    # Offloading (lorafaas.invoker.offloading).
    "accelerator_memory_mb": SettingSpec("LORAFAAS_ACCELERATOR_MEMORY_MB", "0",
                                         _non_negative_int,
                                         "Accelerator memory the functions' own artifacts "
                                         "(adapters, cached buffers) may hold; beyond it, idle "
                                         "ones move to host memory (0: unlimited, no "
                                         "offloading)."),
    "offload_policy": SettingSpec("LORAFAAS_OFFLOAD_POLICY", "value-density", _offload_policy,
                                  "Which idle artifacts move to host memory first: "
                                  "`value-density` (lowest rate × reload time ÷ bytes), `lru`, "
                                  "or `none` (requests wait for memory)."),
    "console_key_file": SettingSpec("LORAFAAS_CONSOLE_KEY_FILE", "{home}/console.key", _path,
                                    "Key that encrypts the web console's session cookies "
                                    "(created at first start; share it between controllers)."),
    "admin_namespaces": SettingSpec("LORAFAAS_ADMIN_NAMESPACES", "guest", _name_list,
                                    "Comma-separated namespaces whose console shows the "
                                    "platform page (empty: none)."),
    # The price sheet of billing; the defaults' sources are in lorafaas.billing.prices.
    "accelerator_kind": SettingSpec("LORAFAAS_ACCELERATOR_KIND", "cpu", _accelerator_kind,
                                    "What runs the backbone, for the default prices: `cpu` "
                                    "(a 2-vCPU host) or `h100` (one H100 GPU)."),
    "price_accelerator_hour": SettingSpec(
        "LORAFAAS_PRICE_ACCELERATOR_HOUR", "kind", _price_or_kind_default,
        "USD per accelerator-hour billed to activations. `kind`: cpu 0.0735 (AWS us-east-1 "
        "on-demand c7i.large, 2 vCPU, $0.08925/h, less its 4 GiB at the memory price), h100 "
        "2.99 (on-demand H100 SXM GPU-hour at GPU clouds, 2025)."),
    "price_gb_second": SettingSpec(
        "LORAFAAS_PRICE_GB_SECOND", "kind", _price_or_kind_default,
        "USD per GB-second of container memory limit (GB = 1024 MB). `kind`: 0.0000010938 "
        "(AWS us-east-1 on-demand r7i.large $0.1323/h less m7i.large $0.1008/h, for 8 GiB: "
        "$0.0039375 per GiB-hour)."),
    "price_prompt_mtok": SettingSpec("LORAFAAS_PRICE_PROMPT_MTOK", "0", _price,
                                     "USD per million prompt tokens, a fee on top of the "
                                     "resources (0: the bill is the resources used)."),
    "price_completion_mtok": SettingSpec("LORAFAAS_PRICE_COMPLETION_MTOK", "0", _price,
                                         "USD per million completion tokens, a fee on top of "
                                         "the resources (0: the bill is the resources used)."),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from the environment, failing with the key and value on a bad one."""
    env = os.environ if environ is None else environ
    home_spec = SETTINGS_TABLE["home"]
    home = _parse("home", home_spec, env.get(home_spec.env, home_spec.default))
    values: dict[str, Any] = {"home": home}
    for field, spec in SETTINGS_TABLE.items():
        if field == "home":
            continue
        raw = env.get(spec.env, spec.default.replace("{home}", str(home)))
        values[field] = _parse(field, spec, raw)
    return Settings(**values)


def _parse(field: str, spec: SettingSpec, raw: str) -> Any:
    try:
        return spec.parse(raw)
    except ValueError as error:
        raise SettingsError(f"setting {spec.env}={raw!r} is invalid: {error}") from error


def settings_markdown_table() -> str:
    """The settings table as Markdown, for the README."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in SETTINGS_TABLE.values():
        default = f"`{spec.default}`" if spec.default else "(empty)"
        lines.append(f"| `{spec.env}` | {default} | {spec.help} |")
    return "\n".join(lines)


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with some fields changed (for tests and sub-commands)."""
    return dataclasses.replace(settings, **changes)


if __name__ == "__main__":
    # `python -m lorafaas.settings` prints the table for the README's configuration section.
    print(settings_markdown_table())
