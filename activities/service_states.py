"""Service states (DESIGN 5) persisted in `service_states`, notified on change.

The state is derived (models_catalog.service_state) from the recorded thermal states and the
admin flag; this module reads those, writes the result, and puts a notification in the outbox
when a service's state changes. The job planner, the reconcile schedule and
`radiant services status|enable|disable` all go through here.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from models_catalog.catalog import Catalog
from models_catalog.service_state import ModelThermalRow, service_status
from models_catalog.types import ServiceState, ThermalState


class ServiceStateRow(BaseModel):
    service_id: str
    state: ServiceState
    admin_disabled: bool
    reason: str
    unavailable_models: list[str] = Field(default_factory=list)
    changed: bool = False


class ScopeInput(BaseModel):
    app_id: str
    environment: str


async def load_thermal(conn: AsyncConnection, app_id: str, env: str) -> dict[str, ModelThermalRow]:
    """The recorded thermal rows, with the database's clock at the read (`read_at`): a failure
    keeps a model unavailable only for a cool-down after its row was recorded (`updated_at`),
    measured on one clock (models_catalog.service_state.FAILED_COOLDOWN)."""
    rows = await conn.execute(
        text(
            "SELECT model_id, target_state, instance_count, last_error, current_state, "
            "transitioning, updated_at, now() FROM thermal_states "
            "WHERE app_id = :a AND environment = :e"
        ),
        {"a": app_id, "e": env},
    )
    return {
        r[0]: ModelThermalRow(
            ThermalState(r[1]), r[2], r[3], ThermalState(r[4]), r[5], updated_at=r[6], read_at=r[7]
        )
        for r in rows
    }


async def load_admin_flags(conn: AsyncConnection, app_id: str, env: str) -> dict[str, bool]:
    rows = await conn.execute(
        text(
            "SELECT service_id, admin_disabled FROM service_states "
            "WHERE app_id = :a AND environment = :e"
        ),
        {"a": app_id, "e": env},
    )
    return {r[0]: bool(r[1]) for r in rows}


def admin_disabled(catalog: Catalog, flags: dict[str, bool], service_id: str) -> bool:
    """Never set by an admin: the catalog's default state decides (the seeds ship services
    DISABLED until an admin enables them)."""
    if service_id in flags:
        return flags[service_id]
    return catalog.service(service_id).default_state == ServiceState.DISABLED


async def lock_scope(conn: AsyncConnection, app_id: str, env: str) -> None:
    """Serialize every refresh and admin change of one (app, env) until the transaction ends:
    otherwise a refresh could write back an admin flag it read before a concurrent
    `services disable` committed, and two refreshes could both notify the same change."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"service_states/{app_id}/{env}"},
    )


async def load_scope(
    conn: AsyncConnection, app_id: str, env: str
) -> tuple[dict[str, ModelThermalRow], dict[str, bool], dict[str, str]]:
    """(thermal rows, admin flags, stored states) of one (app, env); call under `lock_scope`."""
    thermal = await load_thermal(conn, app_id, env)
    flags = await load_admin_flags(conn, app_id, env)
    rows = await conn.execute(
        text("SELECT service_id, state FROM service_states WHERE app_id = :a AND environment = :e"),
        {"a": app_id, "e": env},
    )
    return thermal, flags, {r[0]: r[1] for r in rows}


# admin_disabled is written on insert (the catalog default) and only by the call that sets it.
_UPSERT = text(
    """
    INSERT INTO service_states (app_id, environment, service_id, state,
        admin_disabled, reason, unavailable_models)
    VALUES (:a, :e, :s, :st, :d, :r, :u)
    ON CONFLICT (app_id, environment, service_id) DO UPDATE SET
        state = EXCLUDED.state,
        admin_disabled = CASE WHEN CAST(:setting AS boolean) THEN EXCLUDED.admin_disabled
                              ELSE service_states.admin_disabled END,
        reason = EXCLUDED.reason, unavailable_models = EXCLUDED.unavailable_models
    """
)


async def refresh_service_states(
    engine: AsyncEngine,
    catalog: Catalog,
    app_id: str,
    env: str,
    *,
    set_disabled: dict[str, bool] | None = None,
) -> list[ServiceStateRow]:
    """Recompute every service's state, persist it, notify changes (one transaction)."""
    out: list[ServiceStateRow] = []
    setting = set_disabled or {}
    async with engine.begin() as conn:
        await lock_scope(conn, app_id, env)
        thermal, flags, previous = await load_scope(conn, app_id, env)
        flags.update(setting)
        for service in catalog.services.values():
            disabled = admin_disabled(catalog, flags, service.id)
            status = service_status(catalog, service, thermal, disabled)
            changed = previous.get(service.id) != status.state.value
            out.append(
                ServiceStateRow(
                    service_id=service.id,
                    state=status.state,
                    admin_disabled=disabled,
                    reason=status.reason,
                    unavailable_models=status.unavailable_models,
                    changed=changed,
                )
            )
            await conn.execute(
                _UPSERT,
                {
                    "a": app_id,
                    "e": env,
                    "s": service.id,
                    "st": status.state.value,
                    "d": disabled,
                    "setting": service.id in setting,
                    "r": status.reason,
                    "u": status.unavailable_models,
                },
            )
            if changed:
                await conn.execute(
                    text(
                        "INSERT INTO notifications "
                        "(kind, app_id, environment, service_id, payload) "
                        "VALUES ('service.state_changed', :a, :e, :s, CAST(:p AS jsonb))"
                    ),
                    {
                        "a": app_id,
                        "e": env,
                        "s": service.id,
                        "p": json.dumps(
                            {
                                # the pair too: `radiant watch` prints the payload alone
                                "app_id": app_id,
                                "environment": env,
                                "service_id": service.id,
                                "from": previous.get(service.id),
                                "to": status.state.value,
                                "reason": status.reason,
                            }
                        ),
                    },
                )
    return out


class ServiceStateActivities:
    def __init__(self, engine: AsyncEngine, catalog: Catalog) -> None:
        self.engine = engine
        self.catalog = catalog

    @activity.defn(name="services.refresh")
    async def refresh(self, scope: ScopeInput) -> list[ServiceStateRow]:
        """Idempotent: a retry recomputes the same states and notifies nothing twice (the
        second run sees no change)."""
        return await refresh_service_states(
            self.engine, self.catalog, scope.app_id, scope.environment
        )
