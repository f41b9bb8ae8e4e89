"""`metering.record` on a real PostgreSQL (application role, RLS) and a real Temporal server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

import activities.metering as metering
from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction
from activities.llm.costs import price_call
from activities.llm.ledger import record_llm_usage
from activities.llm.types import LLMCallResult, TokenUsage
from activities.llm.types import MeterInput as LLMMeterInput
from activities.metering import (
    MeteringActivities,
    RecordUsageRequest,
    UsageEntry,
    service_call_entries,
    usage_key,
)
from models_catalog.catalog import load_catalog
from models_catalog.pricing import ModelCost
from tests.metering.meter_types import MeterInput
from tests.metering.wf_meter import MeterWorkflow

D = Decimal


def _entry(tenant_id: uuid.UUID, key: str, **extra: Any) -> UsageEntry:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id, "idempotency_key": key, "kind": "service_charge",
        "service_id": "svc", "operation_id": "op", "workflow_id": key.split("#")[0],
        "units": D("2"), "unit": "image", "unit_price": D("0.02"), "billed_amount": D("0.04"),
    }  # fmt: skip
    return UsageEntry(**{**fields, **extra})


async def _rows(engine: AsyncEngine, tenant_id: uuid.UUID, workflow_id: str) -> list[Any]:
    async with tenant_transaction(engine, tenant_id) as conn:
        stmt = (
            select(usage_ledger)
            .where(usage_ledger.c.workflow_id == workflow_id)
            .order_by(usage_ledger.c.idempotency_key)
        )
        return list((await conn.execute(stmt)).mappings())


def _meter_input(tenant_id: uuid.UUID) -> MeterInput:
    return MeterInput(
        tenant_id=tenant_id,
        service_id="perception",
        operation_id="detect",
        unit="image",
        units=D("3"),
        unit_price=D("0.0010000000"),
        billed_amount=D("0.0030000000"),
        model_costs=[
            ModelCost(model_id="model-a", basis="unit_price", rate=D("0.0004"),
                      quantity=D("3"), amount=D("0.0012")),
            ModelCost(model_id="model-b", basis="hourly", rate=D("2.47"),
                      quantity=D("0.025"), amount=D("0.06175")),
        ],
    )  # fmt: skip


# ----------------------------------------------------------------------------- the key test


@pytest.fixture
def crash_after_commit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make `metering.record` fail on its first attempt *after* its transaction committed
    (a worker dying before it reports completion); returns the attempts seen."""
    attempts: list[int] = []
    real = metering.tenant_transaction

    @asynccontextmanager
    async def committing_then_crashing(
        engine: AsyncEngine, tenant_id: uuid.UUID | str
    ) -> AsyncIterator[AsyncConnection]:
        async with real(engine, tenant_id) as conn:
            yield conn
        # The transaction has committed here.
        attempt = activity.info().attempt
        attempts.append(attempt)
        if attempt == 1:
            raise RuntimeError("simulated crash after the ledger commit")

    monkeypatch.setattr(metering, "tenant_transaction", committing_then_crashing)
    return attempts


async def test_retry_after_commit_records_nothing_twice(
    temporal_client: Client, app_engine: AsyncEngine, make_tenant, crash_after_commit
) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant("crash")
    queue = f"metering-{uuid.uuid4().hex[:8]}"
    workflow_id = f"job/perception/detect/{uuid.uuid4().hex[:12]}"
    inp = _meter_input(tenant.id)
    acts = MeteringActivities(app_engine)
    async with Worker(
        temporal_client, task_queue=queue, workflows=[MeterWorkflow], activities=[acts.record]
    ):
        result = await temporal_client.execute_workflow(
            MeterWorkflow.run, inp, id=workflow_id, task_queue=queue
        )
        # The first attempt committed then failed; the retry found every row already there.
        assert crash_after_commit == [1, 2]
        assert (result.inserted, result.already_present) == (0, 3)

        rows = await _rows(app_engine, tenant.id, workflow_id)
        assert [r["idempotency_key"] for r in rows] == [
            f"{workflow_id}#charge",
            f"{workflow_id}#model/model-a",
            f"{workflow_id}#model/model-b",
        ]
        charge, cost_a, cost_b = rows
        assert (charge["kind"], charge["billed_amount"], charge["internal_cost"]) == (
            "service_charge", D("0.003"), None,
        )  # fmt: skip
        assert charge["metadata"] == {"models_used": ["model-a", "model-b"]}
        assert (cost_a["kind"], cost_a["billed_amount"], cost_a["internal_cost"]) == (
            "model_invocation", D(0), D("0.0012"),
        )  # fmt: skip
        assert (cost_b["unit"], cost_b["units"], cost_b["internal_cost"]) == (
            "hour", D("0.025"), D("0.06175"),
        )  # fmt: skip
        # Decimals crossed Temporal payloads and NUMERIC(20,10) exactly.
        assert str(charge["unit_price"]) == "0.0010000000"

        # A second run under the same workflow id (a duplicate request) adds nothing either.
        again = await temporal_client.execute_workflow(
            MeterWorkflow.run, inp, id=workflow_id, task_queue=queue
        )
        assert (again.inserted, again.already_present) == (0, 3)
        assert len(await _rows(app_engine, tenant.id, workflow_id)) == 3


