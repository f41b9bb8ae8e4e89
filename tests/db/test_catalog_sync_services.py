"""`catalog sync` and mid-level services the catalog drops: marked, never deleted, restored."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text

from activities.db.catalog_sync import sync_catalog
from activities.db.engine import create_sync_engine
from models_catalog.catalog import load_catalog
from tests.fixtures.postgres import MigratedDb


def _one(url: str, sql: str, **params: object) -> tuple[object, ...] | None:
    engine = create_sync_engine(url)
    try:
        with engine.begin() as conn:
            row = conn.execute(text(sql), params).first()
            return tuple(row) if row is not None else None
    finally:
        engine.dispose()


def test_removed_service_is_deprecated_kept_and_restored(clean_db: MigratedDb) -> None:
    url = clean_db.owner_url
    catalog = load_catalog()
    sync_catalog(url, catalog)
    gone = next(iter(catalog.services))
    # A recorded state refers to the service (FK): the row must stay.
    _one(
        url,
        "INSERT INTO service_states (app_id, environment, service_id, state) "
        "VALUES ('app', 'dev', :s, 'RUNNING') RETURNING service_id",
        s=gone,
    )
    smaller = replace(catalog, services={k: v for k, v in catalog.services.items() if k != gone})

    report = sync_catalog(url, smaller)
    status = "SELECT status FROM mid_level_services WHERE service_id = :s"
    assert _one(url, status, s=gone) == ("deprecated",)
    assert report.deprecated == {"mid_level_services": 1}, report
    assert "1 deprecated (no longer in the catalog)" in report.summary()
    others = "SELECT count(*) FROM mid_level_services WHERE status <> 'active' AND service_id <> :s"
    assert _one(url, others, s=gone) == (0,)
    assert sync_catalog(url, smaller).total_written == 0  # marked once

    back = sync_catalog(url, catalog)
    assert _one(url, status, s=gone) == ("active",)
    assert back.written["mid_level_services"] == 1 and not back.deprecated
    assert sync_catalog(url, catalog).total_written == 0
