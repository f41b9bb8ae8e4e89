"""Ledger entries and usage reports at their edges: amounts past NUMERIC(20,10), JSON metadata,
keys of ids differing in spaces, --since with an offset, rounding of percents and hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction
from activities.metering import MeteringActivities, RecordUsageRequest, usage_key
from tests.fixtures.postgres import MigratedDb
from tests.metering.test_cli import _ok, cli_env  # noqa: F401  (fixture)
from tests.metering.test_metering import _entry
from workers.cli.usage import UptimeCost, _percent, parse_since
from workers.cli.usage import app as usage_app

D = Decimal


@pytest.mark.parametrize("field", ["units", "billed_amount", "unit_price"])
@pytest.mark.parametrize("value", [D("1E+60"), 10**40, "1e45"])
def test_huge_amounts_are_a_validation_error_not_a_decimal_trap(field: str, value: Any) -> None:
    """Beyond the 50-digit context the quantize trapped decimal.InvalidOperation, which pydantic
    does not turn into a ValidationError (and callers catching ValueError retried forever)."""
    with pytest.raises(ValidationError, match="NUMERIC\\(20,10\\)"):
        _entry(uuid.uuid4(), "wf#charge", **{field: value})


def test_keys_of_ids_differing_in_surrounding_whitespace_differ() -> None:
    """The claim key is the id as given; the ledger key stripped it, so a second request
    ('r ' after 'r') got its rows silently deduplicated against the first one's."""
    assert usage_key("job/s/o/r ", "charge") != usage_key("job/s/o/r", "charge")
    with pytest.raises(ValueError, match="workflow id"):
        usage_key("   ", "charge")


async def test_metadata_with_decimals_and_datetimes_is_stored(  # type: ignore[no-untyped-def]
    app_engine: AsyncEngine, make_tenant
) -> None:
    """JSON metadata went to the driver as Python objects: a Decimal or datetime in it failed
    in json.dumps (a StatementError: retried, never written)."""
    t = make_tenant("meta")
    key = usage_key(f"wf-{uuid.uuid4().hex[:8]}", "charge")
    when = datetime(2026, 2, 1, tzinfo=UTC)
    entry = _entry(t.id, key, metadata={"rate": D("0.1"), "at": when})
    req = RecordUsageRequest(tenant_id=t.id, entries=[entry])
    result = await ActivityEnvironment().run(MeteringActivities(app_engine).record, req)
    assert result.inserted == 1
    async with tenant_transaction(app_engine, t.id) as conn:
        meta = (
            await conn.execute(
                select(usage_ledger.c.metadata).where(usage_ledger.c.idempotency_key == key)
            )
        ).scalar_one()
    assert meta == {"rate": "0.1", "at": "2026-02-01T00:00:00Z"}


def test_since_with_an_offset_is_reported_in_utc() -> None:
    """Tables print `since ... UTC`: a --since with an offset was printed in its own zone."""
    since = parse_since("2026-02-02T10:00+05:00")
    assert since is not None and since.utcoffset() == timedelta(0)
    assert (since.hour, since.tzinfo) == (5, UTC)


def test_usage_report_title_shows_the_utc_instant(cli_env: MigratedDb, make_tenant) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    t = make_tenant("tz")
    out = _ok(usage_app, ["report", "--tenant", t.name, "--since", "2026-02-02T10:00+05:00"])
    assert "since 2026-02-02 05:00 UTC" in out, out


def test_margin_percent_rounds_half_up() -> None:
    """Money and percentages round half up (pricing's rule); the default context is half-even."""
    assert _percent(D("0.12345"), D("1")) == D("12.35")
    assert _percent(D("0.12355"), D("1")) == D("12.36")


def test_instance_hours_in_json_are_at_ledger_precision() -> None:
    """A third of an hour printed 50 digits in JSON; amounts are at ledger precision."""
    from workers.cli.usage import _uptime

    started = datetime(2026, 2, 1, tzinfo=UTC)

    class Row:
        app_id, environment, model_id = "a", "dev", "m"
        instance_count, billed_hourly = 1, D("2.00")
        started_at, ended_at = started, started + timedelta(minutes=20)

    class Conn:
        def execute(self, _stmt: Any) -> list[Row]:
            return [Row()]

    [item] = _uptime(Conn(), None, started + timedelta(hours=1))
    assert isinstance(item, UptimeCost)
    assert item.model_dump(mode="json")["instance_hours"] == "0.3333333333"
    assert item.cost == D("0.6666666667")


def test_since_out_of_range_in_utc_is_bad_input(cli_env: MigratedDb) -> None:  # noqa: F811
    from tests.metering.test_cli import _bad

    _bad(usage_app, ["margin", "--since", "9999-12-31T23:59:59-01:00"], "--since: not a date")


def test_uptime_split_by_rate_change_straddling_since_and_open() -> None:
    """One run of an endpoint split at a count change and a rate change, the first part
    straddling --since, the last still open: the clipped parts sum like one interval would."""
    from workers.cli.usage import _uptime

    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    now = t0 + timedelta(hours=5)
    rows = [  # (count, rate, start, end)
        (2, D("2.47"), t0, t0 + timedelta(hours=2)),
        (3, D("2.47"), t0 + timedelta(hours=2), t0 + timedelta(hours=3)),
        (3, D("3.00"), t0 + timedelta(hours=3), None),
    ]

    class Conn:
        def execute(self, _stmt: Any) -> list[Any]:
            return [
                type("R", (), dict(app_id="a", environment="dev", model_id="m",
                                   instance_count=c, billed_hourly=r, started_at=s, ended_at=e))
                for c, r, s, e in rows
            ]  # fmt: skip

    [item] = _uptime(Conn(), t0 + timedelta(hours=1), now)
    # since +1 h: 2 x 2.47 x 1 h + 3 x 2.47 x 1 h + 3 x 3.00 x 2 h (open, up to now)
    assert item.cost == D("4.94") + D("7.41") + D("18.00")
    assert item.instance_hours == D(2 + 3 + 6)
    assert (item.intervals, item.open_intervals) == (3, 1)
