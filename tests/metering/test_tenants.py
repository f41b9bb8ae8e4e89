"""Tenants: create (owner only), list, look up by name or id, and the `tenants.get` activity."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.db.engine import libpq_conninfo
from activities.db.errors import DatabaseUnavailableError
from activities.tenants import (
    DuplicateTenantError,
    InvalidTenantError,
    TenantActivities,
    TenantPermissionError,
    UnknownTenantError,
    create_tenant,
    get_tenant,
    get_tenant_async,
    list_tenants,
)
from tests.fixtures.postgres import MigratedDb


def _name(prefix: str = "acme") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_create_list_get(synced_db: MigratedDb) -> None:
    name = _name()
    created = create_tenant(synced_db.owner_url, f"  {name} ", 4)
    assert (created.name, created.tier) == (name, 4) and created.created_at is not None
    assert created in list_tenants(synced_db.owner_url)
    # Lookups work with the application role (SELECT on tenants), by name or by id.
    assert get_tenant(synced_db.app_url, name) == created
    assert get_tenant(synced_db.app_url, str(created.id)) == created
    assert get_tenant(synced_db.app_url, str(created.id).upper()) == created


def test_duplicate_name(synced_db: MigratedDb) -> None:
    name = _name()
    create_tenant(synced_db.owner_url, name, 1)
    with pytest.raises(DuplicateTenantError, match=f"a tenant named '{name}' already exists"):
        create_tenant(synced_db.owner_url, name, 2)


def test_a_name_differing_only_in_case_is_a_duplicate(synced_db: MigratedDb) -> None:
    name = _name()
    create_tenant(synced_db.owner_url, name, 1)
    with pytest.raises(DuplicateTenantError) as err:
        create_tenant(synced_db.owner_url, name.upper(), 2)
    assert str(err.value) == (
        f"a tenant named '{name}' already exists; names are unique regardless of case"
    )
    assert [t.name for t in list_tenants(synced_db.owner_url) if t.name.lower() == name] == [name]
    with pytest.raises(UnknownTenantError, match=f"did you mean '{name}'"):  # lookups are exact
        get_tenant(synced_db.owner_url, name.upper())


def test_the_database_refuses_a_name_in_another_case_created_meanwhile(
    synced_db: MigratedDb,
) -> None:
    """The check before the insert cannot see a creator that has not committed yet; the unique
    index on lower(name) (migration 0003) holds the second insert until the first commits, then
    refuses it, and the error still names the tenant in the way."""
    name = _name()
    with psycopg.connect(libpq_conninfo(synced_db.owner_url)) as first:
        first.execute("INSERT INTO tenants (name, tier) VALUES (%s, 1)", (name,))  # not committed
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(create_tenant, synced_db.owner_url, name.upper(), 2)
            time.sleep(0.5)
            assert not second.done()  # waiting on the index
            first.commit()
            with pytest.raises(DuplicateTenantError) as err:
                second.result(timeout=30)
    assert str(err.value) == (
        f"a tenant named '{name}' already exists; names are unique regardless of case"
    )
    assert [t.name for t in list_tenants(synced_db.owner_url) if t.name.lower() == name] == [name]


async def test_the_workers_lookup_suggests_too(synced_db: MigratedDb) -> None:
    """A job for "ACME" fails naming "acme", as the CLI does (the plan's async lookup)."""
    from activities.db.engine import create_app_engine

    name = _name()
    create_tenant(synced_db.owner_url, name, 1)
    engine = create_app_engine(synced_db.app_url)
    try:
        with pytest.raises(UnknownTenantError, match=f"did you mean '{name}'"):
            await get_tenant_async(engine, name.upper())
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("name", "tier", "message"),
    [
        ("ok-name", 0, "tier must be an integer from 1 to 5"),
        ("ok-name", 6, "tier must be"),
        ("ok-name", True, "tier must be"),
        ("", 1, "invalid tenant name"),
        ("has space", 1, "invalid tenant name"),
        ("-dash", 1, "invalid tenant name"),
        ("x" * 64, 1, "invalid tenant name"),
        (str(uuid.uuid4()), 1, "looks like an id"),
    ],
)
def test_invalid_input(synced_db: MigratedDb, name: str, tier: int, message: str) -> None:
    with pytest.raises(InvalidTenantError, match=message):
        create_tenant(synced_db.owner_url, name, tier)


def test_unknown_tenant_suggests_close_names(synced_db: MigratedDb) -> None:
    name = _name("globex")
    create_tenant(synced_db.owner_url, name, 2)
    with pytest.raises(UnknownTenantError, match=f"did you mean '{name}'") as err:
        get_tenant(synced_db.app_url, name[:-1])
    assert err.value.ref == name[:-1]
    with pytest.raises(UnknownTenantError):
        get_tenant(synced_db.app_url, str(uuid.uuid4()))


def test_application_role_cannot_create_tenants(synced_db: MigratedDb) -> None:
    with pytest.raises(TenantPermissionError, match="needs the database owner"):
        create_tenant(synced_db.app_url, _name(), 1)


def test_unreachable_database() -> None:
    with pytest.raises(DatabaseUnavailableError, match="PostgreSQL unavailable at 127.0.0.1:1"):
        list_tenants("postgresql+psycopg://u:secret@127.0.0.1:1/x")


async def test_get_activity(synced_db: MigratedDb, app_engine: AsyncEngine) -> None:
    created = create_tenant(synced_db.owner_url, _name(), 3)
    acts = TenantActivities(app_engine)
    env = ActivityEnvironment()
    assert await env.run(acts.get, created.name) == created
    assert await env.run(acts.get, str(created.id)) == created
    with pytest.raises(ApplicationError) as err:
        await env.run(acts.get, "no-such-tenant")
    assert err.value.type == "UnknownTenant" and err.value.non_retryable
    assert "unknown tenant 'no-such-tenant'" in err.value.message