# ----------------------------------------------------------------------------- activity


async def test_record_then_retry_directly(app_engine: AsyncEngine, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant("direct")
    wf = f"job/s/o/{uuid.uuid4().hex[:8]}"
    req = RecordUsageRequest(
        tenant_id=tenant.id,
        entries=[_entry(tenant.id, usage_key(wf, "charge")), _entry(tenant.id, usage_key(wf, "x"))],
    )
    env = ActivityEnvironment()
    acts = MeteringActivities(app_engine)
    first = await env.run(acts.record, req)
    assert (first.inserted, first.already_present) == (2, 0)
    assert sorted(first.inserted_keys) == [f"{wf}#charge", f"{wf}#x"]
    # Same business event with a *different* amount (a buggy retry): the first row stands.
    changed = req.model_copy(
        update={"entries": [_entry(tenant.id, usage_key(wf, "charge"), billed_amount=D("9"))]}
    )
    second = await env.run(acts.record, changed)
    assert (second.inserted, second.already_present, second.inserted_keys) == (0, 1, [])
    rows = await _rows(app_engine, tenant.id, wf)
    assert [r["billed_amount"] for r in rows] == [D("0.04"), D("0.04")]
    assert all(r["occurred_at"] is not None for r in rows)  # server time when not given


async def test_decimal_round_trip_is_exact(app_engine: AsyncEngine, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant("decimal")
    wf = f"job/s/o/{uuid.uuid4().hex[:8]}"
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    values = {
        "units": D("0.3333333333"),
        "unit_price": D("0.0010000000"),
        "billed_amount": D("9999999999.9999999999"),
    }
    req = RecordUsageRequest(
        tenant_id=tenant.id,
        entries=[
            _entry(tenant.id, usage_key(wf, "charge"), occurred_at=when, **values),
            _entry(
                tenant.id,
                usage_key(wf, "model/m"),
                kind="model_invocation",
                billed_amount=D(0),
                internal_cost=D("0.0000000001"),
                model_id="m",
            ),  # fmt: skip
            # More places than the ledger keeps: quantized on entry exactly as NUMERIC would.
            _entry(tenant.id, usage_key(wf, "fine"), billed_amount=D("0.00000000015")),
        ],
    )
    await ActivityEnvironment().run(MeteringActivities(app_engine).record, req)
    charge, fine, model = await _rows(app_engine, tenant.id, wf)
    for name, value in values.items():
        assert charge[name] == value and str(charge[name]) == str(value)
        assert isinstance(charge[name], Decimal)
    assert charge["occurred_at"] == when
    assert format(model["internal_cost"], "f") == "0.0000000001"
    assert fine["billed_amount"] == req.entries[2].billed_amount == D("0.0000000002")


async def test_tenant_isolation(app_engine: AsyncEngine, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("iso-a"), make_tenant("iso-b")
    wf = f"job/s/o/{uuid.uuid4().hex[:8]}"
    acts = MeteringActivities(app_engine)
    env = ActivityEnvironment()
    await env.run(
        acts.record, RecordUsageRequest(tenant_id=a.id, entries=[_entry(a.id, f"{wf}#a")])
    )
    await env.run(
        acts.record, RecordUsageRequest(tenant_id=b.id, entries=[_entry(b.id, f"{wf}#b")])
    )

    assert [r["tenant_id"] for r in await _rows(app_engine, a.id, wf)] == [a.id]
    async with tenant_transaction(app_engine, b.id) as conn:
        # B asks for A's rows by id and by tenant: nothing.
        by_tenant = select(usage_ledger).where(usage_ledger.c.tenant_id == a.id)
        assert (await conn.execute(by_tenant)).all() == []
        keys = select(usage_ledger.c.idempotency_key).where(usage_ledger.c.workflow_id == wf)
        assert (await conn.execute(keys)).scalars().all() == [f"{wf}#b"]
    # Without a tenant scope the application role sees no ledger rows at all.
    async with app_engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(usage_ledger))).scalar() == 0
    # The same key is independent per tenant (UNIQUE is per tenant).
    dup = await env.run(
        acts.record, RecordUsageRequest(tenant_id=b.id, entries=[_entry(b.id, f"{wf}#a")])
    )
    assert dup.inserted == 1


async def test_unknown_tenant_is_not_retried(app_engine: AsyncEngine) -> None:
    ghost = uuid.uuid4()
    req = RecordUsageRequest(tenant_id=ghost, entries=[_entry(ghost, "job/s/o/x#charge")])
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(MeteringActivities(app_engine).record, req)
    assert err.value.type == "InvalidUsage" and err.value.non_retryable
    assert str(ghost) in err.value.message


async def test_llm_cache_writes_are_billed_at_their_rate_and_split_in_the_ledger(
    app_engine: AsyncEngine, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    """A Claude call that wrote 2000 tokens to the prompt cache, 1000 of them to the 1-hour
    cache (and read 300): its ledger row bills the writes at the cache write rates, counts
    every prompt token in input_tokens and shows the split in its metadata; a retried meter
    activity writes nothing."""
    tenant = make_tenant("cache-write")
    model_id = "anthropic-claude-sonnet-4-5"
    usage = TokenUsage(
        input_tokens=100,
        output_tokens=20,
        cached_input_tokens=300,
        cache_write_input_tokens=2000,
        cache_write_1h_input_tokens=1000,
    )
    result = LLMCallResult(
        model_id=model_id, served_by=model_id, provider_id="anthropic", hosting="external",
        fallback_used=False, content="x", usage=usage,
        cost=price_call(load_catalog(), model_id, usage), latency_ms=5,
    )  # fmt: skip
    request_id = uuid.uuid4().hex
    inp = LLMMeterInput(
        tenant_id=str(tenant.id), workflow_id=f"llm/{tenant.id}/chat/{request_id}",
        step="llm_call", kind="chat", request_id=request_id, app_id="app", environment="dev",
        requested_model=model_id, result=result,
    )  # fmt: skip
    env = ActivityEnvironment()
    first = await env.run(record_llm_usage, app_engine, inp)
    retry = await env.run(record_llm_usage, app_engine, inp)
    assert first.inserted and not retry.inserted
    [row] = await _rows(app_engine, tenant.id, inp.workflow_id)
    # 0.1 x 0.003 + 0.02 x 0.015 + 0.3 x 0.0003 (read) + 1 x 0.00375 (5-minute write) + 1 x
    # 0.006 (1-hour write; input: 0.003)
    assert (row["internal_cost"], row["billed_amount"]) == (D("0.01044"), D("0.014616"))
    assert (row["input_tokens"], row["output_tokens"], row["units"]) == (2400, 20, D(2420))
    keys = ("cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens")
    assert [row["metadata"][k] for k in keys] == [300, 2000, 1000]


# ----------------------------------------------------------------------------- validation


def test_usage_key() -> None:
    assert usage_key("job/perception/detect/r1", "charge") == "job/perception/detect/r1#charge"
    for wf, step in [("", "charge"), ("wf", " "), ("wf", "a#b")]:
        with pytest.raises(ValueError):
            usage_key(wf, step)


def test_request_validation() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(ValidationError, match="every entry must belong to tenant"):
        RecordUsageRequest(tenant_id=a, entries=[_entry(b, "w#1")])
    with pytest.raises(ValidationError, match="duplicate idempotency keys"):
        RecordUsageRequest(tenant_id=a, entries=[_entry(a, "w#1"), _entry(a, "w#1")])
    with pytest.raises(ValidationError):
        RecordUsageRequest(tenant_id=a, entries=[])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"billed_amount": 0.04}, "not 0.04"),
        ({"units": D(-1)}, "greater than or equal"),
        ({"kind": "model_invocation"}, "billed_amount must be 0"),
        ({"internal_cost": D("0.01")}, "carry no internal_cost"),
        ({"kind": "refund"}, "kind"),
        ({"occurred_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"billed_amount": D("10000000000")}, "NUMERIC"),
    ],
)
def test_entry_validation(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _entry(uuid.uuid4(), "w#1", **extra)


def test_service_call_entries_keys_and_conventions() -> None:
    tenant = uuid.uuid4()
    cost = ModelCost(model_id="m", basis="unit_price", rate=D("0.004"), quantity=D(2),
                     amount=D("0.008"))  # fmt: skip
    per_request = ModelCost(model_id="n", basis="per_request", rate=D("0.5"), quantity=D(1),
                            amount=D("0.5"))  # fmt: skip
    entries = service_call_entries(
        tenant_id=str(tenant), workflow_id="job/s/o/r1", app_id="app", environment="dev",
        service_id="s", operation_id="o", unit="image", units=D(2), unit_price=D("0.02"),
        billed_amount=D("0.04"), model_costs=[cost, cost, per_request],
        served_by={"m": "radiant-app-dev-m"},
    )  # fmt: skip
    assert [e.idempotency_key for e in entries] == [
        "job/s/o/r1#charge", "job/s/o/r1#model/m", "job/s/o/r1#model/m/2", "job/s/o/r1#model/n",
    ]  # fmt: skip
    assert [e.kind for e in entries] == ["service_charge"] + ["model_invocation"] * 3
    assert sum(e.billed_amount for e in entries) == D("0.04")
    assert sum(e.internal_cost or 0 for e in entries) == D("0.516")
    assert entries[1].served_by == "radiant-app-dev-m" and entries[3].unit == "request"
    assert all(e.tenant_id == tenant for e in entries)
