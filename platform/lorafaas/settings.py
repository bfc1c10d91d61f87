"""The platform's settings: one table of name, type, default and help, read once at start."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return number


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
    runtime_image: str
    max_adapter_bytes: int
    action_timeout_ms: int
    action_history: int
    container_memory_mb: int
    container_pids_limit: int
    container_start_timeout_s: int
    invoker_id: str
    guest_namespace: str
    invocations_per_minute: int
    concurrent_invocations: int
    max_instances: int
    pool_memory_mb: int
    prewarm_min: int
    prewarm_max: int
    prewarm_ttl_s: int
    maintenance_period_s: float
    console_key_file: Path
    admin_namespaces: tuple[str, ...]
    accelerator_kind: str
    price_accelerator_hour: float | None
    price_gb_second: float | None
    price_prompt_mtok: float
    price_completion_mtok: float

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
                                "The default backbone: a Hugging Face model folder."),
    "runtime_image": SettingSpec("LORAFAAS_RUNTIME_IMAGE", "lorafaas/runtime-python:latest", str,
                                 "Docker image of function containers."),
    "max_adapter_bytes": SettingSpec("LORAFAAS_MAX_ADAPTER_BYTES", str(256 * 1024 * 1024),
                                     _positive_int, "Largest adapter upload (decoded zip) in bytes."),
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
    "invoker_id": SettingSpec("LORAFAAS_INVOKER_ID", "invoker0", str,
                              "Name of this invoker; labels its containers."),
    "guest_namespace": SettingSpec("LORAFAAS_GUEST_NAMESPACE", "guest", str,
                                   "Namespace created with a key at first start."),
    "invocations_per_minute": SettingSpec("LORAFAAS_INVOCATIONS_PER_MINUTE", "600", _positive_int,
                                          "Invocations a namespace may start per minute (429 "
                                          "beyond)."),
    "concurrent_invocations": SettingSpec("LORAFAAS_CONCURRENT_INVOCATIONS", "100", _positive_int,
                                          "Activations of a namespace in flight at once (429 "
                                          "beyond)."),
    "max_instances": SettingSpec("LORAFAAS_MAX_INSTANCES", "4", _positive_int,
                                 "Containers one function may run at once (requests wait "
                                 "beyond)."),
    "pool_memory_mb": SettingSpec("LORAFAAS_POOL_MEMORY_MB", "16384", _positive_int,
                                  "Memory of all function containers together (their limits); "
                                  "idle ones are evicted, least recently used first."),
    "prewarm_min": SettingSpec("LORAFAAS_PREWARM_MIN", "1", _non_negative_int,
                               "Stem cells (libraries and backbone loaded) kept at least."),
    "prewarm_max": SettingSpec("LORAFAAS_PREWARM_MAX", "4", _non_negative_int,
                               "Stem cells at most, as cold starts ask for more."),
    "prewarm_ttl_s": SettingSpec("LORAFAAS_PREWARM_TTL_S", "600", _positive_int,
                                 "An unused stem cell beyond the minimum goes after this."),
    "maintenance_period_s": SettingSpec("LORAFAAS_MAINTENANCE_PERIOD_S", "1.0", _positive_float,
                                        "How often the pool checks health, stem cells, "
                                        "keep-alive and pre-loading."),
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
        lines.append(f"| `{spec.env}` | `{spec.default}` | {spec.help} |")
    return "\n".join(lines)


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with some fields changed (for tests and sub-commands)."""
    return dataclasses.replace(settings, **changes)


if __name__ == "__main__":
    # `python -m lorafaas.settings` prints the table for the README's configuration section.
    print(settings_markdown_table())
