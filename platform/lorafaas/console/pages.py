"""The context object of every console page: one frozen dataclass per template.

Each page's template reads exactly these fields plus `chrome` (the frame around every
page); the templates render with StrictUndefined, and a test checks that the variables
each template uses are the fields of its context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Chrome:
    """The frame of every page: who is signed in, the CSRF token of its forms, the section."""

    namespace: str | None
    is_admin: bool
    csrf: str
    section: str


@dataclass(frozen=True)
class SignInPage:
    """Sign in with a namespace key; `error` is shown next to the key field."""

    TEMPLATE: ClassVar[str] = "sign_in.html"
    SECTION: ClassVar[str] = "sign-in"
    error: str | None
    next_path: str


@dataclass(frozen=True)
class FunctionRow:
    """One function in the list: its instances, last invocation, and today's requests/cost."""

    name: str
    version: str
    state: str  # warm, pre-loaded or cold
    instances: int
    last_invocation: str | None
    requests_today: int
    cost_today: float
    backbone: str  # the backbone its `backbone` annotation names ("" unless kind lora)
    kind: str = "lora"  # lora, python:3 or sequence
    components: int = 0  # a sequence's count of actions


@dataclass(frozen=True)
class FunctionsPage:
    """The namespace's functions."""

    TEMPLATE: ClassVar[str] = "functions.html"
    SECTION: ClassVar[str] = "functions"
    functions: list[FunctionRow]


@dataclass(frozen=True)
class PackageRow:
    """One package or binding of the packages page."""

    name: str
    version: str
    shared: bool
    binding: str | None  # `namespace/package` a binding binds
    parameters: list[str]  # their keys
    actions: list[str]  # its actions' names (none for a binding)


@dataclass(frozen=True)
class PackagesPage:
    """The namespace's packages and bindings."""

    TEMPLATE: ClassVar[str] = "packages.html"
    SECTION: ClassVar[str] = "packages"
    packages: list[PackageRow]


@dataclass(frozen=True)
class UploadPage:
    """Create or update a function from an adapter folder or zip; `errors` by field name."""

    TEMPLATE: ClassVar[str] = "upload.html"
    SECTION: ClassVar[str] = "functions"
    name: str
    updating: bool
    errors: dict[str, str]
    max_bytes: int


@dataclass(frozen=True)
class ActivationRow:
    """One activation in a list."""

    activation_id: str
    name: str
    start: str
    duration_ms: int
    ttft_ms: float | None
    start_kind: str | None
    status: str
    success: bool
    cost: float | None


@dataclass(frozen=True)
class Percentiles:
    """p50/p90/p99 of one latency, in milliseconds (None without samples)."""

    label: str
    p50: float | None
    p90: float | None
    p99: float | None
    samples: int


@dataclass(frozen=True)
class Snippet:
    """One way of calling a function, shown with a copy button."""

    key: str  # the element id's suffix
    label: str
    code: str


@dataclass(frozen=True)
class LimitField:
    """One editable limit of a function: its value and the range the API accepts."""

    name: str
    label: str
    value: int
    low: int
    high: int
    unit: str


@dataclass(frozen=True)
class TimelineRow:
    """One bucket of a function's charts, for the table beside them."""

    start: str
    requests: int
    ttft_p50: float | None
    ttft_p99: float | None
    cold_share: float | None  # percent of the requests that ran
    cost_per_hour: float


@dataclass(frozen=True)
class ComponentLink:
    """One action of a sequence: its qualified name, and its console page where it has one."""

    name: str  # /namespace/[package/]action
    href: str | None  # a function's page, the packages page, or none (another namespace's)


@dataclass(frozen=True)
class RunResult:
    """A code action or sequence run from its page: the activation and its result."""

    activation_id: str
    success: bool
    status: str  # success, application error, developer error, internal error
    result_json: str


@dataclass(frozen=True)
class FunctionPage:
    """A function: how to call it, its limits, the playground, charts over time, recent
    activations and latency percentiles; `error` is a refused limits edit."""

    TEMPLATE: ClassVar[str] = "function.html"
    SECTION: ClassVar[str] = "functions"
    name: str
    version: str
    backbone: str
    adapter: dict[str, Any]
    limits: dict[str, Any]
    limit_fields: list[LimitField]
    max_tokens_limit: int  # the playground's bound: the function's own `max_tokens` limit
    snippets: list[Snippet]
    endpoint: str
    activations: list[ActivationRow]
    latencies: list[Percentiles]
    window: str  # the charts' window: a key of `windows`
    windows: list[tuple[str, str]]  # key and label of each window the charts offer
    chart_data: dict[str, Any]  # the series of the charts over time (console.timeline)
    timeline_rows: list[TimelineRow]  # the buckets with any request or cost
    error: str | None = None
    components: tuple[ComponentLink, ...] = ()  # a sequence's actions, in order
    kind: str = "lora"  # lora (the playground), or python:3 and sequence (the JSON form)
    web_url: str | None = None  # where it answers without a key, when web-exported
    parameters_json: str = "{}"  # the JSON form's parameters, as last sent
    run: RunResult | None = None  # the JSON form's last run
    run_error: str | None = None  # why the JSON form's parameters were refused


