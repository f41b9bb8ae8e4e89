"""Fixtures of the metering tests: catalog rows synced, tenants with unique names."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from activities.db.catalog_sync import sync_catalog
from activities.tenants import TenantRecord, create_tenant
from models_catalog.catalog import load_catalog
from tests.fixtures.postgres import MigratedDb


@pytest.fixture(scope="session")
def synced_db(migrated_db: MigratedDb) -> MigratedDb:
    """`migrated_db` with the catalog synced (foreign keys of endpoint_uptime)."""
    sync_catalog(migrated_db.owner_url, load_catalog())
    return migrated_db


@pytest.fixture
def make_tenant(synced_db: MigratedDb) -> Callable[..., TenantRecord]:
    """Factory: a new tenant with a unique name (tests share the session database)."""

    def make(prefix: str = "t", tier: int = 3) -> TenantRecord:
        return create_tenant(synced_db.owner_url, f"{prefix}-{uuid.uuid4().hex[:8]}", tier)

    return make
