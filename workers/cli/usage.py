"""`radiant usage report|margin`: reports derived from the usage ledger (DESIGN 6).

`report` is a tenant's view. It reads through the *application* role inside
`tenant_transaction` for that one tenant, so row-level security applies: whatever the query
says, a report can never include another tenant's rows.

`margin` is the admin view across tenants: billed vs internal (model-level) cost per service
operation and per model, billed per tenant, and endpoint uptime cost per (app, environment,
model) from the `endpoint_uptime` intervals. It is cross-tenant on purpose and therefore runs on
the *owner* connection (`RADIANT_DATABASE_URL`), an admin credential the worker does not have.
Even so it does not switch row-level security off: the ledger has FORCE ROW LEVEL SECURITY,
which binds a non-superuser owner too, so the report reads the ledger tenant by tenant, each
inside that tenant's scope. The tenant list, the ledger, the uptime intervals and the services'
catalog status are all read in one REPEATABLE READ transaction (one consistent snapshot).

Definitions (row conventions in `activities.metering`):
- billed = sum(billed_amount); internal cost = sum(internal_cost) (model-level prices of the
  models used, and provider cost of external calls); margin = billed - internal cost.
- billed units = units of rows that are not `model_invocation` cost rows, per unit.
- uptime cost = instance_count x billed_hourly x hours, open intervals counted up to now and
  intervals clipped to --since (`models_catalog.pricing.uptime_cost`). Both internal and
  uptime cost are at list (billed) rates; they measure the same GPUs two ways (per use and
  per hour running), so they are reported side by side, never added.

Money is printed exactly in JSON (decimal strings, full ledger precision) and rounded only in
tables. Bad input and database problems: one line on stderr, exit status 2.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field, PlainSerializer, computed_field
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from activities.db.engine import create_sync_engine, unavailable_error
from activities.db.schema import (
    TENANT_SETTING,
    endpoint_uptime,
    mid_level_services,
    tenants,
    usage_ledger,
)
from activities.db.tenancy import tenant_transaction_sync
from activities.metering import BILLED_UNIT_KINDS
from activities.tenants import TenantRecord, get_tenant
from models_catalog.pricing import (
    display_money,
    percent,
    to_ledger,
    uptime_cost,
    uptime_hours,
)
from workers.cli.common import DataTable, emit_json
from workers.cli.tenants import database, fail, print_table

app = typer.Typer(no_args_is_help=True, help="Usage and margin reports from the ledger.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", metavar="DATE", help="Only usage at or after DATE (YYYY-MM-DD, UTC)."),
]

ZERO = Decimal(0)


def _plain_decimal(value: Decimal) -> str:
    """JSON amounts at the ledger's exact precision, never in exponent form: a NUMERIC(20,10)
    zero is "0.0000000000", not "0E-10"."""
    return format(value, "f")


Amount = Annotated[Decimal, PlainSerializer(_plain_decimal, return_type=str, when_used="json")]


class GroupBy(StrEnum):
    service = "service"
    model = "model"
    day = "day"


# ----------------------------------------------------------------------------- models


class UsageGroup(BaseModel):
    key: dict[str, str | None]
    rows: int = 0
    units: dict[str, Amount] = Field(default_factory=dict)  # per unit
    billed: Amount = ZERO
    internal_cost: Amount = ZERO

    @computed_field  # type: ignore[prop-decorator]
    @property
    def margin(self) -> Amount:
        return self.billed - self.internal_cost

    def add(self, rows: int, unit: str | None, units: Decimal | None, billed: Decimal,
            internal: Decimal) -> None:  # fmt: skip
        self.rows += rows
        self.billed += billed
        self.internal_cost += internal
        if unit is not None and units is not None:
            self.units[unit] = self.units.get(unit, ZERO) + units


class UsageReport(BaseModel):
    tenant: TenantRecord
    by: GroupBy
    since: datetime | None
    groups: list[UsageGroup]
    totals: UsageGroup


class ServiceMargin(BaseModel):
    service_id: str
    operation_id: str | None
    # mid_level_services.status: 'deprecated' once the catalog dropped the service (its usage
    # stays reported); None for a service id the synced catalog never had.
    catalog_status: str | None = None
    calls: int = 0
    units: dict[str, Amount] = Field(default_factory=dict)
    billed: Amount = ZERO
    internal_cost: Amount = ZERO
    margin: Amount = ZERO
    margin_percent: Amount | None = None


class ModelMargin(BaseModel):
    model_id: str
    provider_id: str | None
    rows: int = 0
    units: dict[str, Amount] = Field(default_factory=dict)
    billed: Amount = ZERO  # non-zero for external calls (llm_call rows)
    internal_cost: Amount = ZERO


class TenantMargin(BaseModel):
    tenant_id: uuid.UUID
    name: str
    rows: int = 0
    billed: Amount = ZERO
    internal_cost: Amount = ZERO
    margin: Amount = ZERO


class UptimeCost(BaseModel):
    app_id: str
    environment: str
    model_id: str
    intervals: int = 0
    open_intervals: int = 0
    instance_hours: Amount = ZERO
    cost: Amount = ZERO


class MarginTotals(BaseModel):
    billed: Amount = ZERO
    internal_cost: Amount = ZERO
    margin: Amount = ZERO
    margin_percent: Amount | None = None
    uptime_cost: Amount = ZERO
    billed_minus_uptime: Amount = ZERO


class MarginReport(BaseModel):
    since: datetime | None
    generated_at: datetime
    services: list[ServiceMargin]
    models: list[ModelMargin]
    tenants: list[TenantMargin]
    uptime: list[UptimeCost]
    totals: MarginTotals


# ----------------------------------------------------------------------------- helpers


def parse_since(value: str | None) -> datetime | None:
    """YYYY-MM-DD (midnight UTC) or an ISO date-time (naive means UTC)."""
    if value is None:
        return None
    raw = value.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(raw)
        # In UTC, as the tables print it ("since ... UTC"): "10:00+05:00" is 05:00 UTC.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # Overflow: past year 9999 once in UTC
        fail(f"--since: not a date: {value!r} (expected YYYY-MM-DD)")


def _percent(margin: Decimal, billed: Decimal) -> Decimal | None:
    return percent(margin, billed) if billed else None


def _qty(value: Decimal) -> str:
    """A quantity without trailing zeros: 3, 2.5, 0.0001."""
    return format(value.normalize(), "f")


def _units(units: dict[str, Decimal]) -> str:
    return ", ".join(f"{_qty(v)} {u}" for u, v in sorted(units.items())) or "-"


def _key_label(name: str, value: str | None) -> str:
    if value is not None:
        return value
    return "(service charges)" if name == "model_id" else "-"


def _money(value: Decimal) -> str:
    return display_money(value, 4)


# ----------------------------------------------------------------------------- tenant report


def _is_billed_kind(kind: str) -> bool:
    """Rows whose units are billed units (model_invocation rows are cost detail)."""
    return kind in BILLED_UNIT_KINDS


def build_usage_report(
    app_engine: Engine, tenant: TenantRecord, by: GroupBy, since: datetime | None
) -> UsageReport:
    """A tenant's usage, grouped, read through RLS (app role, tenant_transaction)."""
    u = usage_ledger.c
    day = func.to_char(func.timezone("UTC", u.occurred_at), "YYYY-MM-DD").label("day")
    group_keys: dict[GroupBy, list[Any]] = {
        GroupBy.service: [u.service_id, u.operation_id],
        GroupBy.model: [u.model_id, u.provider_id],
        GroupBy.day: [day],
    }
    keys = group_keys[by]
    stmt = (
        select(
            *keys,
            u.kind,
            u.unit,
            func.count().label("rows"),
            func.sum(u.units).label("units"),
            func.sum(u.billed_amount).label("billed"),
            func.coalesce(func.sum(u.internal_cost), 0).label("internal"),
        )
        .where(u.tenant_id == tenant.id)  # RLS enforces this anyway; explicit for clarity
        .group_by(*keys, u.kind, u.unit)
        .order_by(*keys)
    )
    if since is not None:
        stmt = stmt.where(u.occurred_at >= since)
    groups: dict[tuple[Any, ...], UsageGroup] = {}
    totals = UsageGroup(key={})
    with tenant_transaction_sync(app_engine, tenant.id) as conn:
        for row in conn.execute(stmt).mappings():
            names = [k.name for k in keys]
            key = tuple(row[n] for n in names)
            group = groups.setdefault(key, UsageGroup(key=dict(zip(names, key, strict=True))))
            billed_units = row["units"] if _is_billed_kind(row["kind"]) else None
            # A model's group counts every unit it served; other groups and the totals count
            # billed units only (cost rows would count the same images twice).
            group_units = row["units"] if by == GroupBy.model else billed_units
            group.add(row["rows"], row["unit"], group_units, row["billed"], row["internal"])
            totals.add(row["rows"], row["unit"], billed_units, row["billed"], row["internal"])
    return UsageReport(tenant=tenant, by=by, since=since, groups=list(groups.values()),
                       totals=totals)  # fmt: skip


