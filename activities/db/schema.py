"""The database schema as SQLAlchemy Core tables.

This metadata is Alembic's `target_metadata`: migrations are written by hand (`migrations/versions`)
and `alembic check` proves they produce exactly these tables. Row-level security, policies,
grants, triggers and the `unified_model_registry` view live only in the migrations (SQL that
metadata cannot express); their names are exported here for callers and tests.

Conventions: money is NUMERIC(20,10) (`Decimal` end to end, DESIGN 2); markups are fractions
(0.75 = 75 %); timestamps are timestamptz; ids from the catalog are text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

THERMAL_STATES = ("OFF", "COLD", "WARM", "HOT", "AUTOMATIC")
SERVICE_STATES = ("RUNNING", "DEGRADED", "OFFLINE", "DISABLED")
LEDGER_KINDS = ("model_invocation", "service_charge", "llm_call", "endpoint_uptime")
PRICING_TYPES = ("per_token", "per_request", "per_image", "per_second", "per_minute")
PROVIDER_HEALTH_STATUSES = ("healthy", "degraded", "unhealthy", "unknown")
SYNC_STATUSES = ("running", "completed", "failed")
SERVICE_CATALOG_STATUSES = ("active", "deprecated")  # deprecated: gone from the catalog

# Names of the objects the migrations create with SQL.
TENANT_SETTING = "app.current_tenant_id"  # GUC read by the tenant RLS policies
REGISTRY_APP_SETTING = "radiant.app_id"  # GUCs scoping unified_model_registry's thermal columns
REGISTRY_ENV_SETTING = "radiant.environment"
NOTIFY_CHANNEL = "radiant_notifications"
REGISTRY_VIEW = "unified_model_registry"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _money(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, Numeric(20, 10), nullable=nullable)


def _created_at() -> Column[Any]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Column[Any]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _text_array(name: str) -> Column[Any]:
    return Column(name, ARRAY(Text), nullable=False, server_default=text("'{}'"))


def _jsonb(name: str, default: str = "'{}'") -> Column[Any]:
    return Column(name, JSONB, nullable=False, server_default=text(default))


# --------------------------------------------------------------------------- tenants and catalog

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("name", Text, nullable=False, unique=True),
    Column("tier", SmallInteger, nullable=False, server_default=text("1")),
    _created_at(),
    CheckConstraint("tier BETWEEN 1 AND 5", name="tier_range"),
    # 'Acme' beside 'acme' would be a billing mix-up: names are unique regardless of case
    # (lookups stay exact). Not named uq_tenants_name*, which the exact constraint's errors match.
    Index("uq_tenants_lower_name", func.lower(text("name")), unique=True),
)

instance_types = Table(
    "instance_types",
    metadata,
    Column("name", Text, primary_key=True),
    Column("vram_gb", Integer, nullable=False),
    _money("base_hourly", nullable=False),
    _money("billed_hourly", nullable=False),
    _updated_at(),
    CheckConstraint("vram_gb > 0", name="vram_positive"),
    CheckConstraint("billed_hourly >= base_hourly", name="billed_not_below_base"),
)

self_hosted_models = Table(
    "self_hosted_models",
    metadata,
    Column("model_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("description", Text),
    Column("category", Text, nullable=False),
    Column("specialty", Text),
    # Deployment and pricing are NULL for registry entries that are not deployable (DESIGN 1:
    # never invent prices); the deployable_complete check makes them mandatory otherwise.
    Column("instance_type", Text, ForeignKey("instance_types.name"), index=True),
    Column("image", Text),
    Column("min_tier", SmallInteger),
    Column("gpu_memory_gb", Integer),
    _money("hourly_rate"),  # billed price per instance hour (markup included)
    _money("per_request"),
    _money("per_image"),
    _money("per_minute_audio"),
    _money("per_minute_video"),
    _money("per_3d_model"),
    _money("markup"),  # fraction: 0.75 = 75 %
    Column("default_state", Text),
    Column("scale_to_zero_after_minutes", Integer),
    Column("warmup_time_seconds", Integer),
    Column("min_instances", Integer),
    Column("max_instances", Integer),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("deployable", Boolean, nullable=False, server_default=text("false")),
    _text_array("aliases"),
    _text_array("capabilities"),
    _jsonb("spec"),  # the validated catalog entry as loaded (formats, env, license, ...)
    _updated_at(),
    CheckConstraint(
        "NOT deployable OR (instance_type IS NOT NULL AND image IS NOT NULL"
        " AND min_tier IS NOT NULL AND gpu_memory_gb IS NOT NULL AND hourly_rate IS NOT NULL"
        " AND markup IS NOT NULL AND default_state IS NOT NULL"
        " AND scale_to_zero_after_minutes IS NOT NULL AND warmup_time_seconds IS NOT NULL"
        " AND min_instances IS NOT NULL AND max_instances IS NOT NULL)",
        name="deployable_complete",
    ),
    CheckConstraint("min_tier BETWEEN 1 AND 5", name="min_tier_range"),
    CheckConstraint(_in("default_state", THERMAL_STATES), name="default_state_valid"),
    CheckConstraint(
        "min_instances >= 0 AND max_instances >= min_instances", name="instances_range"
    ),
    Index("ix_self_hosted_models_aliases", "aliases", postgresql_using="gin"),
)

mid_level_services = Table(
    "mid_level_services",
    metadata,
    Column("service_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("description", Text),
    Column("min_tier", SmallInteger, nullable=False),
    _text_array("required_models"),
    _text_array("optional_models"),
    Column("default_state", Text, nullable=False, server_default=text("'DISABLED'")),
    Column("graceful_degradation", Boolean, nullable=False, server_default=text("true")),
    _money("per_request"),
    _money("per_image"),
    _money("per_minute_audio"),
    _money("per_minute_video"),
    _money("per_3d_model"),
    _money("markup", nullable=False),  # fraction: 0.40 = 40 %
    _jsonb("operations", "'[]'"),  # [{operation_id, path, required_models, ...}]
    # 'deprecated' once the catalog drops the service: kept, as service_states and the usage
    # ledger name it, but no longer offered (migration 0006).
    Column("status", Text, nullable=False, server_default=text("'active'")),
    _updated_at(),
    CheckConstraint("min_tier BETWEEN 1 AND 5", name="min_tier_range"),
    CheckConstraint(_in("default_state", SERVICE_STATES), name="default_state_valid"),
    CheckConstraint(_in("status", SERVICE_CATALOG_STATUSES), name="status_valid"),
)

providers = Table(
    "providers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("api_base_url", Text),
    Column("auth_type", Text),
    Column("secret_name", Text),
    _text_array("regions"),
    _text_array("compliance"),
    Column("rate_limit_rpm", Integer),
    Column("rate_limit_tpm", Integer),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _jsonb("spec"),
    _updated_at(),
)

models = Table(
    "models",
    metadata,
    Column("id", Text, primary_key=True),
    Column("provider_id", Text, ForeignKey("providers.id"), nullable=False, index=True),
    Column("model_id", Text, nullable=False),  # the provider's own model name
    Column("litellm_id", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("category", Text, nullable=False),
    _text_array("capabilities"),
    Column("context_window", Integer),
    Column("max_output", Integer),
    Column("pricing_type", Text, nullable=False),
    # Provider cost (what we pay); billed = cost x (1 + markup) (DESIGN 2).
    _money("input_cost_per_1k"),
    _money("output_cost_per_1k"),
    _money("cached_input_cost_per_1k"),  # prompt-cache reads
    _money("cache_write_input_cost_per_1k"),  # prompt-cache writes (migration 0004)
    _money("cache_write_1h_input_cost_per_1k"),  # writes to a 1-hour cache (migration 0004)
    _money("cost_per_request"),
    _money("cost_per_image"),
    _money("cost_per_second"),
    _money("cost_per_minute"),
    _money("markup", nullable=False),  # fraction: 0.40 = 40 %
    Column("min_tier", SmallInteger, nullable=False, server_default=text("1")),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    _jsonb("spec"),
    _updated_at(),
    CheckConstraint(_in("pricing_type", PRICING_TYPES), name="pricing_type_valid"),
    CheckConstraint("min_tier BETWEEN 1 AND 5", name="min_tier_range"),
)

provider_health = Table(
    "provider_health",
    metadata,
    Column("provider_id", Text, ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True),
    Column("status", Text, nullable=False, server_default=text("'unknown'")),
    Column("avg_latency_ms", Integer),
    Column("error_rate", Numeric(7, 6)),  # fraction of failed checks, 0..1
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("last_checked_at", DateTime(timezone=True)),
    _updated_at(),
    CheckConstraint(_in("status", PROVIDER_HEALTH_STATUSES), name="status_valid"),
    CheckConstraint("error_rate BETWEEN 0 AND 1", name="error_rate_range"),
)

registry_sync_log = Table(
    "registry_sync_log",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("sync_type", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'running'")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("models_added", Integer, nullable=False, server_default=text("0")),
    Column("models_updated", Integer, nullable=False, server_default=text("0")),
    Column("models_deprecated", Integer, nullable=False, server_default=text("0")),
    _jsonb("details"),
    CheckConstraint(_in("status", SYNC_STATUSES), name="status_valid"),
    Index("ix_registry_sync_log_started_at", "started_at"),
)

# --------------------------------------------------------------------------- state (mirrors)

thermal_states = Table(
    "thermal_states",
    metadata,
    Column("app_id", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("model_id", Text, ForeignKey("self_hosted_models.model_id"), nullable=False),
    Column("current_state", Text, nullable=False, server_default=text("'OFF'")),
    Column("target_state", Text, nullable=False, server_default=text("'OFF'")),
    Column("instance_count", Integer, nullable=False, server_default=text("0")),
    Column("endpoint_name", Text),
    Column("transitioning", Boolean, nullable=False, server_default=text("false")),
    Column("last_activity_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # The order of the workflow's records (its clock, then its sequence number): a late
    # attempt of an older record is skipped (migration 0005).
    Column("record_at", DateTime(timezone=True)),
    Column("record_seq", BigInteger),
    _updated_at(),
    PrimaryKeyConstraint("app_id", "environment", "model_id"),
    CheckConstraint(_in("current_state", THERMAL_STATES), name="current_state_valid"),
    CheckConstraint(_in("target_state", THERMAL_STATES), name="target_state_valid"),
    CheckConstraint("instance_count >= 0", name="instance_count_nonnegative"),
    Index("ix_thermal_states_model_id", "model_id"),
)

service_states = Table(
    "service_states",
    metadata,
    Column("app_id", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("service_id", Text, ForeignKey("mid_level_services.service_id"), nullable=False),
    Column("state", Text, nullable=False),
    Column("admin_disabled", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text),
    _text_array("unavailable_models"),
    _updated_at(),
    PrimaryKeyConstraint("app_id", "environment", "service_id"),
    CheckConstraint(_in("state", SERVICE_STATES), name="state_valid"),
)

endpoint_uptime = Table(
    "endpoint_uptime",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("app_id", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("model_id", Text, ForeignKey("self_hosted_models.model_id"), nullable=False),
    Column("endpoint_name", Text, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("instance_type", Text, nullable=False),
    _money("billed_hourly", nullable=False),  # rate snapshot: prices may change later
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    CheckConstraint("instance_count > 0", name="instance_count_positive"),
    CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="interval_ordered"),
    # One open interval per (app, env, model): a count change closes one and opens the next.
    Index(
        "uq_endpoint_uptime_open_interval",
        "app_id",
        "environment",
        "model_id",
        unique=True,
        postgresql_where=text("ended_at IS NULL"),
    ),
    Index("ix_endpoint_uptime_started_at", "started_at"),
)

# --------------------------------------------------------------------------- ledger and outbox

usage_ledger = Table(
    "usage_ledger",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    # Built from business ids (workflow id + step), never the attempt (DESIGN 6).
    Column("idempotency_key", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("app_id", Text),
    Column("environment", Text),
    Column("service_id", Text),
    Column("operation_id", Text),
    Column("model_id", Text),
    Column("provider_id", Text),
    Column("workflow_id", Text),
    Column("units", Numeric(20, 10), nullable=False),
    Column("unit", Text, nullable=False),  # image, audio_minute, video_minute, request, token...
    _money("unit_price"),
    _money("billed_amount", nullable=False),  # what the tenant pays
    _money("internal_cost"),  # what serving it cost us (model-level price), for margin
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("served_by", Text),  # endpoint or provider deployment that actually served
    _jsonb("metadata"),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _created_at(),
    UniqueConstraint("tenant_id", "idempotency_key"),
    CheckConstraint(_in("kind", LEDGER_KINDS), name="kind_valid"),
    CheckConstraint("units >= 0", name="units_nonnegative"),
    Index("ix_usage_ledger_tenant_id_occurred_at", "tenant_id", "occurred_at"),
    Index("ix_usage_ledger_workflow_id", "workflow_id"),
)

# One job (or LLM request) per request id of a tenant, whichever way a workflow id spells the
# tenant (activities/request_claims.py). Not append-only: a claim is taken over when its
# workflow ended uncharged, and completed when the request is metered.
request_claims = Table(
    "request_claims",
    metadata,
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    # "job/{service}/{operation}/{request_id}" or "llm/{kind}/{request_id}": no tenant spelling
    Column("request_key", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),  # metered: the request is done
    PrimaryKeyConstraint("tenant_id", "request_key"),
    Index("ix_request_claims_tenant_id_workflow_id", "tenant_id", "workflow_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    # Optional business key (e.g. workflow id + transition) so a retried activity notifies once.
    Column("dedupe_key", Text, unique=True),
    Column("kind", Text, nullable=False),
    Column("app_id", Text),
    Column("environment", Text),
    Column("model_id", Text),
    Column("service_id", Text),
    _jsonb("payload"),
    _created_at(),
    Index("ix_notifications_created_at", "created_at"),
    # `radiant watch --app/--env`: the latest of one pair, newest first (migration 0005)
    Index("ix_notifications_app_environment_id", "app_id", "environment", "id"),
)

# Grouped for grants, truncation and docs.
CATALOG_TABLES = (
    tenants,
    instance_types,
    self_hosted_models,
    mid_level_services,
    providers,
    models,
)
STATE_TABLES = (
    thermal_states,
    service_states,
    endpoint_uptime,
    provider_health,
    registry_sync_log,
    request_claims,
)
APPEND_ONLY_TABLES = (usage_ledger, notifications)
