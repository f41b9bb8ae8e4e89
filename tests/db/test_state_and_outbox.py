"""State mirrors, the notifications outbox (+ NOTIFY) and the registry view, as the app role."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.db.engine import libpq_conninfo
from activities.db.registry import set_registry_scope
from activities.db.schema import (
    NOTIFY_CHANNEL,
    endpoint_uptime,
    models,
    notifications,
    provider_health,
    providers,
    thermal_states,
)
from tests.fixtures.postgres import MigratedDb

UNIQUE_VIOLATION = "23505"


async def test_insert_notifies_listeners(clean_db: MigratedDb, app_engine: AsyncEngine) -> None:
    listener = await psycopg.AsyncConnection.connect(
        libpq_conninfo(clean_db.app_url), autocommit=True
    )
    try:
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        async with app_engine.begin() as conn:
            await conn.execute(
                insert(notifications).values(
                    kind="thermal.ready",
                    app_id="app",
                    environment="dev",
                    model_id="test-model",
                    payload={"state": "WARM", "instance_count": 1},
                )
            )
        received = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    finally:
        await listener.close()
    assert len(received) == 1 and received[0].channel == NOTIFY_CHANNEL
    message = json.loads(received[0].payload)
    assert message["kind"] == "thermal.ready"
    assert message["model_id"] == "test-model"
    assert message["payload"] == {"state": "WARM", "instance_count": 1}
    assert message["id"] >= 1
    async with app_engine.connect() as conn:  # the outbox keeps it for late followers
        kept = (await conn.execute(select(notifications.c.kind))).scalars().all()
    assert kept == ["thermal.ready"]


async def test_oversized_payload_is_left_out_of_the_notify_message(
    clean_db: MigratedDb, app_engine: AsyncEngine
) -> None:
    listener = await psycopg.AsyncConnection.connect(
        libpq_conninfo(clean_db.app_url), autocommit=True
    )
    try:
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        async with app_engine.begin() as conn:
            await conn.execute(
                insert(notifications).values(kind="big", payload={"blob": "x" * 10_000})
            )
        received = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    finally:
        await listener.close()
    message = json.loads(received[0].payload)
    assert message["payload_truncated"] is True and "payload" not in message


async def test_dedupe_key_makes_notifications_idempotent(
    clean_db: MigratedDb, app_engine: AsyncEngine
) -> None:
    stmt = (
        pg_insert(notifications)
        .values(dedupe_key="thermal/app/dev/m#3", kind="thermal.ready")
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    for _ in range(2):
        async with app_engine.begin() as conn:
            await conn.execute(stmt)
    async with app_engine.connect() as conn:
        assert len((await conn.execute(select(notifications))).all()) == 1


def _interval(model_id: str, started_at: datetime, count: int = 1) -> dict[str, object]:
    return {
        "app_id": "app",
        "environment": "dev",
        "model_id": model_id,
        "endpoint_name": "radiant-app-dev-test-model",
        "instance_count": count,
        "instance_type": "test.gpu.small",
        "billed_hourly": Decimal("1.75"),
        "started_at": started_at,
    }


async def test_one_open_uptime_interval_per_model(app_engine: AsyncEngine, test_model: str) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    async with app_engine.begin() as conn:
        first = (
            await conn.execute(
                insert(endpoint_uptime)
                .values(**_interval(test_model, t0))
                .returning(endpoint_uptime.c.id)
            )
        ).scalar_one()
    with pytest.raises(IntegrityError) as info:
        async with app_engine.begin() as conn:
            await conn.execute(insert(endpoint_uptime).values(**_interval(test_model, t0, count=2)))
    assert getattr(info.value.orig, "sqlstate", None) == UNIQUE_VIOLATION

    # Scaling: close the open interval and open the next one, in one transaction.
    t1 = t0 + timedelta(minutes=30)
    async with app_engine.begin() as conn:
        await conn.execute(
            update(endpoint_uptime).where(endpoint_uptime.c.id == first).values(ended_at=t1)
        )
        await conn.execute(insert(endpoint_uptime).values(**_interval(test_model, t1, count=2)))
        # Another environment has its own open interval.
        await conn.execute(
            insert(endpoint_uptime).values(**{**_interval(test_model, t1), "environment": "prod"})
        )
    async with app_engine.connect() as conn:
        rows = (
            await conn.execute(
                select(endpoint_uptime.c.environment, endpoint_uptime.c.ended_at).order_by(
                    endpoint_uptime.c.id
                )
            )
        ).all()
    assert [(env, ended is None) for env, ended in rows] == [
        ("dev", False),
        ("dev", True),
        ("prod", True),
    ]


async def test_thermal_state_upsert_and_updated_at(
    app_engine: AsyncEngine, test_model: str
) -> None:
    key = {"app_id": "app", "environment": "dev", "model_id": test_model}
    async with app_engine.begin() as conn:
        await conn.execute(insert(thermal_states).values(**key, target_state="WARM"))
    async with app_engine.connect() as conn:
        before = (await conn.execute(select(thermal_states.c.updated_at))).scalar_one()
    await asyncio.sleep(0.01)
    async with app_engine.begin() as conn:
        stmt = pg_insert(thermal_states).values(**key, current_state="WARM", target_state="WARM")
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["app_id", "environment", "model_id"],
                set_={"current_state": stmt.excluded.current_state, "instance_count": 1},
            )
        )
    async with app_engine.connect() as conn:
        row = (await conn.execute(select(thermal_states))).one()
    assert (row.current_state, row.target_state, row.instance_count) == ("WARM", "WARM", 1)
    assert row.updated_at > before  # the trigger, not the writer, keeps it current
    with pytest.raises(IntegrityError):  # states are checked
        async with app_engine.begin() as conn:
            await conn.execute(update(thermal_states).values(target_state="TEPID"))


async def test_unified_registry_view(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, test_model: str
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            insert(providers).values(id="test-provider", display_name="Test", category="text")
        )
        await conn.execute(
            insert(models).values(
                id="test-provider-chat",
                provider_id="test-provider",
                model_id="chat-1",
                litellm_id="test-provider/chat-1",
                display_name="Chat 1",
                category="text_generation",
                pricing_type="per_token",
                input_cost_per_1k=Decimal("0.001"),
                output_cost_per_1k=Decimal("0.002"),
                markup=Decimal("0.40"),
            )
        )
        await conn.execute(
            insert(provider_health).values(provider_id="test-provider", status="healthy")
        )
    async with app_engine.begin() as conn:
        await conn.execute(
            insert(thermal_states).values(
                app_id="app", environment="dev", model_id=test_model, current_state="WARM",
                target_state="WARM", instance_count=1,
            )
        )  # fmt: skip

    query = "SELECT * FROM unified_model_registry ORDER BY id"
    async with app_engine.begin() as conn:  # the application role can read it
        unscoped = {r.id: r for r in (await conn.execute(text(query))).all()}
        await set_registry_scope(conn, "app", "dev")
        scoped = {r.id: r for r in (await conn.execute(text(query))).all()}
        await set_registry_scope(conn, "app", "prod")
        other_env = {r.id: r for r in (await conn.execute(text(query))).all()}

    assert set(unscoped) == {"test-provider-chat", test_model}
    ext = unscoped["test-provider-chat"]
    assert ext.hosting_type == "external" and ext.health_status == "healthy"
    assert ext.billed_input_per_1k == Decimal("0.0014")  # cost x (1 + 0.40)
    assert ext.billed_output_per_1k == Decimal("0.0028")
    sh = unscoped[test_model]
    assert (sh.hosting_type, sh.provider_id, sh.billed_hourly) == (
        "self_hosted",
        "self_hosted",
        Decimal("1.75"),
    )
    assert sh.aliases == ["test-model-alias"] and sh.default_thermal_state == "COLD"
    assert sh.thermal_state is None  # no (app, env) chosen
    assert (scoped[test_model].app_id, scoped[test_model].thermal_state) == ("app", "WARM")
    assert scoped[test_model].instance_count == 1
    assert other_env[test_model].thermal_state is None  # never deployed in prod
    async with owner_engine.begin() as conn:  # the session database is shared: leave no trace
        await conn.execute(text("DELETE FROM provider_health WHERE provider_id = 'test-provider'"))
        await conn.execute(text("DELETE FROM models WHERE provider_id = 'test-provider'"))
        await conn.execute(text("DELETE FROM providers WHERE id = 'test-provider'"))
