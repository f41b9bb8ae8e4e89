"""`catalog sync` when the catalog changes between runs: renames, removals, failures."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from activities.db.catalog_sync import stored_counts, sync_catalog
from activities.db.engine import create_sync_engine
from models_catalog.catalog import Catalog, load_catalog


def _query(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params).all()]
    finally:
        engine.dispose()


def test_renamed_external_model_keeps_its_litellm_id(clean_db) -> None:
    # The catalog renames an external model's id but keeps its (unique) LiteLLM id: the old row
    # is deprecated and must not block the new one on models.litellm_id UNIQUE.
    catalog = load_catalog()
    sync_catalog(clean_db.owner_url, catalog)
    old = next(iter(catalog.external_models.values()))
    new = old.model_copy(update={"id": old.id + "-renamed"})
    externals = {k: v for k, v in catalog.external_models.items() if k != old.id}
    renamed = replace(catalog, external_models={**externals, new.id: new})

    report = sync_catalog(clean_db.owner_url, renamed)
    again = sync_catalog(clean_db.owner_url, renamed)

    rows = dict(
        (r[0], r[1:])
        for r in _query(
            clean_db.owner_url,
            "SELECT id, status, litellm_id FROM models WHERE id IN (:a, :b)",
            a=old.id,
            b=new.id,
        )
    )
    assert rows[new.id] == ("active", old.litellm_id)
    assert rows[old.id][0] == "deprecated" and rows[old.id][1] != old.litellm_id
    assert report.deprecated == {"models": 1}
    assert again.total_written == 0, again
    # and renaming it back restores the original row under its litellm id
    sync_catalog(clean_db.owner_url, catalog)
    back = _query(
        clean_db.owner_url, "SELECT status, litellm_id FROM models WHERE id = :a", a=old.id
    )
    assert back == [("active", old.litellm_id)]


def test_removed_provider_is_disabled_and_restored(clean_db) -> None:
    catalog = load_catalog()
    sync_catalog(clean_db.owner_url, catalog)
    gone = next(iter(catalog.providers))
    smaller = replace(
        catalog,
        providers={k: v for k, v in catalog.providers.items() if k != gone},
        external_models={k: v for k, v in catalog.external_models.items() if v.provider_id != gone},
    )
    report = sync_catalog(clean_db.owner_url, smaller)
    enabled = _query(clean_db.owner_url, "SELECT enabled FROM providers WHERE id = :p", p=gone)
    assert enabled == [(False,)]
    assert report.deprecated.get("providers") == 1, report
    assert sync_catalog(clean_db.owner_url, smaller).total_written == 0
    sync_catalog(clean_db.owner_url, catalog)
    enabled = _query(clean_db.owner_url, "SELECT enabled FROM providers WHERE id = :p", p=gone)
    assert enabled == [(True,)]


def test_removed_self_hosted_model_is_deprecated_not_deleted(clean_db) -> None:
    catalog = load_catalog()
    sync_catalog(clean_db.owner_url, catalog)
    gone = "yolov8m"
    smaller = replace(catalog, models={k: v for k, v in catalog.models.items() if k != gone})
    report = sync_catalog(clean_db.owner_url, smaller)
    assert report.deprecated == {"self_hosted_models": 1}
    status = _query(
        clean_db.owner_url, "SELECT status FROM self_hosted_models WHERE model_id = :m", m=gone
    )
    assert status == [("deprecated",)]
    assert sync_catalog(clean_db.owner_url, smaller).total_written == 0
    sync_catalog(clean_db.owner_url, catalog)
    status = _query(
        clean_db.owner_url, "SELECT status FROM self_hosted_models WHERE model_id = :m", m=gone
    )
    assert status == [("active",)]


def test_failure_mid_sync_writes_nothing(clean_db) -> None:
    # instance_types is written first; a model on an instance type missing from the table then
    # violates the foreign key: the whole sync rolls back.
    catalog = load_catalog()
    broken_model = catalog.models["yolov8m"].model_copy(update={"instance_type": "ml.zz.nowhere"})
    broken: Catalog = replace(catalog, models={**catalog.models, "yolov8m": broken_model})
    with pytest.raises(IntegrityError):
        sync_catalog(clean_db.owner_url, broken)
    assert set(stored_counts(clean_db.owner_url).values()) == {0}


def test_summary_reports_deprecations() -> None:
    from activities.db.catalog_sync import SyncReport

    report = SyncReport(
        written={"self_hosted_models": 0, "providers": 0},
        unchanged={"self_hosted_models": 88, "providers": 27},
        deprecated={"self_hosted_models": 1, "providers": 1},
    )
    text = report.summary()
    assert "self_hosted_models: 0 written, 88 unchanged, 1 deprecated" in text
    assert "providers: 0 written, 27 unchanged, 1 disabled" in text
