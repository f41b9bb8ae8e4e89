"""The usage ledger as the application role: tenant isolation, idempotency, append-only."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from activities.db.engine import create_app_engine
from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction
from tests.fixtures.postgres import MigratedDb

INSUFFICIENT_PRIVILEGE = "42501"  # also raised for RLS WITH CHECK violations


def _row(tenant_id: uuid.UUID, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "idempotency_key": key,
        "kind": "service_charge",
        "app_id": "app",
        "environment": "dev",
        "service_id": "svc",
        "operation_id": "op",
        "model_id": "test-model",
        "workflow_id": "job/svc/op/r1",
        "units": Decimal("2"),
        "unit": "image",
        "unit_price": Decimal("0.02"),
        "billed_amount": Decimal("0.04"),
        "internal_cost": Decimal("0.008"),
        **extra,
    }


async def _record(conn: AsyncConnection, row: dict[str, Any]) -> int | None:
    """Idempotent insert as metering does it: returns the new id, or None if already recorded."""
    stmt = (
        pg_insert(usage_ledger)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        .returning(usage_ledger.c.id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def _count(conn: AsyncConnection) -> int:
    return (await conn.execute(select(func.count()).select_from(usage_ledger))).scalar_one()


async def test_tenant_sees_only_its_own_rows(
    app_engine: AsyncEngine, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_tenants
    async with tenant_transaction(app_engine, a) as conn:
        assert await _record(conn, _row(a, "wf-1#charge")) is not None
        assert await _record(conn, _row(a, "wf-2#charge")) is not None
    async with tenant_transaction(app_engine, b) as conn:
        assert await _record(conn, _row(b, "wf-3#charge")) is not None

    async with tenant_transaction(app_engine, a) as conn:
        tenants_seen = (await conn.execute(select(usage_ledger.c.tenant_id))).scalars().all()
        assert tenants_seen == [a, a]
        # Even asking for B's rows explicitly returns nothing.
        rows_b = await conn.execute(select(usage_ledger).where(usage_ledger.c.tenant_id == b))
        assert rows_b.all() == []
    async with tenant_transaction(app_engine, b) as conn:
        assert await _count(conn) == 1
        amount = (await conn.execute(select(usage_ledger.c.billed_amount))).scalar_one()
        assert amount == Decimal("0.04") and isinstance(amount, Decimal)


async def test_tenant_cannot_insert_rows_for_another_tenant(
    app_engine: AsyncEngine, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security") as info:
        async with tenant_transaction(app_engine, a) as conn:
            await conn.execute(insert(usage_ledger).values(**_row(b, "forged")))
    assert getattr(info.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE
    async with tenant_transaction(app_engine, b) as conn:
        assert await _count(conn) == 0


async def test_no_tenant_set_means_no_rows(
    clean_db: MigratedDb, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = two_tenants
    # One pooled connection: the tenant setting must not outlive its transaction.
    engine = create_app_engine(clean_db.app_url, pool_size=1, max_overflow=0)
    try:
        async with tenant_transaction(engine, a) as conn:
            await _record(conn, _row(a, "wf-1#charge"))
            assert await _count(conn) == 1
        async with engine.connect() as conn:  # same physical connection, no tenant
            assert await _count(conn) == 0
        async with engine.begin() as conn:
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(insert(usage_ledger).values(**_row(a, "no-tenant")))
    finally:
        await engine.dispose()


async def test_duplicate_idempotency_key_is_a_no_op_per_tenant(
    app_engine: AsyncEngine, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_tenants
    key = "job/perception/detect/req-1#bill"
    async with tenant_transaction(app_engine, a) as conn:
        first = await _record(conn, _row(a, key))
    async with tenant_transaction(app_engine, a) as conn:  # an activity retry
        again = await _record(conn, _row(a, key, billed_amount=Decimal("99")))
        assert await _count(conn) == 1
        kept = (await conn.execute(select(usage_ledger.c.billed_amount))).scalar_one()
    assert first is not None and again is None
    assert kept == Decimal("0.04")  # the retry changed nothing
    async with tenant_transaction(app_engine, b) as conn:  # same key, other tenant: a new row
        assert await _record(conn, _row(b, key)) is not None
        assert await _count(conn) == 1


async def test_ledger_is_append_only_for_the_app_role(
    app_engine: AsyncEngine, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = two_tenants
    async with tenant_transaction(app_engine, a) as conn:
        await _record(conn, _row(a, "wf-1#charge"))
    for stmt in (
        update(usage_ledger).values(billed_amount=Decimal("0")),
        delete(usage_ledger),
    ):
        with pytest.raises(DBAPIError, match="permission denied") as info:
            async with tenant_transaction(app_engine, a) as conn:
                await conn.execute(stmt)
        assert getattr(info.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


async def test_malformed_tenant_id_is_rejected_before_the_database(app_engine: AsyncEngine) -> None:
    with pytest.raises(ValueError):
        async with tenant_transaction(app_engine, "not-a-uuid"):
            pass
