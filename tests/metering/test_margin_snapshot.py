"""`radiant usage margin` shows one instant: the tenant list and the ledger rows are read in
the same snapshot, so a write committed between the two reads is wholly in or wholly out. And a
service the catalog dropped keeps its usage in the report, marked deprecated."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.pool import NullPool

from activities.db.catalog_sync import sync_catalog
from activities.db.engine import create_sync_engine
from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction_sync
from activities.tenants import TenantRecord, create_tenant
from models_catalog.catalog import load_catalog
from tests.fixtures.postgres import MigratedDb
from workers.cli.usage import MarginReport, build_margin_report


def _charge(owner_url: str, tenant: TenantRecord, service: str) -> None:
    """One service charge of 0.02 (one image) for `tenant`, committed at once."""
    engine = create_sync_engine(owner_url, poolclass=NullPool)
    try:
        with tenant_transaction_sync(engine, tenant.id) as conn:
            conn.execute(
                insert(usage_ledger).values(
                    tenant_id=tenant.id, idempotency_key=f"snap/{uuid.uuid4().hex}",
                    kind="service_charge", service_id=service, operation_id="detect",
                    units=Decimal(1), unit="image", unit_price=Decimal("0.02"),
                    billed_amount=Decimal("0.02"),
                )
            )  # fmt: skip
    finally:
        engine.dispose()


def _seen(report: MarginReport, a: TenantRecord, c_name: str, service: str) -> tuple[Any, ...]:
    """(A's rows, whether C is listed, the service's calls) as the report shows them."""
    rows = {t.name: t.rows for t in report.tenants}
    calls = sum(s.calls for s in report.services if s.service_id == service)
    return rows.get(a.name), c_name in rows, calls


def test_margin_report_reads_tenants_and_rows_in_one_snapshot(
    synced_db: MigratedDb, make_tenant: Callable[..., TenantRecord]
) -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    a = make_tenant("snap-a")
    _charge(synced_db.owner_url, a, service)
    c_name: list[str] = []

    def write_after_tenant_list(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Right after the report has read the tenant list: a new tenant C with a charge, and a
        # second charge for A, committed by another connection.
        if c_name or "FROM tenants" not in statement:
            return
        c = make_tenant("snap-c")
        c_name.append(c.name)
        _charge(synced_db.owner_url, c, service)
        _charge(synced_db.owner_url, a, service)

    engine = create_sync_engine(synced_db.owner_url, poolclass=NullPool)
    event.listen(engine, "after_cursor_execute", write_after_tenant_list)
    try:
        report = build_margin_report(engine, since=None)
    finally:
        engine.dispose()

    assert c_name, "the interposed write did not run"
    before, after = (1, False, 1), (2, True, 3)
    # Tenants read before the write and rows after it would show (2, False, 2): A's new charge
    # without C's, and totals no single moment of the database had.
    assert _seen(report, a, c_name[0], service) in (before, after)


def test_margin_report_keeps_a_removed_service_and_marks_it(clean_db: MigratedDb) -> None:
    url = clean_db.owner_url
    catalog = load_catalog()
    sync_catalog(url, catalog)
    gone, kept = list(catalog.services)[:2]
    tenant = create_tenant(url, "removed-svc", 3)
    _charge(url, tenant, gone)
    _charge(url, tenant, kept)
    smaller = {k: v for k, v in catalog.services.items() if k != gone}
    sync_catalog(url, replace(catalog, services=smaller))  # the catalog drops `gone`

    engine = create_sync_engine(url, poolclass=NullPool)
    try:
        report = build_margin_report(engine, since=None)
    finally:
        engine.dispose()
    seen = {s.service_id: (s.catalog_status, s.calls, s.billed) for s in report.services}
    assert seen == {
        gone: ("deprecated", 1, Decimal("0.02")),
        kept: ("active", 1, Decimal("0.02")),
    }
