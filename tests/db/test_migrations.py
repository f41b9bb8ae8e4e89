"""Migrations on a real PostgreSQL: round trip, no autogenerate drift, the application role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from activities.db import migrate
from activities.db.engine import libpq_conninfo, normalize_url
from activities.db.schema import metadata
from tests.fixtures.postgres import TEST_APP_PASSWORD, TEST_APP_ROLE, MigratedDb

TABLES = {t.name for t in metadata.sorted_tables}
OUR_FUNCTIONS = {"radiant_touch_updated_at", "radiant_notify_notification"}


def _inventory(url: str) -> dict[str, set[str]]:
    """Tables, views and our functions in the public schema."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            functions = conn.execute(
                text(
                    "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public'"
                )
            ).scalars()
            return {
                "tables": set(insp.get_table_names()),
                "views": set(insp.get_view_names()),
                "functions": set(functions),
            }
    finally:
        engine.dispose()


def _inspected(url: str, read: Callable[[Any], list[Any]]) -> set[str]:
    """The names `read` (given an inspector) lists."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {item["name"] for item in read(inspect(conn))}
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    return _inspected(url, lambda insp: insp.get_columns(table))


def _indexes(url: str) -> set[str]:
    return _inspected(url, lambda insp: insp.get_indexes("notifications"))


def _upgrade(url: str) -> None:
    migrate.upgrade(url, "head", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)


def test_upgrade_downgrade_upgrade_round_trip(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    assert migrate.current(url) is None

    _upgrade(url)
    assert migrate.current(url) == migrate.head() == "0006"
    inv = _inventory(url)
    assert inv["tables"] == TABLES | {"alembic_version"}
    assert inv["views"] == {"unified_model_registry"}
    assert OUR_FUNCTIONS <= inv["functions"]

    migrate.downgrade(url, "base", app_role=TEST_APP_ROLE)
    assert migrate.current(url) is None
    inv = _inventory(url)
    assert inv["tables"] == {"alembic_version"}
    assert inv["views"] == set()
    assert not (OUR_FUNCTIONS & inv["functions"])
    with psycopg.connect(libpq_conninfo(url)) as conn:
        acl = conn.execute(
            "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
    assert acl is not None and TEST_APP_ROLE not in (acl[0] or "")

    _upgrade(url)  # and back: the downgrade left nothing in the way
    assert migrate.current(url) == "0006"
    migrate.check(url)


def test_upgrade_from_the_first_revision_keeps_its_data(fresh_database: Callable[[], str]) -> None:
    """A database migrated by an earlier release (head 0001, with a tenant) upgrades in place."""
    url = fresh_database()
    migrate.upgrade(url, "0001", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (name, tier) VALUES ('kept', 3)")
    _upgrade(url)
    assert migrate.current(url) == "0006"
    migrate.check(url)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        assert conn.execute("SELECT tier FROM tenants WHERE name = 'kept'").fetchone() == (3,)
    migrate.downgrade(url, "0001", app_role=TEST_APP_ROLE)
    assert "request_claims" not in _inventory(url)["tables"]


def test_upgrade_refuses_tenant_names_differing_only_in_case(
    fresh_database: Callable[[], str],
) -> None:
    """0003 makes names unique regardless of case; pairs made before it are named, not guessed
    at, and the database stays at 0002 until the owner renames one."""
    url = fresh_database()
    migrate.upgrade(url, "0002", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        for name in ("Acme", "acme", "globex", "Zeta", "ZETA"):
            conn.execute("INSERT INTO tenants (name, tier) VALUES (%s, 1)", (name,))
    with pytest.raises(CommandError) as err:
        _upgrade(url)
    assert str(err.value).startswith(
        "tenant names must be unique regardless of case, but 'Acme' and 'acme'; "
        "'ZETA' and 'Zeta' differ only in case: rename all but one"
    )
    assert migrate.current(url) == "0002"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("UPDATE tenants SET name = 'acme-2' WHERE name = 'acme'")
        conn.execute("UPDATE tenants SET name = 'zeta-2' WHERE name = 'ZETA'")
    _upgrade(url)
    assert migrate.current(url) == "0006"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_tenants_lower_name"):
            conn.execute("INSERT INTO tenants (name, tier) VALUES ('GLOBEX', 1)")
    migrate.downgrade(url, "0002", app_role=TEST_APP_ROLE)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (name, tier) VALUES ('GLOBEX', 1)")  # index gone


def test_0004_adds_the_cache_write_rates_and_the_downgrade_drops_them(
    fresh_database: Callable[[], str],
) -> None:
    """0004: models.cache_write_input_cost_per_1k and cache_write_1h_input_cost_per_1k (the
    prompt-cache write rates)."""
    rates = {"cache_write_input_cost_per_1k", "cache_write_1h_input_cost_per_1k"}
    url = fresh_database()
    migrate.upgrade(url, "0003", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)

    assert not rates & _columns(url, "models")
    _upgrade(url)
    assert {"cached_input_cost_per_1k", *rates} <= _columns(url, "models")
    migrate.downgrade(url, "0003", app_role=TEST_APP_ROLE)
    columns = _columns(url, "models")
    assert not rates & columns and "cached_input_cost_per_1k" in columns


def test_0005_adds_the_record_order_and_the_downgrade_drops_it(
    fresh_database: Callable[[], str],
) -> None:
    """0005: thermal_states.record_at and record_seq (the order of a workflow's records; rows
    of before keep NULL, which any record replaces) and the scoped watch's index."""
    order = {"record_at", "record_seq"}
    url = fresh_database()
    migrate.upgrade(url, "0004", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)
    index = "ix_notifications_app_environment_id"
    assert not order & _columns(url, "thermal_states") and index not in _indexes(url)
    _upgrade(url)
    assert order <= _columns(url, "thermal_states") and index in _indexes(url)
    migrate.downgrade(url, "0004", app_role=TEST_APP_ROLE)
    assert not order & _columns(url, "thermal_states") and index not in _indexes(url)


