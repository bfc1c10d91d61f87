"""SQLAlchemy 2 typed models of the registry; Alembic migrations in `migrations/` build them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every registry table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 (SQLAlchemy API)


class Namespace(Base):
    """An OpenWhisk namespace: owns actions and activations."""

    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    keys: Mapped[list[AuthKey]] = relationship(back_populates="namespace",
                                               cascade="all, delete-orphan")


class AuthKey(Base):
    """A subject's `uuid:key` credential; only a hash of the key is stored."""

    __tablename__ = "auth_keys"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(256))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)

    namespace: Mapped[Namespace] = relationship(back_populates="keys")


class Artifact(Base):
    """An adapter archive in the content-addressed store, counted by the versions using it."""

    __tablename__ = "artifacts"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    ref_count: Mapped[int] = mapped_column(Integer, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Action(Base):
    """A function: its current version, code artifact, parameters, annotations and limits."""

    __tablename__ = "actions"
    __table_args__ = (UniqueConstraint("namespace_id", "package", "name",
                                       name="uq_actions_namespace_package_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    package: Mapped[str] = mapped_column(String(256), default="", server_default="")  # "": none
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    exec_kind: Mapped[str] = mapped_column(String(32))
    # None for a sequence, which holds no code (its `components` instead).
    artifact_digest: Mapped[str | None] = mapped_column(ForeignKey("artifacts.digest"))
    components: Mapped[list[Any] | None] = mapped_column(JSON)  # a sequence's, fully qualified
    parameters: Mapped[list[Any]] = mapped_column(JSON)
    annotations: Mapped[list[Any]] = mapped_column(JSON)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    publish: Mapped[bool] = mapped_column(default=False)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

    namespace: Mapped[Namespace] = relationship()


class Package(Base):
    """An OpenWhisk package: parameters and annotations for its actions, or a binding."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_packages_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    # A binding names the package it binds (of another namespace, or its own).
    binding_namespace: Mapped[str | None] = mapped_column(String(256))
    binding_name: Mapped[str | None] = mapped_column(String(256))
    parameters: Mapped[list[Any]] = mapped_column(JSON)
    annotations: Mapped[list[Any]] = mapped_column(JSON)
    publish: Mapped[bool] = mapped_column(default=False)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ActionVersion(Base):
    """One version of an action, kept for its history; each holds a reference to its artifact."""

    __tablename__ = "action_versions"
    __table_args__ = (Index("ix_action_versions_action", "action_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # grows: newest is the largest
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(32))
    artifact_digest: Mapped[str | None] = mapped_column(ForeignKey("artifacts.digest"))
    exec_kind: Mapped[str] = mapped_column(String(32))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PendingInvocation(Base):
    """An accepted invocation whose record is not written yet: the controller that runs it
    holds its lease (`lorafaas.registry.leases`); once that runs out, another resumes it."""

    __tablename__ = "pending_invocations"
    __table_args__ = (Index("ix_pending_invocations_lease_until_ms", "lease_until_ms"),)

    activation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str] = mapped_column(String(256))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(64), default=None)  # controller id
    lease_until_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)


class Activation(Base):
    """The record of one invocation, in OpenWhisk's activation shape."""

    __tablename__ = "activations"
    __table_args__ = (Index("ix_activations_namespace_start", "namespace", "start_ms"),)

    activation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(256))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    logs: Mapped[list[Any]] = mapped_column(JSON)
    annotations: Mapped[list[Any]] = mapped_column(JSON)
    cause: Mapped[str | None] = mapped_column(String(32))  # the sequence activation it ran in
    # A sequence's: the sum of its components' durations (None: end - start).
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)


class UsageRecord(Base):
    """Metered use: one row per activation (billed), or platform overhead (not billed).

    `kind` is `activation`, or an overhead: `init` (a container initializing for a request),
    `idle_warm`, `idle_preloaded`, `idle_prewarm` (containers waiting). Costs are in USD.
    """

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_namespace_start", "namespace", "start_ms"),
                      Index("ix_usage_records_start", "start_ms"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(256))
    action: Mapped[str | None] = mapped_column(String(256))
    activation_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    start_kind: Mapped[str | None] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    accelerator_s: Mapped[float] = mapped_column(Float)
    gb_s: Mapped[float] = mapped_column(Float)
    accelerator_kind: Mapped[str] = mapped_column(String(16))
    cost_accelerator: Mapped[float] = mapped_column(Float)
    cost_memory: Mapped[float] = mapped_column(Float)
    cost_prompt: Mapped[float] = mapped_column(Float)
    cost_completion: Mapped[float] = mapped_column(Float)
    cost_total: Mapped[float] = mapped_column(Float)


class ArtifactProfile(Base):
    """The running estimate of one artifact's load, for one version of a function's code.

    One row per (action, adapter digest, artifact, tier): `load_ms` is the time to load the
    artifact into `tier` (from disk, at a cold or pre-warm start) and `memory_bytes` what it
    takes there, each an exponentially weighted moving mean over `samples` loads (see
    `lorafaas.invoker.artifact_loads`). A new adapter digest is measured afresh.
    """

    __tablename__ = "artifact_profiles"
    __table_args__ = (UniqueConstraint("namespace", "action", "adapter_digest", "artifact",
                                       "tier", name="uq_artifact_profiles_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(256))
    adapter_digest: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str] = mapped_column(String(16))  # libraries, backbone, adapter, ...
    tier: Mapped[str] = mapped_column(String(16))  # disk, host or accelerator
    load_ms: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[int] = mapped_column(Integer)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PrefillProfileRecord(Base):
    """One profiled prefill fit T(b) = T0 + α·(b−1): an adapter rank at one prompt length.

    One row per (backbone, checkpoint digest, runtime image id, machine, rank, prompt
    length): a change of any of the first four makes another key, so the old rows are
    simply not found and the rank is profiled again (see `lorafaas.invoker.prefill_fits`).
    `samples` holds the measured [b, median ms] pairs, b = 1…16 by default.
    """

    __tablename__ = "prefill_profiles"
    __table_args__ = (UniqueConstraint("backbone", "backbone_digest", "image", "machine",
                                       "adapter_rank", "prompt_length",
                                       name="uq_prefill_profiles_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backbone: Mapped[str] = mapped_column(String(256))
    backbone_digest: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(128))  # the image's content id, sha256:…
    machine: Mapped[str] = mapped_column(String(512))
    adapter_rank: Mapped[int] = mapped_column(Integer)
    prompt_length: Mapped[int] = mapped_column(Integer)
    t0_ms: Mapped[float] = mapped_column(Float)
    alpha_ms: Mapped[float] = mapped_column(Float)
    r2: Mapped[float] = mapped_column(Float)
    samples: Mapped[list[Any]] = mapped_column(JSON)
    measured_ms: Mapped[int] = mapped_column(BigInteger)


class Trigger(Base):
    """An OpenWhisk trigger: a named channel of events that fires its rules' actions."""

    __tablename__ = "triggers"
    __table_args__ = (UniqueConstraint("namespace_id", "name",
                                       name="uq_triggers_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[list[Any]] = mapped_column(JSON)
    annotations: Mapped[list[Any]] = mapped_column(JSON)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    publish: Mapped[bool] = mapped_column(default=False)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Rule(Base):
    """A rule: fires its action when its trigger fires, while it is linked and active.

    `trigger_id` is the trigger the rule is linked to (OpenWhisk keeps a rule's status in
    its trigger's document): a deleted trigger unlinks its rules, which then read as
    inactive, and stay so when a trigger of that name is created again until enabled.
    """

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_rules_namespace_name"),
                      Index("ix_rules_trigger", "trigger_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    trigger_path: Mapped[str] = mapped_column(String(256))  # the trigger's namespace
    trigger_name: Mapped[str] = mapped_column(String(256))
    action_path: Mapped[str] = mapped_column(String(520))  # namespace, or namespace/package
    action_name: Mapped[str] = mapped_column(String(256))
    trigger_id: Mapped[int | None] = mapped_column(
        ForeignKey("triggers.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))  # active or inactive, while linked
    annotations: Mapped[list[Any]] = mapped_column(JSON)
    publish: Mapped[bool] = mapped_column(default=False)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Alarm(Base):
    """A trigger's periodic feed (`/whisk.system/alarms/alarm` or `.../interval`)."""

    __tablename__ = "alarms"

    trigger_id: Mapped[int] = mapped_column(ForeignKey("triggers.id", ondelete="CASCADE"),
                                            primary_key=True)
    namespace: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str] = mapped_column(String(256))  # who created it: its fires' subject
    feed: Mapped[str] = mapped_column(String(64))
    cron: Mapped[str | None] = mapped_column(String(256))
    minutes: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    start_ms: Mapped[int | None] = mapped_column(BigInteger)
    stop_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class AlarmTick(Base):
    """One tick of one alarm, fired: the controller whose INSERT landed first fires it."""

    __tablename__ = "alarm_ticks"
    __table_args__ = (Index("ix_alarm_ticks_tick", "tick_ms"),)

    trigger_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tick_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fired_by: Mapped[str] = mapped_column(String(64))
    fired_ms: Mapped[int] = mapped_column(BigInteger)
