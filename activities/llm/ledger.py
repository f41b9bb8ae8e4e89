"""The usage-ledger row of one LLM call, through the shared metering writer.

`activities.metering` owns the ledger rules (DESIGN 6): key "llm/{kind}/{request id}#{step}"
from business ids (the request's claim key), `ON CONFLICT DO NOTHING` inside a tenant
transaction, the `llm_call` row convention (billed_amount = provider cost x 1.40 and
internal_cost = provider cost on one row). The LLM
workflow's own `llm.meter` activity builds the entry and delegates to it, so the worker does not
need a second registration of `metering.record` (one name, one activity per worker).

A call that ran but will not be charged (the request was cancelled while the provider answered)
is recorded by the same activity (`MeterInput.unbilled`): its provider cost as internal_cost,
billed_amount 0 and units 0 (nothing billed, so no billed units), outcome in the metadata, key
"llm/{kind}/{request id}#unbilled/{run id}/{step}" (as a job's unbilled model costs: once per
run, and a later run of the request records its own), and the request's claim is NOT completed,
so the request may run again and be charged then.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.llm.types import MeterInput, MeterResult
from activities.metering import MeteringActivities, RecordUsageRequest, UsageEntry, usage_key
from activities.request_claims import ClaimRef, llm_request_key


def usage_entry(inp: MeterInput) -> UsageEntry:
    r, cost = inp.result, inp.result.cost
    return UsageEntry(
        tenant_id=uuid.UUID(inp.tenant_id),
        # The request, not the workflow id: a workflow id reused for another request (started
        # by hand) is another call to charge. Like a job's key (job_billing_id).
        idempotency_key=usage_key(llm_request_key(inp.kind, inp.request_id), inp.step),
        kind="llm_call",
        app_id=inp.app_id,
        environment=inp.environment,
        model_id=r.model_id,
        provider_id=r.provider_id,
        workflow_id=inp.workflow_id,
        units=cost.units,
        unit=cost.unit,
        unit_price=cost.unit_price,
        billed_amount=cost.billed,
        internal_cost=cost.internal_cost,
        # every prompt token: plain input, cache reads and cache writes (the split is below)
        input_tokens=r.usage.input_tokens
        + r.usage.cached_input_tokens
        + r.usage.cache_write_input_tokens,
        output_tokens=r.usage.output_tokens,
        served_by=r.served_by,
        metadata={
            "request_id": inp.request_id,
            "call": inp.kind,
            "hosting": r.hosting,
            "requested_model": inp.requested_model,
            "fallback_used": r.fallback_used,
            "cached_input_tokens": r.usage.cached_input_tokens,
            "cache_write_input_tokens": r.usage.cache_write_input_tokens,
            "cache_write_1h_input_tokens": r.usage.cache_write_1h_input_tokens,
            "usage_estimated": r.usage.estimated,
            "markup": str(cost.markup),
            "litellm_cost": str(cost.litellm_cost) if cost.litellm_cost is not None else None,
            "latency_ms": r.latency_ms,
        },
    )


async def record_llm_usage(engine: AsyncEngine, inp: MeterInput) -> MeterResult:
    """Call from inside an activity (the metering writer logs through the activity logger)."""
    entry = usage_entry(inp)
    # Completes the request's claim in the same transaction (activities/request_claims.py).
    claim = ClaimRef(llm_request_key(inp.kind, inp.request_id), inp.workflow_id)
    result = await MeteringActivities(engine).record_for_claim(
        RecordUsageRequest(tenant_id=entry.tenant_id, entries=[entry]), claim
    )
    return MeterResult(
        idempotency_key=entry.idempotency_key,
        inserted=result.inserted == 1,
        superseded=result.superseded,
    )


def unbilled_entry(inp: MeterInput, run_id: str) -> UsageEntry:
    """The cost row (billed 0) of a call that will not be charged, keyed by the request and
    this run (`activity.info().workflow_run_id`), never the attempt."""
    if inp.unbilled is None:
        raise ValueError("an unbilled entry needs the call's outcome")
    if not run_id.strip():
        raise ValueError("an unbilled entry is keyed by the workflow's run id; none was given")
    entry = usage_entry(inp)
    cost = inp.result.cost
    return UsageEntry.model_validate(
        {
            **entry.model_dump(),
            "idempotency_key": usage_key(
                llm_request_key(inp.kind, inp.request_id), f"unbilled/{run_id}/{inp.step}"
            ),
            "units": Decimal(0),
            "unit_price": None,
            "billed_amount": Decimal(0),
            "metadata": {
                **entry.metadata,
                "outcome": inp.unbilled,
                # what the call counted (the row bills nothing, so counts no billed units)
                "call_units": str(cost.units),
                "call_unit_price": str(cost.unit_price) if cost.unit_price is not None else None,
            },
        }
    )


async def record_unbilled_llm_call(
    engine: AsyncEngine, inp: MeterInput, run_id: str
) -> MeterResult:
    """Call from inside an activity. Leaves the request's claim as it is (not completed)."""
    entry = unbilled_entry(inp, run_id)
    result = await MeteringActivities(engine).record_for_claim(
        RecordUsageRequest(tenant_id=entry.tenant_id, entries=[entry]), None
    )
    return MeterResult(idempotency_key=entry.idempotency_key, inserted=result.inserted == 1)
