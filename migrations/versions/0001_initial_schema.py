"""Initial schema: catalog, state mirrors, usage ledger (RLS), notifications outbox, registry view,
and the application role's grants.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

The application role (default `radiant_app`; see migrations/env.py for where the name and
password come from) is created if missing: LOGIN NOSUPERUSER NOBYPASSRLS, owning nothing. It gets
only what the worker needs: SELECT on the catalog, SELECT/INSERT/UPDATE on the state mirrors,
SELECT/INSERT on the append-only ledger and outbox. An existing role with SUPERUSER or BYPASSRLS
is refused, because it would silently defeat the ledger's row-level security.

Downgrade drops every object created here and revokes the role's privileges, but keeps the role:
roles are cluster-wide, and other databases on the same server (another environment, a test
database) may still use it. Drop it by hand with `DROP ROLE radiant_app` once nothing uses it.

Later revisions that add tables must GRANT to the application role explicitly (no default
privileges are set, so nothing is granted by accident).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.app_role import app_role as _app_role
from migrations.app_role import sql_literal as _sql_literal

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

THERMAL_STATES = "('OFF', 'COLD', 'WARM', 'HOT', 'AUTOMATIC')"
SERVICE_STATES = "('RUNNING', 'DEGRADED', 'OFFLINE', 'DISABLED')"
TENANT_ID = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"
REGISTRY_APP = "NULLIF(current_setting('radiant.app_id', true), '')"
REGISTRY_ENV = "NULLIF(current_setting('radiant.environment', true), '')"

CATALOG_TABLES = (
    "tenants",
    "instance_types",
    "self_hosted_models",
    "mid_level_services",
    "providers",
    "models",
)
STATE_TABLES = (
    "thermal_states",
    "service_states",
    "endpoint_uptime",
    "provider_health",
    "registry_sync_log",
)
APPEND_ONLY_TABLES = ("usage_ledger", "notifications")
SEQUENCES = (
    "registry_sync_log_id_seq",
    "endpoint_uptime_id_seq",
    "usage_ledger_id_seq",
    "notifications_id_seq",
)
UPDATED_AT_TABLES = (
    "instance_types",
    "self_hosted_models",
    "mid_level_services",
    "providers",
    "models",
    "provider_health",
    "thermal_states",
    "service_states",
)


def _money(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.Numeric(20, 10), nullable=nullable)


def _text_array(name: str) -> sa.Column[object]:
    return sa.Column(
        name, postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
    )


def _jsonb(name: str, default: str = "'{}'") -> sa.Column[object]:
    return sa.Column(name, postgresql.JSONB(), server_default=sa.text(default), nullable=False)


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


# ================================================================================ upgrade


def upgrade() -> None:
    _create_catalog_tables()
    _create_state_tables()
    _create_ledger_and_outbox()
    _create_functions_and_triggers()
    _enable_ledger_rls()
    _create_registry_view()
    _create_app_role_and_grants()


def _create_catalog_tables() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tier", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("tier BETWEEN 1 AND 5", name=op.f("ck_tenants_tier_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "instance_types",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("vram_gb", sa.Integer(), nullable=False),
        _money("base_hourly", nullable=False),
        _money("billed_hourly", nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "billed_hourly >= base_hourly", name=op.f("ck_instance_types_billed_not_below_base")
        ),
        sa.CheckConstraint("vram_gb > 0", name=op.f("ck_instance_types_vram_positive")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instance_types")),
    )
    op.create_table(
        "self_hosted_models",
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("specialty", sa.Text(), nullable=True),
        sa.Column("instance_type", sa.Text(), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("min_tier", sa.SmallInteger(), nullable=True),
        sa.Column("gpu_memory_gb", sa.Integer(), nullable=True),
        _money("hourly_rate"),
        _money("per_request"),
        _money("per_image"),
        _money("per_minute_audio"),
        _money("per_minute_video"),
        _money("per_3d_model"),
        _money("markup"),
        sa.Column("default_state", sa.Text(), nullable=True),
        sa.Column("scale_to_zero_after_minutes", sa.Integer(), nullable=True),
        sa.Column("warmup_time_seconds", sa.Integer(), nullable=True),
        sa.Column("min_instances", sa.Integer(), nullable=True),
        sa.Column("max_instances", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("deployable", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _text_array("aliases"),
        _text_array("capabilities"),
        _jsonb("spec"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            f"default_state IN {THERMAL_STATES}",
            name=op.f("ck_self_hosted_models_default_state_valid"),
        ),
        sa.CheckConstraint(
            "NOT deployable OR (instance_type IS NOT NULL AND image IS NOT NULL"
            " AND min_tier IS NOT NULL AND gpu_memory_gb IS NOT NULL AND hourly_rate IS NOT NULL"
            " AND markup IS NOT NULL AND default_state IS NOT NULL"
            " AND scale_to_zero_after_minutes IS NOT NULL AND warmup_time_seconds IS NOT NULL"
            " AND min_instances IS NOT NULL AND max_instances IS NOT NULL)",
            name=op.f("ck_self_hosted_models_deployable_complete"),
        ),
        sa.CheckConstraint(
            "min_instances >= 0 AND max_instances >= min_instances",
            name=op.f("ck_self_hosted_models_instances_range"),
        ),
        sa.CheckConstraint(
            "min_tier BETWEEN 1 AND 5", name=op.f("ck_self_hosted_models_min_tier_range")
        ),
        sa.ForeignKeyConstraint(
            ["instance_type"],
            ["instance_types.name"],
            name=op.f("fk_self_hosted_models_instance_type_instance_types"),
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_self_hosted_models")),
    )
    op.create_index(
        op.f("ix_self_hosted_models_instance_type"), "self_hosted_models", ["instance_type"]
    )
    # Alias lookups: WHERE aliases @> ARRAY['sam-2'].
    op.create_index(
        "ix_self_hosted_models_aliases", "self_hosted_models", ["aliases"], postgresql_using="gin"
    )
    op.create_table(
        "mid_level_services",
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("min_tier", sa.SmallInteger(), nullable=False),
        _text_array("required_models"),
        _text_array("optional_models"),
        sa.Column("default_state", sa.Text(), server_default=sa.text("'DISABLED'"), nullable=False),
        sa.Column(
            "graceful_degradation", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
        _money("per_request"),
        _money("per_image"),
        _money("per_minute_audio"),
        _money("per_minute_video"),
        _money("per_3d_model"),
        _money("markup", nullable=False),
        _jsonb("operations", "'[]'"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            f"default_state IN {SERVICE_STATES}",
            name=op.f("ck_mid_level_services_default_state_valid"),
        ),
        sa.CheckConstraint(
            "min_tier BETWEEN 1 AND 5", name=op.f("ck_mid_level_services_min_tier_range")
        ),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_mid_level_services")),
    )
    op.create_table(
        "providers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("api_base_url", sa.Text(), nullable=True),
        sa.Column("auth_type", sa.Text(), nullable=True),
        sa.Column("secret_name", sa.Text(), nullable=True),
        _text_array("regions"),
        _text_array("compliance"),
        sa.Column("rate_limit_rpm", sa.Integer(), nullable=True),
        sa.Column("rate_limit_tpm", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _jsonb("spec"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("litellm_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        _text_array("capabilities"),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("max_output", sa.Integer(), nullable=True),
        sa.Column("pricing_type", sa.Text(), nullable=False),
        _money("input_cost_per_1k"),
        _money("output_cost_per_1k"),
        _money("cached_input_cost_per_1k"),
        _money("cost_per_request"),
        _money("cost_per_image"),
        _money("cost_per_second"),
        _money("cost_per_minute"),
        _money("markup", nullable=False),
        sa.Column("min_tier", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        _jsonb("spec"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "pricing_type IN ('per_token', 'per_request', 'per_image', 'per_second', 'per_minute')",
            name=op.f("ck_models_pricing_type_valid"),
        ),
        sa.CheckConstraint("min_tier BETWEEN 1 AND 5", name=op.f("ck_models_min_tier_range")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.id"], name=op.f("fk_models_provider_id_providers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("litellm_id", name=op.f("uq_models_litellm_id")),
    )
    op.create_index(op.f("ix_models_provider_id"), "models", ["provider_id"])


def _create_state_tables() -> None:
    op.create_table(
        "provider_health",
        sa.Column("provider_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'unknown'"), nullable=False),
        sa.Column("avg_latency_ms", sa.Integer(), nullable=True),
        sa.Column("error_rate", sa.Numeric(7, 6), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('healthy', 'degraded', 'unhealthy', 'unknown')",
            name=op.f("ck_provider_health_status_valid"),
        ),
        sa.CheckConstraint(
            "error_rate BETWEEN 0 AND 1", name=op.f("ck_provider_health_error_rate_range")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_provider_health_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_provider_health")),
    )
    op.create_table(
        "registry_sync_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("sync_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'running'"), nullable=False),
        _timestamp("started_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("models_added", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("models_updated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("models_deprecated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _jsonb("details"),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')",
            name=op.f("ck_registry_sync_log_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_sync_log")),
    )
    op.create_index("ix_registry_sync_log_started_at", "registry_sync_log", ["started_at"])
    op.create_table(
        "thermal_states",
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("current_state", sa.Text(), server_default=sa.text("'OFF'"), nullable=False),
        sa.Column("target_state", sa.Text(), server_default=sa.text("'OFF'"), nullable=False),
        sa.Column("instance_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("endpoint_name", sa.Text(), nullable=True),
        sa.Column("transitioning", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            f"current_state IN {THERMAL_STATES}", name=op.f("ck_thermal_states_current_state_valid")
        ),
        sa.CheckConstraint(
            f"target_state IN {THERMAL_STATES}", name=op.f("ck_thermal_states_target_state_valid")
        ),
        sa.CheckConstraint(
            "instance_count >= 0", name=op.f("ck_thermal_states_instance_count_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["self_hosted_models.model_id"],
            name=op.f("fk_thermal_states_model_id_self_hosted_models"),
        ),
        sa.PrimaryKeyConstraint(
            "app_id", "environment", "model_id", name=op.f("pk_thermal_states")
        ),
    )
    op.create_index("ix_thermal_states_model_id", "thermal_states", ["model_id"])
    op.create_table(
        "service_states",
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("admin_disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _text_array("unavailable_models"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            f"state IN {SERVICE_STATES}", name=op.f("ck_service_states_state_valid")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["mid_level_services.service_id"],
            name=op.f("fk_service_states_service_id_mid_level_services"),
        ),
        sa.PrimaryKeyConstraint(
            "app_id", "environment", "service_id", name=op.f("pk_service_states")
        ),
    )
    op.create_table(
        "endpoint_uptime",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("endpoint_name", sa.Text(), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("instance_type", sa.Text(), nullable=False),
        _money("billed_hourly", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at",
            name=op.f("ck_endpoint_uptime_interval_ordered"),
        ),
        sa.CheckConstraint(
            "instance_count > 0", name=op.f("ck_endpoint_uptime_instance_count_positive")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["self_hosted_models.model_id"],
            name=op.f("fk_endpoint_uptime_model_id_self_hosted_models"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_uptime")),
    )
    op.create_index("ix_endpoint_uptime_started_at", "endpoint_uptime", ["started_at"])
    # At most one open interval per (app, env, model).
    op.create_index(
        "uq_endpoint_uptime_open_interval",
        "endpoint_uptime",
        ["app_id", "environment", "model_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def _create_ledger_and_outbox() -> None:
    op.create_table(
        "usage_ledger",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=True),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("service_id", sa.Text(), nullable=True),
        sa.Column("operation_id", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.Text(), nullable=True),
        sa.Column("units", sa.Numeric(20, 10), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        _money("unit_price"),
        _money("billed_amount", nullable=False),
        _money("internal_cost"),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("served_by", sa.Text(), nullable=True),
        _jsonb("metadata"),
        _timestamp("occurred_at"),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "kind IN ('model_invocation', 'service_charge', 'llm_call', 'endpoint_uptime')",
            name=op.f("ck_usage_ledger_kind_valid"),
        ),
        sa.CheckConstraint("units >= 0", name=op.f("ck_usage_ledger_units_nonnegative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_usage_ledger_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_ledger")),
        sa.UniqueConstraint(
            "tenant_id",
            "idempotency_key",
            name=op.f("uq_usage_ledger_tenant_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_usage_ledger_tenant_id_occurred_at", "usage_ledger", ["tenant_id", "occurred_at"]
    )
    op.create_index("ix_usage_ledger_workflow_id", "usage_ledger", ["workflow_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=True),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Text(), nullable=True),
        sa.Column("service_id", sa.Text(), nullable=True),
        _jsonb("payload"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])


def _create_functions_and_triggers() -> None:
    # updated_at follows real changes whoever writes the row (catalog sync, worker, psql).
    op.execute(
        """
        CREATE FUNCTION radiant_touch_updated_at() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW IS DISTINCT FROM OLD THEN
                NEW.updated_at := now();
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    for table in UPDATED_AT_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_touch_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION radiant_touch_updated_at()"
        )
    # Outbox + NOTIFY: followers LISTEN live; the row stays for those who were not listening.
    # pg_notify is transactional (delivered at COMMIT) and limited to 8000 bytes, so an
    # oversized payload is left out of the message (flagged) and read from the table by id.
    op.execute(
        """
        CREATE FUNCTION radiant_notify_notification() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            message jsonb;
        BEGIN
            message := jsonb_build_object(
                'id', NEW.id, 'kind', NEW.kind, 'dedupe_key', NEW.dedupe_key,
                'app_id', NEW.app_id, 'environment', NEW.environment,
                'model_id', NEW.model_id, 'service_id', NEW.service_id,
                'payload', NEW.payload, 'created_at', NEW.created_at);
            IF octet_length(message::text) > 7900 THEN
                message := (message - 'payload') || jsonb_build_object('payload_truncated', true);
            END IF;
            PERFORM pg_notify('radiant_notifications', message::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER trg_notifications_notify AFTER INSERT ON notifications "
        "FOR EACH ROW EXECUTE FUNCTION radiant_notify_notification()"
    )


def _enable_ledger_rls() -> None:
    # FORCE: the owner is subject to the policy too (superusers still bypass; the app role is
    # neither owner nor superuser). With no tenant set the setting is NULL or '' -> no rows.
    op.execute("ALTER TABLE usage_ledger ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE usage_ledger FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON usage_ledger "
        f"USING (tenant_id = {TENANT_ID}) WITH CHECK (tenant_id = {TENANT_ID})"
    )


def _create_registry_view() -> None:
    # One row per external model and per self-hosted model (deployable or registry-only).
    # Thermal columns are for the (app, environment) the caller sets with
    # set_config('radiant.app_id' / 'radiant.environment', ..., true)
    # (activities.db.registry.set_registry_scope); NULL when unset or never deployed there.
    # security_invoker: callers' own privileges (and any RLS) apply, not the view owner's.
    op.execute(
        f"""
        CREATE VIEW unified_model_registry WITH (security_invoker = true) AS
        SELECT
            m.id AS id,
            'external'::text AS hosting_type,
            m.provider_id AS provider_id,
            p.display_name AS provider_name,
            m.litellm_id AS litellm_id,
            m.display_name AS display_name,
            m.category AS category,
            NULL::text AS specialty,
            m.capabilities AS capabilities,
            '{{}}'::text[] AS aliases,
            m.status AS status,
            (m.status = 'active' AND p.enabled) AS deployable,
            m.min_tier AS min_tier,
            m.context_window AS context_window,
            m.max_output AS max_output,
            m.pricing_type AS pricing_type,
            m.markup AS markup,
            (m.input_cost_per_1k * (1 + m.markup))::numeric(20, 10) AS billed_input_per_1k,
            (m.output_cost_per_1k * (1 + m.markup))::numeric(20, 10) AS billed_output_per_1k,
            (m.cost_per_request * (1 + m.markup))::numeric(20, 10) AS billed_per_request,
            (m.cost_per_image * (1 + m.markup))::numeric(20, 10) AS billed_per_image,
            (m.cost_per_second * (1 + m.markup))::numeric(20, 10) AS billed_per_second,
            (m.cost_per_minute * (1 + m.markup))::numeric(20, 10) AS billed_per_minute_audio,
            NULL::numeric(20, 10) AS billed_per_minute_video,
            NULL::numeric(20, 10) AS billed_per_3d_model,
            NULL::numeric(20, 10) AS billed_hourly,
            NULL::text AS instance_type,
            NULL::integer AS gpu_memory_gb,
            NULL::text AS default_thermal_state,
            NULL::integer AS warmup_time_seconds,
            NULL::text AS app_id,
            NULL::text AS environment,
            NULL::text AS thermal_state,
            NULL::text AS target_thermal_state,
            NULL::boolean AS transitioning,
            NULL::integer AS instance_count,
            NULL::text AS endpoint_name,
            COALESCE(ph.status, 'unknown') AS health_status,
            ph.avg_latency_ms AS avg_latency_ms,
            ph.error_rate AS error_rate,
            m.updated_at AS updated_at
        FROM models m
        JOIN providers p ON p.id = m.provider_id
        LEFT JOIN provider_health ph ON ph.provider_id = m.provider_id
        UNION ALL
        SELECT
            sh.model_id,
            'self_hosted'::text,
            'self_hosted'::text,
            'RADIANT Self-Hosted'::text,
            NULL::text,
            sh.display_name,
            sh.category,
            sh.specialty,
            sh.capabilities,
            sh.aliases,
            sh.status,
            sh.deployable,
            sh.min_tier,
            NULL::integer,
            NULL::integer,
            'per_hour'::text,
            sh.markup,
            NULL::numeric(20, 10),
            NULL::numeric(20, 10),
            sh.per_request,
            sh.per_image,
            NULL::numeric(20, 10),
            sh.per_minute_audio,
            sh.per_minute_video,
            sh.per_3d_model,
            sh.hourly_rate,
            sh.instance_type,
            sh.gpu_memory_gb,
            sh.default_state,
            sh.warmup_time_seconds,
            {REGISTRY_APP},
            {REGISTRY_ENV},
            ts.current_state,
            ts.target_state,
            ts.transitioning,
            ts.instance_count,
            ts.endpoint_name,
            NULL::text,
            NULL::integer,
            NULL::numeric(7, 6),
            sh.updated_at
        FROM self_hosted_models sh
        LEFT JOIN thermal_states ts
            ON ts.model_id = sh.model_id
            AND ts.app_id = {REGISTRY_APP}
            AND ts.environment = {REGISTRY_ENV}
        """
    )


def _create_app_role_and_grants() -> None:
    role, password = _app_role()
    password_clause = f" PASSWORD {_sql_literal(password)}" if password else ""
    if "$role$" in password_clause:
        raise ValueError("the application role password must not contain '$role$'")
    refusal = (
        f'application role "{role}" is SUPERUSER or BYPASSRLS: it would bypass row-level '
        "security; use a plain login role"
    )
    # Created only if missing (roles are cluster-wide); an existing role must not bypass RLS.
    op.execute(
        f"""
        DO $role$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(role)}) THEN
                CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
                    {password_clause};
            ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(role)}
                          AND (rolsuper OR rolbypassrls)) THEN
                RAISE EXCEPTION '%', {_sql_literal(refusal)};
            END IF;
        END
        $role$
        """
    )
    op.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    op.execute(f'GRANT SELECT ON {", ".join(CATALOG_TABLES)} TO "{role}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON {", ".join(STATE_TABLES)} TO "{role}"')
    # Append-only: no UPDATE or DELETE on the ledger and the outbox.
    op.execute(f'GRANT SELECT, INSERT ON {", ".join(APPEND_ONLY_TABLES)} TO "{role}"')
    op.execute(f'GRANT SELECT ON unified_model_registry TO "{role}"')
    op.execute(f'GRANT USAGE ON SEQUENCE {", ".join(SEQUENCES)} TO "{role}"')


# ================================================================================ downgrade


def downgrade() -> None:
    _revoke_app_role_grants()
    op.execute("DROP VIEW unified_model_registry")
    op.execute("DROP POLICY tenant_isolation ON usage_ledger")
    op.execute("ALTER TABLE usage_ledger NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE usage_ledger DISABLE ROW LEVEL SECURITY")
    op.execute("DROP TRIGGER trg_notifications_notify ON notifications")
    op.execute("DROP FUNCTION radiant_notify_notification()")
    for table in reversed(UPDATED_AT_TABLES):
        op.execute(f"DROP TRIGGER trg_{table}_touch_updated_at ON {table}")
    op.execute("DROP FUNCTION radiant_touch_updated_at()")

    op.drop_index("ix_notifications_created_at", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_usage_ledger_workflow_id", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_tenant_id_occurred_at", table_name="usage_ledger")
    op.drop_table("usage_ledger")

    op.drop_index("uq_endpoint_uptime_open_interval", table_name="endpoint_uptime")
    op.drop_index("ix_endpoint_uptime_started_at", table_name="endpoint_uptime")
    op.drop_table("endpoint_uptime")
    op.drop_table("service_states")
    op.drop_index("ix_thermal_states_model_id", table_name="thermal_states")
    op.drop_table("thermal_states")
    op.drop_index("ix_registry_sync_log_started_at", table_name="registry_sync_log")
    op.drop_table("registry_sync_log")
    op.drop_table("provider_health")

    op.drop_index(op.f("ix_models_provider_id"), table_name="models")
    op.drop_table("models")
    op.drop_table("providers")
    op.drop_table("mid_level_services")
    op.drop_index("ix_self_hosted_models_aliases", table_name="self_hosted_models")
    op.drop_index(op.f("ix_self_hosted_models_instance_type"), table_name="self_hosted_models")
    op.drop_table("self_hosted_models")
    op.drop_table("instance_types")
    op.drop_table("tenants")


def _revoke_app_role_grants() -> None:
    """Reverse of the grants; the role itself stays (cluster-wide, see the module docstring)."""
    role, _ = _app_role()
    grants = [
        f'REVOKE USAGE ON SEQUENCE {", ".join(SEQUENCES)} FROM "{role}"',
        f'REVOKE SELECT ON unified_model_registry FROM "{role}"',
        f'REVOKE SELECT, INSERT ON {", ".join(APPEND_ONLY_TABLES)} FROM "{role}"',
        f'REVOKE SELECT, INSERT, UPDATE ON {", ".join(STATE_TABLES)} FROM "{role}"',
        f'REVOKE SELECT ON {", ".join(CATALOG_TABLES)} FROM "{role}"',
        f'REVOKE USAGE ON SCHEMA public FROM "{role}"',
    ]
    # Skipped if the configured role does not exist (e.g. configured differently since the
    # upgrade): dropping the tables below removes their privileges anyway.
    body = "\n".join(f"        EXECUTE {_sql_literal(stmt)};" for stmt in grants)
    op.execute(
        f"""
        DO $revoke$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(role)}) THEN
{body}
            END IF;
        END
        $revoke$
        """
    )
