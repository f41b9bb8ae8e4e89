"""`radiant catalog sync` on a real PostgreSQL: everything lands, a second run changes nothing."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from typer.testing import CliRunner

from activities.db.catalog_sync import stored_counts, sync_catalog
from activities.db.engine import create_sync_engine
from models_catalog.catalog import load_catalog
from workers.cli.main import app


def test_sync_is_complete_and_idempotent(migrated_db):
    catalog = load_catalog()
    sync_catalog(migrated_db.owner_url, catalog)
    again = sync_catalog(migrated_db.owner_url, catalog)
    assert again.total_written == 0, again
    counts = stored_counts(migrated_db.owner_url)
    assert counts["self_hosted_models"] == len(catalog.models) + len(catalog.registry_entries)
    assert counts["mid_level_services"] == 5 and counts["instance_types"] == 7
    assert counts["models"] == len(catalog.external_models)
    engine = create_sync_engine(migrated_db.owner_url)
    with engine.connect() as conn:
        deployable = conn.execute(
            text("SELECT count(*) FROM self_hosted_models WHERE deployable")
        ).scalar_one()
        rate = conn.execute(
            text("SELECT hourly_rate FROM self_hosted_models WHERE model_id = 'yolov8m'")
        ).scalar_one()
        write_rates = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                text(
                    "SELECT id, cache_write_input_cost_per_1k, cache_write_1h_input_cost_per_1k "
                    "FROM models "
                    "WHERE id IN ('anthropic-claude-sonnet-4-5', 'anthropic-claude-sonnet-4')"
                )
            ).all()
        }
    engine.dispose()
    assert deployable == 33
    assert rate == catalog.model("yolov8m").pricing.hourly_rate
    # the prompt-cache write rates (5-minute, 1-hour), where the catalog has them (0004)
    assert write_rates == {
        "anthropic-claude-sonnet-4-5": (Decimal("0.00375"), Decimal("0.006")),
        "anthropic-claude-sonnet-4": (None, None),
    }


def test_sync_cli_twice(migrated_db, monkeypatch, tmp_path):
    monkeypatch.setenv("RADIANT_DATABASE_URL", migrated_db.owner_url)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(tmp_path))
    from workers.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    first = runner.invoke(app, ["catalog", "sync", "--json"])
    second = runner.invoke(app, ["catalog", "sync", "--json"])
    get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0 and '"total_written": 0' in second.output, second.output
