"""`radiant tenants ...` and `radiant usage ...` through typer's CliRunner on the real database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.db.engine import create_sync_engine
from activities.db.schema import endpoint_uptime
from activities.metering import MeteringActivities, RecordUsageRequest, service_call_entries
from activities.tenants import TenantRecord
from models_catalog.catalog import load_catalog
from models_catalog.pricing import ModelCost
from tests.fixtures.postgres import MigratedDb
from workers.cli.tenants import app as tenants_app
from workers.cli.usage import app as usage_app
from workers.cli.usage import build_margin_report
from workers.settings import get_settings

D = Decimal
DAY1 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def cli_env(
    synced_db: MigratedDb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[MigratedDb]:
    monkeypatch.setenv("RADIANT_DATABASE_URL", synced_db.owner_url)
    monkeypatch.setenv("RADIANT_APP_DATABASE_URL", synced_db.app_url)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield synced_db
    get_settings.cache_clear()


def _ok(app: Any, args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout) if "--json" in args else result.stdout


def _bad(app: Any, args: list[str], message: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    err = result.stderr
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line
    assert message in err, err
    assert "Traceback" not in result.output
    return err


# ----------------------------------------------------------------------------- tenants


def test_tenants_create_and_list(cli_env: MigratedDb) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = _ok(tenants_app, ["create", name, "--tier", "3", "--json"])
    assert created["name"] == name and created["tier"] == 3
    uuid.UUID(created["id"])
    listed = _ok(tenants_app, ["list", "--json"])
    assert created in listed
    table = _ok(tenants_app, ["list"])
    assert name in table and "GROWTH" in table
    text = _ok(tenants_app, ["create", f"{name}-2", "--tier", "5"])
    assert text.startswith(f"created tenant {name}-2 (tier 5)")

    _bad(tenants_app, ["create", name, "--tier", "2"], f"a tenant named '{name}' already exists")


@pytest.mark.parametrize("tier", ["0", "6", "abc", "2.5"])
def test_tenants_bad_tier(cli_env: MigratedDb, tier: str) -> None:
    _bad(tenants_app, ["create", "whatever", "--tier", tier], "--tier must be an integer from 1")


def test_tenants_bad_name(cli_env: MigratedDb) -> None:
    _bad(tenants_app, ["create", "bad name", "--tier", "1"], "invalid tenant name 'bad name'")


def test_unreachable_database(cli_env: MigratedDb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    monkeypatch.setenv("RADIANT_APP_DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    get_settings.cache_clear()
    for app, args in [
        (tenants_app, ["list"]),
        (tenants_app, ["create", "x", "--tier", "1"]),
        (usage_app, ["report", "--tenant", "x"]),
        (usage_app, ["margin"]),
    ]:
        err = _bad(app, args, "PostgreSQL unavailable at 127.0.0.1:1")
        assert "secret" not in err


def test_admin_commands_refuse_the_application_role_alone(
    cli_env: MigratedDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's settings (only RADIANT_APP_DATABASE_URL): the owner's commands say what they
    need, before touching anything; the tenant-scoped ones keep working."""
    from workers.cli.catalog import app as catalog_app

    monkeypatch.delenv("RADIANT_DATABASE_URL")
    get_settings.cache_clear()
    for app, args, command in [
        (usage_app, ["margin"], "usage margin"),
        (tenants_app, ["create", "x", "--tier", "1"], "tenants create"),
        (catalog_app, ["sync"], "catalog sync"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert f"{command} needs the database owner connection" in result.stderr, result.stderr
    assert _ok(tenants_app, ["list", "--json"]) is not None


# ----------------------------------------------------------------------------- usage report


async def _record_call(
    engine: AsyncEngine, tenant: TenantRecord, *, service: str, when: datetime, images: int,
    app_id: str = "app",
) -> str:  # fmt: skip
    """One perception-like call: `images` x 0.02 billed; models m1 (0.004/image), m2 (0.01)."""
    wf = f"job/{service}/detect/{uuid.uuid4().hex[:8]}"
    n = D(images)
    entries = service_call_entries(
        tenant_id=tenant.id, workflow_id=wf, app_id=app_id, environment="dev",
        service_id=service, operation_id="detect", unit="image", units=n,
        unit_price=D("0.02"), billed_amount=D("0.02") * n, occurred_at=when,
        model_costs=[
            ModelCost(model_id="m1", basis="unit_price", rate=D("0.004"), quantity=n,
                      amount=D("0.004") * n),
            ModelCost(model_id="m2", basis="per_request", rate=D("0.01"), quantity=D(1),
                      amount=D("0.01")),
        ],
    )  # fmt: skip
    req = RecordUsageRequest(tenant_id=tenant.id, entries=entries)
    await ActivityEnvironment().run(MeteringActivities(engine).record, req)
    return wf


@pytest.fixture
async def ledger(cli_env: MigratedDb, app_engine: AsyncEngine, make_tenant) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Tenant A: 3 images on DAY1 and 2 on DAY2; tenant B: 10 images on DAY1 (own service id)."""
    a, b = make_tenant("rep-a"), make_tenant("rep-b")
    service = f"svc-{uuid.uuid4().hex[:6]}"
    await _record_call(app_engine, a, service=service, when=DAY1, images=3)
    await _record_call(app_engine, a, service=service, when=DAY2, images=2)
    await _record_call(app_engine, b, service=service, when=DAY1, images=10)
    return {"a": a, "b": b, "service": service}


def test_usage_report_by_service(ledger: dict[str, Any]) -> None:
    a, service = ledger["a"], ledger["service"]
    out = _ok(usage_app, ["report", "--tenant", a.name, "--json"])
    assert out["tenant"]["name"] == a.name and out["by"] == "service"
    [group] = out["groups"]
    assert group["key"] == {"service_id": service, "operation_id": "detect"}
    # 5 images x 0.02 = 0.10 billed; 5 x 0.004 + 2 x 0.01 = 0.04 internal; 2 x 3 rows
    assert group["rows"] == 6
    assert D(group["units"]["image"]) == 5
    assert (D(group["billed"]), D(group["internal_cost"]), D(group["margin"])) == (
        D("0.10"), D("0.04"), D("0.06"),
    )  # fmt: skip
    totals = out["totals"]
    assert (totals["rows"], D(totals["billed"]), D(totals["internal_cost"])) == (
        6, D("0.1"), D("0.04"),
    )  # fmt: skip
    assert totals["billed"] == "0.1000000000"  # exact ledger precision in JSON

    table = _ok(usage_app, ["report", "--tenant", a.name])
    assert service in table and "total" in table and "0.1000" in table


def test_usage_report_by_model_and_day(ledger: dict[str, Any]) -> None:
    a = ledger["a"]
    by_model = _ok(usage_app, ["report", "--tenant", str(a.id), "--by", "model", "--json"])
    groups = {g["key"]["model_id"]: g for g in by_model["groups"]}
    assert set(groups) == {None, "m1", "m2"}  # None: the service charges
    assert D(groups["m1"]["units"]["image"]) == 5 and D(groups["m1"]["internal_cost"]) == D("0.02")
    assert D(groups["m2"]["units"]["request"]) == 2 and D(groups["m2"]["billed"]) == 0
    assert D(groups[None]["billed"]) == D("0.1")
    # Totals count billed units only: the models' image units are the same images.
    assert {u: D(v) for u, v in by_model["totals"]["units"].items()} == {"image": 5}
    table = _ok(usage_app, ["report", "--tenant", a.name, "--by", "model"])
    assert "(service charges)" in table

    by_day = _ok(usage_app, ["report", "--tenant", a.name, "--by", "day", "--json"])
    days = {g["key"]["day"]: g for g in by_day["groups"]}
    assert set(days) == {"2026-02-01", "2026-02-02"}
    assert D(days["2026-02-01"]["units"]["image"]) == 3
    assert (D(days["2026-02-02"]["billed"]), D(days["2026-02-02"]["internal_cost"])) == (
        D("0.04"), D("0.018"),
    )  # fmt: skip

    since = _ok(usage_app, ["report", "--tenant", a.name, "--since", "2026-02-02", "--json"])
    assert D(since["totals"]["billed"]) == D("0.04") and since["totals"]["rows"] == 3
    later = _ok(usage_app, ["report", "--tenant", a.name, "--since", "2030-01-01", "--json"])
    assert later["groups"] == [] and later["totals"]["rows"] == 0
    empty = _ok(usage_app, ["report", "--tenant", a.name, "--since", "2030-01-01"])
    assert "no usage recorded" in empty


def test_usage_report_never_shows_other_tenants(ledger: dict[str, Any]) -> None:
    b = ledger["b"]
    out = _ok(usage_app, ["report", "--tenant", b.name, "--by", "model", "--json"])
    assert out["totals"]["rows"] == 3  # only B's call (A has 6 rows of the same service)
    assert D(out["totals"]["billed"]) == D("0.2")


def test_usage_report_bad_input(cli_env: MigratedDb) -> None:
    _bad(usage_app, ["report", "--tenant", "no-such-tenant"], "unknown tenant 'no-such-tenant'")
    _bad(usage_app, ["report", "--tenant", "x", "--since", "yesterday"], "--since: not a date")
    result = runner.invoke(usage_app, ["report", "--tenant", "x", "--by", "color"])
    assert result.exit_code == 2


# ----------------------------------------------------------------------------- margin report


def _add_uptime(owner_url: str, app_id: str, model_id: str, rows: list[dict[str, Any]]) -> None:
    engine = create_sync_engine(owner_url, poolclass=NullPool)
    with engine.begin() as conn:
        for r in rows:
            conn.execute(
                insert(endpoint_uptime).values(
                    app_id=app_id, environment="dev", model_id=model_id,
                    endpoint_name=f"radiant-{app_id}-dev-{model_id}", instance_type="ml.test",
                    **r,
                )
            )  # fmt: skip
    engine.dispose()


def test_margin_report(ledger: dict[str, Any], cli_env: MigratedDb) -> None:
    a, b, service = ledger["a"], ledger["b"], ledger["service"]
    model_id = next(iter(load_catalog().models))
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    _add_uptime(cli_env.owner_url, app_id, model_id, [
        # closed: 2 instances x 2.47 x 0.5 h = 2.47
        {"instance_count": 2, "billed_hourly": D("2.47"), "started_at": DAY1,
         "ended_at": DAY1 + timedelta(minutes=30)},
        # open, started 1 h ago: 1 x 1.30 x ~1 h
        {"instance_count": 1, "billed_hourly": D("1.30"),
         "started_at": now - timedelta(hours=1), "ended_at": None},
    ])  # fmt: skip

    out = _ok(usage_app, ["margin", "--json"])
    [svc] = [s for s in out["services"] if s["service_id"] == service]
    # 15 images x 0.02 = 0.30 billed; 15 x 0.004 + 3 x 0.01 = 0.09 internal
    assert svc["calls"] == 3 and D(svc["units"]["image"]) == 15
    assert (D(svc["billed"]), D(svc["internal_cost"]), D(svc["margin"])) == (
        D("0.3"), D("0.09"), D("0.21"),
    )  # fmt: skip
    assert D(svc["margin_percent"]) == D("70.00")
    tenants = {t["name"]: t for t in out["tenants"]}
    assert D(tenants[a.name]["billed"]) == D("0.1") and D(tenants[b.name]["billed"]) == D("0.2")
    [up] = [u for u in out["uptime"] if u["app_id"] == app_id]
    assert (up["model_id"], up["intervals"], up["open_intervals"]) == (model_id, 2, 1)
    assert D("3.77") <= D(up["cost"]) < D("3.78")  # 2.47 + 1.30 x (1 h + test time)

    # Since DAY2: only A's second call; the closed DAY1 interval drops out, the open one stays.
    later = _ok(usage_app, ["margin", "--since", "2026-02-02", "--json"])
    [svc2] = [s for s in later["services"] if s["service_id"] == service]
    assert (svc2["calls"], D(svc2["billed"])) == (1, D("0.04"))
    [up2] = [u for u in later["uptime"] if u["app_id"] == app_id]
    assert up2["intervals"] == 1 and D(up2["cost"]) < D("1.31")

    table = _ok(usage_app, ["margin"])
    assert service in table and app_id in table and "endpoint uptime cost" in table


def test_margin_report_reads_tenant_by_tenant_under_rls(
    ledger: dict[str, Any], cli_env: MigratedDb
) -> None:
    """Run as a role that row-level security binds (the app role here; a non-superuser owner
    is bound the same way by FORCE): every tenant's rows still count, exactly once."""
    service = ledger["service"]
    now = datetime(2026, 2, 3, tzinfo=UTC)
    reports = []
    for url in (cli_env.app_url, cli_env.owner_url):
        engine = create_sync_engine(url, poolclass=NullPool)
        try:
            reports.append(build_margin_report(engine, since=None, now=now))
        finally:
            engine.dispose()
    for report in reports:
        [svc] = [s for s in report.services if s.service_id == service]
        assert (svc.billed, svc.internal_cost, svc.calls) == (D("0.3"), D("0.09"), 3)
    assert reports[0].services == reports[1].services


def test_json_amounts_never_use_exponent_form():
    from decimal import Decimal

    from workers.cli.usage import MarginTotals

    dumped = MarginTotals(billed=Decimal("0E-10")).model_dump(mode="json")
    assert dumped["billed"] == "0.0000000000"