def test_0006_adds_the_service_status_and_the_downgrade_drops_it(
    fresh_database: Callable[[], str],
) -> None:
    """0006: mid_level_services.status (a service gone from the catalog is 'deprecated', not
    deleted); services stored before it, and the states referring to them, stay and are
    'active'."""
    url = fresh_database()
    migrate.upgrade(url, "0005", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)
    assert "status" not in _columns(url, "mid_level_services")
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO mid_level_services (service_id, display_name, min_tier, markup) "
            "VALUES ('kept', 'Kept', 2, 0.4)"
        )
        conn.execute(
            "INSERT INTO service_states (app_id, environment, service_id, state) "
            "VALUES ('app', 'dev', 'kept', 'RUNNING')"
        )
    _upgrade(url)
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT status, min_tier FROM mid_level_services WHERE service_id = 'kept'"
        ).fetchone()
        assert row == ("active", 2)
        with pytest.raises(psycopg.errors.CheckViolation, match="status_valid"):
            conn.execute("UPDATE mid_level_services SET status = 'gone'")
    migrate.downgrade(url, "0005", app_role=TEST_APP_ROLE)
    assert migrate.current(url) == "0005"
    assert "status" not in _columns(url, "mid_level_services")
    with psycopg.connect(libpq_conninfo(url)) as conn:
        kept = conn.execute(
            "SELECT s.min_tier, st.state FROM mid_level_services s "
            "JOIN service_states st USING (service_id)"
        ).fetchall()
    assert kept == [(2, "RUNNING")]


def test_no_autogenerate_drift(migrated_db: MigratedDb) -> None:
    """`alembic check`: the hand-written migration yields exactly `schema.metadata`."""
    migrate.check(migrated_db.owner_url)  # raises AutogenerateDiffsDetected on any difference


def test_upgrade_is_idempotent_at_head(migrated_db: MigratedDb) -> None:
    _upgrade(migrated_db.owner_url)
    assert migrate.current(migrated_db.owner_url) == "0006"


def test_app_role_is_plain_and_owns_nothing(migrated_db: MigratedDb) -> None:
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url)) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin "
            "FROM pg_roles WHERE rolname = %s",
            (TEST_APP_ROLE,),
        ).fetchone()
        assert row == (False, False, False, False, True)
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = %s",
            (TEST_APP_ROLE,),
        ).fetchone()
        assert owned == (0,)
        owned_functions = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
            "WHERE r.rolname = %s",
            (TEST_APP_ROLE,),
        ).fetchone()
        assert owned_functions == (0,)
        for table in ("usage_ledger", "request_claims"):
            rls = conn.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = %s",
                (table,),
            ).fetchone()
            assert rls == (True, True), table


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("tenants", {"SELECT"}),
        ("self_hosted_models", {"SELECT"}),
        ("models", {"SELECT"}),
        ("thermal_states", {"SELECT", "INSERT", "UPDATE"}),
        ("service_states", {"SELECT", "INSERT", "UPDATE"}),
        ("endpoint_uptime", {"SELECT", "INSERT", "UPDATE"}),
        ("usage_ledger", {"SELECT", "INSERT"}),
        ("notifications", {"SELECT", "INSERT"}),
        ("request_claims", {"SELECT", "INSERT", "UPDATE"}),
        ("unified_model_registry", {"SELECT"}),
    ],
)
def test_app_role_grants(migrated_db: MigratedDb, table: str, expected: set[str]) -> None:
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url)) as conn:
        held = {
            p
            for p in privileges
            if conn.execute(
                "SELECT has_table_privilege(%s, %s, %s)", (TEST_APP_ROLE, table, p)
            ).fetchone()
            == (True,)
        }
    assert held == expected


def test_upgrade_refuses_a_superuser_app_role(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    role = "radiant_su_test"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        try:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} SUPERUSER")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server's owner cannot create a superuser role")
    try:
        with pytest.raises(DBAPIError, match="bypass row-level security"):
            migrate.upgrade(url, "head", app_role=role)
        assert migrate.current(url) is None  # one transaction: nothing was left behind
    finally:
        with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