@dataclass(frozen=True)
class InitSegment:
    """One artifact's share of the initialization bar."""

    artifact: str
    ms: float
    percent: float


@dataclass(frozen=True)
class Phase:
    """One phase of an activation's timeline: queue, an artifact's load, prefill, decode."""

    label: str
    kind: str  # queue, init, prefill, decode or run: the segment's colour
    ms: float
    percent: float


@dataclass(frozen=True)
class ActivationPage:
    """One activation: the record, its parameters, the timeline and init breakdown as bars,
    the error folded to its first line, the result and the logs."""

    TEMPLATE: ClassVar[str] = "activation.html"
    SECTION: ClassVar[str] = "functions"
    summary: ActivationRow
    usage: dict[str, Any]
    timings: dict[str, Any]  # waitTime, initTime (ms) and batchSize, None where not recorded
    parameters_json: str | None
    phases: list[Phase]
    init_segments: list[InitSegment]
    init_total_ms: float
    init_note: str  # why there is no init breakdown, when there is none
    error: str | None
    error_head: str | None  # the error's first line, shortened
    result_json: str
    logs: list[str]
    record_json: str


@dataclass(frozen=True)
class UsageLine:
    """Cost and requests of one function on one day."""

    day: str
    function: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


@dataclass(frozen=True)
class UsagePage:
    """Usage and billing: per day per function, TTFT, start kinds, the dedicated comparison."""

    TEMPLATE: ClassVar[str] = "usage.html"
    SECTION: ClassVar[str] = "usage"
    days: int
    source: str  # where the numbers come from: the billing report, or the activation records
    total_cost: float
    total_requests: int
    lines: list[UsageLine]
    start_kinds: dict[str, int]
    ttft_buckets: list[tuple[str, int]]
    dedicated: dict[str, Any] | None
    chart_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerRow:
    """One container of the pool."""

    name: str
    function: str
    state: str
    memory_mb: int
    idle_s: float
    rss_mb: float | None = None  # None where /proc cannot be read
    pss_mb: float | None = None


@dataclass(frozen=True)
class EvictionRow:
    """A container the pool removed recently: which, when, and why."""

    when: str
    container: str
    function: str  # namespace/name, or "stem cell"
    state: str  # what it was when removed
    memory_mb: int
    idle_s: float
    uses: int
    reason: str


@dataclass(frozen=True)
class PlatformPage:
    """For admins: containers and backbone servers with RSS and PSS, the pool's stem cells
    and pre-loaded containers, memory per tier, queue lengths, recent evictions; refreshed
    live."""

    TEMPLATE: ClassVar[str] = "platform.html"
    SECTION: ClassVar[str] = "platform"
    containers: list[ContainerRow]
    memory_tiers: list[tuple[str, float]]
    backbones: list[dict[str, Any]]
    queues: list[tuple[str, int]]
    pool: list[tuple[str, int]]  # stem cells, pre-loaded, warm, busy, starting
    measured: list[tuple[str, float]]  # summed RSS and PSS of containers and backbone servers
    evictions: list[EvictionRow]  # newest first
    updated: str


@dataclass(frozen=True)
class ApiReferencePage:
    """The REST API's OpenAPI document, rendered by a renderer this platform serves."""

    TEMPLATE: ClassVar[str] = "api_reference.html"
    SECTION: ClassVar[str] = "api-reference"
    spec_url: str
    renderer: str  # its name and version
    assets: str  # where its files are served


@dataclass(frozen=True)
class ErrorPage:
    """An error, in words for a person, with the request id to quote."""

    TEMPLATE: ClassVar[str] = "error.html"
    SECTION: ClassVar[str] = "error"
    status: int
    message: str
    request_id: str


@dataclass(frozen=True)
class TriggerRow:
    """One trigger: its feed (an alarm's schedule), its rules and its last firing."""

    name: str
    version: str
    feed: str | None  # `/whisk.system/alarms/alarm (*/5 * * * *)`, say
    rules: list[str]  # `rule → action (status)`
    last_fired: str | None


@dataclass(frozen=True)
class RuleRow:
    """One rule: its trigger, action and status."""

    name: str
    trigger: str
    action: str
    status: str


@dataclass(frozen=True)
class TriggersPage:
    """The namespace's triggers and rules."""

    TEMPLATE: ClassVar[str] = "triggers.html"
    SECTION: ClassVar[str] = "triggers"
    triggers: list[TriggerRow]
    rules: list[RuleRow]


PAGES: tuple[type, ...] = (SignInPage, FunctionsPage, UploadPage, FunctionPage, ActivationPage,
                           UsagePage, PlatformPage, ApiReferencePage, ErrorPage, TriggersPage,
                           PackagesPage)