@app.command("report")
def report(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant name or id.")],
    by: Annotated[GroupBy, typer.Option("--by", help="Group by service, model or day.")] = (
        GroupBy.service
    ),
    since: SinceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A tenant's usage: rows, units, billed and internal cost (row-level security applies)."""
    since_dt = parse_since(since)
    with database() as urls:
        engine = create_sync_engine(urls.app, poolclass=NullPool)
        try:
            record = get_tenant(engine, tenant)
            result = build_usage_report(engine, record, by, since_dt)
        finally:
            engine.dispose()
    if as_json:
        emit_json(result)
        return
    title = f"Usage of {result.tenant.name} (tier {result.tenant.tier}) by {by.value}"
    if since_dt is not None:
        title += f" since {since_dt:%Y-%m-%d %H:%M} UTC"
    table = DataTable(title=title)
    key_names = list(result.groups[0].key) if result.groups else []
    for name in key_names:
        table.add_column(name)
    for col in ("rows", "units", "billed", "internal cost", "margin"):
        table.add_column(col, justify="right" if col != "units" else "left")
    for g in result.groups:
        table.add_row(
            *[_key_label(name, v) for name, v in g.key.items()],
            str(g.rows), _units(g.units), _money(g.billed), _money(g.internal_cost),
            _money(g.margin),
        )  # fmt: skip
    t = result.totals
    if key_names:
        table.add_section()
        table.add_row(
            "total", *[""] * (len(key_names) - 1), str(t.rows), _units(t.units),
            _money(t.billed), _money(t.internal_cost), _money(t.margin),
        )  # fmt: skip
    print_table(table)
    if not result.groups:
        when = f" since {since_dt:%Y-%m-%d %H:%M} UTC" if since_dt is not None else ""
        typer.echo(f"no usage recorded for {result.tenant.name}{when}")


# ----------------------------------------------------------------------------- margin report


def build_margin_report(
    owner_engine: Engine, since: datetime | None, now: datetime | None = None
) -> MarginReport:
    """Billed vs internal cost across tenants, and endpoint uptime cost (owner connection)."""
    now = now or datetime.now(UTC)
    u = usage_ledger.c
    is_call = case((u.kind == "service_charge", 1), else_=0)
    stmt = (
        select(
            u.service_id, u.operation_id, u.model_id, u.provider_id, u.kind, u.unit,
            func.count().label("rows"),
            func.sum(is_call).label("calls"),
            func.sum(u.units).label("units"),
            func.sum(u.billed_amount).label("billed"),
            func.coalesce(func.sum(u.internal_cost), 0).label("internal"),
        )
        .group_by(u.service_id, u.operation_id, u.model_id, u.provider_id, u.kind, u.unit)
    )  # fmt: skip
    services: dict[tuple[str, str | None], ServiceMargin] = {}
    models: dict[tuple[str, str | None], ModelMargin] = {}
    tenant_rows: list[TenantMargin] = []
    totals = MarginTotals()
    try:
        snapshot = owner_engine.connect().execution_options(isolation_level="REPEATABLE READ")
    except OperationalError as err:  # unreachable: one line, as for the other commands
        raise unavailable_error(owner_engine.url, err) from None
    with snapshot as conn:
        with conn.begin():
            # The tenant list is read in the same snapshot as the rows: a tenant created (with
            # its usage) meanwhile is wholly in the report or wholly out of it.
            for t in _tenants(conn):
                # Tenant scope for FORCE ROW LEVEL SECURITY (the owner is bound by it too).
                conn.execute(select(func.set_config(TENANT_SETTING, str(t.id), True)))
                q = stmt.where(u.tenant_id == t.id)
                if since is not None:
                    q = q.where(u.occurred_at >= since)
                tm = TenantMargin(tenant_id=t.id, name=t.name)
                for r in conn.execute(q).mappings():
                    tm.rows += r["rows"]
                    tm.billed += r["billed"]
                    tm.internal_cost += r["internal"]
                    if r["service_id"] is not None:
                        sm = services.setdefault(
                            (r["service_id"], r["operation_id"]),
                            ServiceMargin(service_id=r["service_id"],
                                          operation_id=r["operation_id"]),
                        )  # fmt: skip
                        sm.calls += r["calls"]
                        sm.billed += r["billed"]
                        sm.internal_cost += r["internal"]
                        if _is_billed_kind(r["kind"]):
                            sm.units[r["unit"]] = sm.units.get(r["unit"], ZERO) + r["units"]
                    if r["model_id"] is not None:
                        mm = models.setdefault(
                            (r["model_id"], r["provider_id"]),
                            ModelMargin(model_id=r["model_id"], provider_id=r["provider_id"]),
                        )
                        mm.rows += r["rows"]
                        mm.billed += r["billed"]
                        mm.internal_cost += r["internal"]
                        mm.units[r["unit"]] = mm.units.get(r["unit"], ZERO) + r["units"]
                tm.margin = tm.billed - tm.internal_cost
                if tm.rows:
                    tenant_rows.append(tm)
                totals.billed += tm.billed
                totals.internal_cost += tm.internal_cost
            uptime = _uptime(conn, since, now)
            catalog_status = _service_statuses(conn)
    for sm in services.values():
        sm.catalog_status = catalog_status.get(sm.service_id)
        sm.margin = sm.billed - sm.internal_cost
        sm.margin_percent = _percent(sm.margin, sm.billed)
    totals.margin = totals.billed - totals.internal_cost
    totals.margin_percent = _percent(totals.margin, totals.billed)
    totals.uptime_cost = sum((x.cost for x in uptime), ZERO)
    totals.billed_minus_uptime = totals.billed - totals.uptime_cost
    return MarginReport(
        since=since,
        generated_at=now,
        services=sorted(services.values(), key=lambda s: (s.service_id, s.operation_id or "")),
        models=sorted(models.values(), key=lambda m: (m.model_id, m.provider_id or "")),
        tenants=sorted(tenant_rows, key=lambda t: t.name),
        uptime=uptime,
        totals=totals,
    )


def _tenants(conn: Connection) -> list[TenantRecord]:
    rows = conn.execute(select(tenants).order_by(tenants.c.name)).mappings()
    return [TenantRecord.model_validate(dict(r)) for r in rows]


def _service_statuses(conn: Connection) -> dict[str, str]:
    s = mid_level_services.c
    return {r.service_id: r.status for r in conn.execute(select(s.service_id, s.status))}


def _uptime(conn: Any, since: datetime | None, now: datetime) -> list[UptimeCost]:
    e = endpoint_uptime.c
    stmt = select(
        e.app_id, e.environment, e.model_id, e.instance_count, e.billed_hourly,
        e.started_at, e.ended_at,
    ).where(e.started_at <= now)  # fmt: skip
    if since is not None:
        stmt = stmt.where((e.ended_at.is_(None)) | (e.ended_at > since))
    out: dict[tuple[str, str, str], UptimeCost] = {}
    for r in conn.execute(stmt.order_by(e.app_id, e.environment, e.model_id, e.started_at)):
        item = out.setdefault(
            (r.app_id, r.environment, r.model_id),
            UptimeCost(app_id=r.app_id, environment=r.environment, model_id=r.model_id),
        )
        item.intervals += 1
        item.open_intervals += r.ended_at is None
        hours = uptime_hours(r.started_at, r.ended_at, now=now, since=since)
        item.instance_hours += r.instance_count * hours
        item.cost += uptime_cost(
            r.instance_count, r.billed_hourly, r.started_at, r.ended_at, now=now, since=since
        )
    for item in out.values():  # summed exactly, shown at ledger precision (not 50 digits)
        item.instance_hours = to_ledger(item.instance_hours)
    return list(out.values())


@app.command("margin")
def margin(since: SinceOpt = None, as_json: JsonOpt = False) -> None:
    """Admin: billed vs internal cost per service and model across tenants, plus endpoint
    uptime cost per (app, environment, model). Needs the owner connection."""
    since_dt = parse_since(since)
    with database() as urls:
        urls.require_owner("usage margin")
        engine = create_sync_engine(urls.owner, poolclass=NullPool)
        try:
            result = build_margin_report(engine, since_dt)
        finally:
            engine.dispose()
    if as_json:
        emit_json(result)
        return
    suffix = f" since {since_dt:%Y-%m-%d %H:%M} UTC" if since_dt else ""
    st = DataTable(title=f"Margin by service operation{suffix}")
    for col in ("service", "operation", "calls", "units", "billed", "internal cost", "margin",
                "margin %"):  # fmt: skip
        st.add_column(col, justify="left" if col in ("service", "operation", "units") else "right")
    for s in result.services:
        gone = " (deprecated)" if s.catalog_status == "deprecated" else ""
        st.add_row(s.service_id + gone, s.operation_id or "-", str(s.calls), _units(s.units),
                   _money(s.billed), _money(s.internal_cost), _money(s.margin),
                   f"{s.margin_percent}" if s.margin_percent is not None else "-")  # fmt: skip
    print_table(st)
    mt = DataTable(title=f"Cost by model{suffix}")
    for col in ("model", "provider", "rows", "units", "billed", "internal cost"):
        mt.add_column(col, justify="left" if col in ("model", "provider", "units") else "right")
    for m in result.models:
        mt.add_row(m.model_id, m.provider_id or "self-hosted", str(m.rows), _units(m.units),
                   _money(m.billed), _money(m.internal_cost))  # fmt: skip
    print_table(mt)
    tt = DataTable(title=f"Billed by tenant{suffix}")
    for col in ("tenant", "rows", "billed", "internal cost", "margin"):
        tt.add_column(col, justify="left" if col == "tenant" else "right")
    for t in result.tenants:
        tt.add_row(t.name, str(t.rows), _money(t.billed), _money(t.internal_cost),
                   _money(t.margin))  # fmt: skip
    print_table(tt)
    ut = DataTable(title=f"Endpoint uptime cost{suffix} (open intervals up to now)")
    for col in ("app", "environment", "model", "intervals", "open", "instance hours", "cost"):
        ut.add_column(col, justify="left" if col in ("app", "environment", "model") else "right")
    for x in result.uptime:
        ut.add_row(x.app_id, x.environment, x.model_id, str(x.intervals), str(x.open_intervals),
                   display_money(x.instance_hours, 4), _money(x.cost))  # fmt: skip
    print_table(ut)
    tot = result.totals
    pct = f" ({tot.margin_percent} %)" if tot.margin_percent is not None else ""
    typer.echo(
        f"billed {_money(tot.billed)}, internal cost {_money(tot.internal_cost)}, "
        f"margin {_money(tot.margin)}{pct}; endpoint uptime cost {_money(tot.uptime_cost)}"
    )
