"""Synthetic rows for the database tests (made-up ids and prices: no catalog facts here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.db.engine import create_app_engine
from activities.db.schema import instance_types, self_hosted_models, tenants
from tests.fixtures.postgres import MigratedDb

TEST_INSTANCE = "test.gpu.small"
TEST_MODEL = "test-model"


@pytest_asyncio.fixture
async def two_tenants(
    clean_db: MigratedDb, owner_engine: AsyncEngine
) -> tuple[uuid.UUID, uuid.UUID]:
    """Tenants A and B (created by the owner: the application role only reads tenants)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            insert(tenants),
            [{"id": a, "name": "tenant-a", "tier": 3}, {"id": b, "name": "tenant-b", "tier": 5}],
        )
    return a, b


@pytest_asyncio.fixture
async def test_model(clean_db: MigratedDb, owner_engine: AsyncEngine) -> str:
    """One deployable self-hosted model on one instance type."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            insert(instance_types).values(
                name=TEST_INSTANCE,
                vram_gb=16,
                base_hourly=Decimal("1.00"),
                billed_hourly=Decimal("1.75"),
            )
        )
        await conn.execute(
            insert(self_hosted_models).values(
                model_id=TEST_MODEL,
                display_name="Test Model",
                category="test",
                specialty="testing",
                instance_type=TEST_INSTANCE,
                image="example.invalid/test:1",
                min_tier=3,
                gpu_memory_gb=4,
                hourly_rate=Decimal("1.75"),
                per_image=Decimal("0.001"),
                markup=Decimal("0.75"),
                default_state="COLD",
                scale_to_zero_after_minutes=15,
                warmup_time_seconds=30,
                min_instances=0,
                max_instances=3,
                deployable=True,
                aliases=["test-model-alias"],
            )
        )
    return TEST_MODEL


# These tests empty tables: they run on the scratch database, not on the shared `migrated_db`.
@pytest_asyncio.fixture(scope="session")
async def owner_engine(scratch_db: MigratedDb) -> AsyncIterator[AsyncEngine]:
    engine = create_app_engine(scratch_db.owner_url)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def app_engine(scratch_db: MigratedDb) -> AsyncIterator[AsyncEngine]:
    engine = create_app_engine(scratch_db.app_url)
    yield engine
    await engine.dispose()
