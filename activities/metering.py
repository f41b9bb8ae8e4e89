"""Metering: write usage to the append-only ledger, exactly once per business event (DESIGN 6).

**Exactly once.** Temporal runs activities at least once: an activity can commit and then fail
to report completion (worker crash, timeout, network), and the retry runs it again. So every
ledger row carries an idempotency key built from *business* ids, `usage_key(workflow_id, step)`
= "{workflow id}#{step}", never the attempt number, run id or activity id (those change on
retry, reset and continue-as-new). `metering.record` inserts with
`ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING ...`: the retry inserts nothing
and reports the entries as already present. Jobs key their rows by the request, not by the
spelling of the workflow id (`job/{tenant}/{service}/{operation}/{request_id}`, where the tenant
may be a name or an id): `job_billing_id` = `job/{service}/{operation}/{request_id}` with the
tenant id as the ledger's own key column, so a request is charged once however it was started;
`jobs.plan` refuses a request that was already charged before any cost. LLM calls likewise:
`llm/{kind}/{request_id}` (activities/llm/ledger.py). And a claim this workflow already
completed (`ClaimLock.ALREADY_DONE`) means its rows are in: nothing is written, whatever the keys.

**One tenant per call, one transaction.** A request holds the entries of one tenant; they are
written in one `tenant_transaction` (row-level security: the worker's role can only insert and
see rows of the tenant set for the transaction), so a call's charge and its cost rows land
together or not at all.

**Charge only after the work finished.** The ledger is append-only (no UPDATE/DELETE grant, no
void). A job workflow therefore records its usage only after the model invocations succeeded
and the result is ready: a call that failed, was rejected or was cancelled before that point
has nothing to undo. (Workflow-level tests of this rule belong to the job workflow.)

**Row conventions** (what the reports rely on; enforced by `UsageEntry`):

- `service_charge`: one row per service call. billed_amount = service unit price x units
  (`pricing.service_charge`); `units`/`unit` are the billed units; internal_cost is NULL
  (the cost lives on the model rows, so sums never count it twice); model_id is NULL and the
  models used are listed in metadata.
- `model_invocation`: one row per model the call used: internal_cost = the model-level price
  (`pricing.model_cost`), billed_amount = 0 (the tenant is billed by the service charge).
- `llm_call`: an external/LLM call: billed_amount = provider cost x 1.40, internal_cost =
  provider cost, both on the one row.
- `endpoint_uptime`: not written by the platform. Endpoint uptime is GPU cost of an
  (app, environment, model), shared by every tenant the endpoint serves, not a tenant's usage;
  the margin report derives it from the `endpoint_uptime` intervals the thermal activities keep
  (`radiant usage margin`). The kind stays reserved for billing a tenant a dedicated endpoint.

So per group: billed = sum(billed_amount), internal = sum(internal_cost), and billed units =
sum(units) over rows that are not `model_invocation`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction
from activities.request_claims import ClaimLock, ClaimRef, lock_for_completion
from models_catalog.pricing import ModelCost, to_ledger

ERR_INVALID_USAGE = "InvalidUsage"
KEY_SEPARATOR = "#"
MAX_KEY_LENGTH = 512

UsageKind = Literal["model_invocation", "service_charge", "llm_call", "endpoint_uptime"]
BILLED_UNIT_KINDS = ("service_charge", "llm_call", "endpoint_uptime")  # not model_invocation

STEP_SERVICE_CHARGE = "charge"
# The unit a model_invocation row counts in, by cost basis (unit_price: the call's own unit).
_BASIS_UNIT = {"per_request": "request", "hourly": "hour"}


def usage_key(workflow_id: str, step: str) -> str:
    """The idempotency key of one usage event: "{workflow_id}#{step}".

    `workflow_id` is the business key of the workflow (not its run id); `step` names the event
    within it ("charge", "model/yolov8m", ...) and must not contain '#', so the key is
    unambiguous. Never put the attempt number in either.
    """
    # Used as given, never stripped: the request's claim key is the id as given, and "r" and
    # "r " are two requests, so stripping here let the second one's rows collide with the first.
    if not workflow_id.strip():
        raise ValueError("usage_key needs a workflow id")
    if not step.strip():
        raise ValueError("usage_key needs a step name")
    if KEY_SEPARATOR in step:
        raise ValueError(f"step names must not contain {KEY_SEPARATOR!r}: {step!r}")
    key = f"{workflow_id}{KEY_SEPARATOR}{step}"
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"usage key longer than {MAX_KEY_LENGTH} characters: {key[:60]}...")
    return key


# ----------------------------------------------------------------------------- entries


def _no_float(value: Any) -> Any:
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError(f"money and units must be decimal strings or Decimals, not {value!r}")
    return value


# Quantized to NUMERIC(20,10) on entry, so the value sent is exactly the value stored.
LedgerDecimal = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(ge=0, allow_inf_nan=False),
    AfterValidator(to_ledger),  # a PricingError (a ValueError) for what cannot fit
]


class UsageEntry(BaseModel):
    """One ledger row (column names as in `usage_ledger`)."""

    tenant_id: uuid.UUID
    idempotency_key: str = Field(min_length=3, max_length=MAX_KEY_LENGTH)
    kind: UsageKind
    app_id: str | None = None
    environment: str | None = None
    service_id: str | None = None
    operation_id: str | None = None
    model_id: str | None = None
    provider_id: str | None = None
    workflow_id: str | None = None
    units: LedgerDecimal
    unit: str = Field(min_length=1)
    unit_price: LedgerDecimal | None = None
    billed_amount: LedgerDecimal
    internal_cost: LedgerDecimal | None = None
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    served_by: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None  # None: the transaction time; workflows pass now()

    @model_validator(mode="after")
    def _conventions(self) -> UsageEntry:
        if self.kind == "model_invocation" and self.billed_amount != 0:
            raise ValueError(
                "model_invocation rows record internal cost only (billed_amount must be 0); "
                "the tenant is billed by the service_charge row"
            )
        if self.kind == "service_charge" and self.internal_cost not in (None, Decimal(0)):
            raise ValueError(
                "service_charge rows carry no internal_cost: record each model's cost on its "
                "model_invocation row, so margin sums never count it twice"
            )
        if self.occurred_at is not None and self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        return self


class RecordUsageRequest(BaseModel):
    """Entries of one tenant, written together in one transaction."""

    tenant_id: uuid.UUID
    entries: list[UsageEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_tenant_unique_keys(self) -> RecordUsageRequest:
        others = {e.tenant_id for e in self.entries} - {self.tenant_id}
        if others:
            raise ValueError(
                f"every entry must belong to tenant {self.tenant_id}; "
                f"got entries for {', '.join(sorted(map(str, others)))}"
            )
        keys = [e.idempotency_key for e in self.entries]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate idempotency keys in one request: {', '.join(dupes)}")
        return self


class RecordUsageResult(BaseModel):
    inserted: int  # rows this call wrote
    already_present: int  # entries an earlier attempt (or run) had already written
    inserted_keys: list[str] = Field(default_factory=list)
    superseded: bool = False  # the request's claim belongs to another workflow: nothing written


# ----------------------------------------------------------------------------- builders


def service_call_entries(
    *,
    tenant_id: uuid.UUID | str,
    workflow_id: str,
    key_id: str | None = None,
    app_id: str,
    environment: str,
    service_id: str,
    operation_id: str,
    unit: str,
    units: Decimal,
    unit_price: Decimal,
    billed_amount: Decimal,
    model_costs: list[ModelCost],
    served_by: dict[str, str] | None = None,
    occurred_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[UsageEntry]:
    """The ledger rows of one successful service call: its charge plus one cost row per model.

    Keys: "{key_id}#charge" and "{key_id}#model/{model_id}" ("/2", "/3", ... when a model was
    invoked more than once), stable across retries and replays. `key_id` names the business
    event (jobs: `job_billing_id(service, operation, request_id)`, so one request is charged
    once however its workflow id is spelled); None: the workflow id.
    """
    key_base = workflow_id if key_id is None else key_id
    common = usage_columns(
        tenant_id=tenant_id, workflow_id=workflow_id, app_id=app_id, environment=environment,
        service_id=service_id, operation_id=operation_id, occurred_at=occurred_at,
    )  # fmt: skip
    models_used = [c.model_id for c in model_costs]
    entries = [
        UsageEntry(
            **common,
            idempotency_key=usage_key(key_base, STEP_SERVICE_CHARGE),
            kind="service_charge",
            units=units,
            unit=unit,
            unit_price=unit_price,
            billed_amount=billed_amount,
            metadata={**(metadata or {}), "models_used": models_used},
        )
    ]
    return entries + model_cost_entries(
        common, key_base, model_costs, unit=unit, served_by=served_by
    )


def usage_columns(
    *,
    tenant_id: uuid.UUID | str,
    workflow_id: str,
    app_id: str,
    environment: str,
    service_id: str,
    operation_id: str,
    occurred_at: datetime | None,
) -> dict[str, Any]:
    """The columns every row of one service call shares (`model_cost_entries`' `common`)."""
    return {
        "tenant_id": uuid.UUID(str(tenant_id)), "app_id": app_id, "environment": environment,
        "service_id": service_id, "operation_id": operation_id, "workflow_id": workflow_id,
        "occurred_at": occurred_at,
    }  # fmt: skip


def model_cost_entries(
    common: dict[str, Any],
    key_base: str,
    model_costs: list[ModelCost],
    *,
    unit: str,
    served_by: dict[str, str] | None = None,
    step_prefix: str = "",
    metadata: dict[str, Any] | None = None,
) -> list[UsageEntry]:
    """One cost row per model invocation (billed 0), keyed "{key_base}#{step_prefix}model/{id}"
    ("/2", "/3", ... when a model was invoked more than once). `common`: the shared columns."""
    entries: list[UsageEntry] = []
    seen: dict[str, int] = {}
    for cost in model_costs:
        seen[cost.model_id] = seen.get(cost.model_id, 0) + 1
        n = seen[cost.model_id]
        step = f"{step_prefix}model/{cost.model_id}" + (f"/{n}" if n > 1 else "")
        entries.append(
            UsageEntry(
                **common,
                idempotency_key=usage_key(key_base, step),
                kind="model_invocation",
                model_id=cost.model_id,
                units=cost.quantity,
                unit=_BASIS_UNIT.get(cost.basis, unit),
                unit_price=cost.rate,
                billed_amount=Decimal(0),
                internal_cost=cost.amount,
                served_by=(served_by or {}).get(cost.model_id),
                metadata={"cost_basis": cost.basis, **(metadata or {})},
            )
        )
    return entries


# ----------------------------------------------------------------------------- activity


def _row(entry: UsageEntry) -> dict[str, Any]:
    row = entry.model_dump(exclude={"occurred_at"})
    # JSONB: as JSON values (a Decimal or datetime in the metadata failed json.dumps in the
    # driver, a TypeError retried forever and never written).
    row["metadata"] = entry.model_dump(mode="json", include={"metadata"})["metadata"]
    row["occurred_at"] = entry.occurred_at if entry.occurred_at is not None else func.now()
    return row


class MeteringActivities:
    """Ledger writes, on the worker's application-role engine (RLS applies)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name="metering.record")
    async def record(self, req: RecordUsageRequest) -> RecordUsageResult:
        """Insert the entries of one tenant; entries already recorded are left as they are."""
        return await self.record_for_claim(req, None)

    async def record_for_claim(
        self, req: RecordUsageRequest, claim: ClaimRef | None
    ) -> RecordUsageResult:
        """`record`, and, in the same transaction, complete the request's claim
        (activities/request_claims.py): a workflow taking the claim over waits for this
        transaction and then finds the request done. A claim another workflow took over
        meanwhile (this one was no longer running) records nothing: the request is that
        workflow's to run and charge, once."""
        stmt = (
            insert(usage_ledger)
            .values([_row(e) for e in req.entries])
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(usage_ledger.c.idempotency_key)
        )
        lock = ClaimLock.UNCLAIMED
        try:
            async with tenant_transaction(self.engine, req.tenant_id) as conn:
                if claim is not None:
                    lock = await lock_for_completion(conn, req.tenant_id, claim)
                write = lock in (ClaimLock.COMPLETING, ClaimLock.UNCLAIMED)
                inserted = list((await conn.execute(stmt)).scalars().all()) if write else []
        except IntegrityError as err:  # unknown tenant (FK), constraint violations
            raise ApplicationError(
                f"usage for tenant {req.tenant_id} rejected by the ledger: {_first_line(err)}",
                type=ERR_INVALID_USAGE,
                non_retryable=True,
            ) from None
        except (DataError, ProgrammingError) as err:  # out-of-range numbers, RLS WITH CHECK
            raise ApplicationError(
                f"usage for tenant {req.tenant_id} cannot be stored: {_first_line(err)}",
                type=ERR_INVALID_USAGE,
                non_retryable=True,
            ) from None
        result = RecordUsageResult(
            inserted=len(inserted),
            already_present=len(req.entries) - len(inserted),
            inserted_keys=inserted,
            superseded=lock is ClaimLock.SUPERSEDED,
        )
        activity.logger.info(
            "metering: tenant %s: %d inserted, %d already present%s",
            req.tenant_id, result.inserted, result.already_present,
            " (request taken over by another workflow)" if result.superseded else "",
        )  # fmt: skip
        return result


def _first_line(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(err).__name__
