"""What selection reads from PostgreSQL: the tenant, thermal mirrors and provider health.

The thermal workflow owns each model's state; `thermal_states` mirrors it and is what selection
ranks on (querying every entity workflow per request would not scale). The authoritative answer
comes later anyway: a self-hosted model is always acquired through its thermal workflow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.tenants import UnknownTenantError, _refuse_malformed
from models_catalog.selection import HealthView, ThermalView
from models_catalog.types import ThermalState


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    tier: int


async def find_tenant(engine: AsyncEngine, tenant: str) -> TenantRow | None:
    """A tenant by id (UUID text) or name; None without a query for a reference that is
    neither (a NUL byte would be a driver DataError, retried forever by the activity)."""
    try:
        _refuse_malformed(tenant)
    except UnknownTenantError:
        return None
    key = tenant.strip()
    try:
        as_id: str | None = str(uuid.UUID(key))
    except ValueError:
        as_id = None
    sql = "SELECT id::text AS id, name, tier FROM tenants WHERE name = :name"
    if as_id is not None:
        sql += " OR id = CAST(:id AS uuid)"
    async with engine.connect() as conn:
        row = (await conn.execute(text(sql), {"name": key, "id": as_id})).mappings().first()
    return TenantRow(id=row["id"], name=row["name"], tier=int(row["tier"])) if row else None


async def thermal_views(
    engine: AsyncEngine, app_id: str, environment: str
) -> dict[str, ThermalView]:
    """Per model: the *target* state (OFF means an admin turned it off, even while it drains),
    ready = instances running (an endpoint serves while it scales; the request still acquires
    the model through its thermal workflow, which has the last word)."""
    sql = text(
        "SELECT model_id, target_state, instance_count, last_error "
        "FROM thermal_states WHERE app_id = :app AND environment = :env"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sql, {"app": app_id, "env": environment})).mappings().all()
    out: dict[str, ThermalView] = {}
    for r in rows:
        ready = r["instance_count"] > 0
        out[r["model_id"]] = ThermalView(
            state=ThermalState(r["target_state"]),
            ready=ready,
            failed=r["last_error"] is not None and r["instance_count"] == 0,
            last_error=r["last_error"],
        )
    return out


async def health_views(engine: AsyncEngine) -> dict[str, HealthView]:
    sql = text("SELECT provider_id, status, avg_latency_ms FROM provider_health")
    async with engine.connect() as conn:
        rows = (await conn.execute(sql)).mappings().all()
    return {
        r["provider_id"]: HealthView(status=r["status"], avg_latency_ms=r["avg_latency_ms"])
        for r in rows
    }
