"""Activities of the mid-level service jobs: plan (tenant, tier, service state, models), hold
models warm through their thermal workflows, invoke endpoints (sync or async), meter.

Invocation contract with the model containers (the real ones and the local stand-in): the body
is JSON `{"input_location": <path or s3 URI>, "content_type": ..., "options": {...}}`; the input
itself stays where the caller put it (inputs by reference), only its location travels.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from activities.backends.base import AsyncInvocation, BackendError, HostingBackend, endpoint_name
from activities.backends.errors import EndpointNotFound, ModelServerError, classify_exception
from activities.db.schema import usage_ledger
from activities.db.tenancy import tenant_transaction
from activities.heartbeat import with_heartbeat
from activities.metering import (
    STEP_SERVICE_CHARGE,
    MeteringActivities,
    RecordUsageRequest,
    UsageEntry,
    model_cost_entries,
    service_call_entries,
    usage_columns,
    usage_key,
)
from activities.request_claims import ClaimRef, claim_request
from activities.service_states import admin_disabled, load_admin_flags, load_thermal
from activities.temporal_errors import application_error, from_update_failure, rejection
from activities.tenants import UnknownTenantError, get_tenant_async
from activities.thermal_control import ThermalControl
from models_catalog import pricing
from models_catalog.catalog import Catalog
from models_catalog.errors import CatalogError
from models_catalog.operation_options import option_problem, optional_models_choice
from models_catalog.service_state import (
    ModelThermalRow,
    model_availability,
    service_status,
    uses_async_inference,
)
from models_catalog.types import ModelPricing, ServiceOperation, ServiceState, ThermalState
from workflows.service_types import (
    ERR_ALREADY_CHARGED,
    ERR_ALREADY_RUNNING,
    ERR_INVALID_INPUT,
    ERR_INVALID_REQUEST_ID,
    ERR_MODEL_UNAVAILABLE,
    ERR_SERVICE_UNAVAILABLE,
    ERR_TIER_TOO_LOW,
    ERR_UNKNOWN_OPERATION,
    ERR_UNKNOWN_SERVICE,
    ERR_UNKNOWN_TENANT,
    ServiceRequest,
    job_billing_id,
    request_id_problem,
)
from workflows.thermal_types import WarmUpRequest

ERR_RESULT_NOT_READY = "AsyncResultNotReady"
ENDPOINT_CHECK_POLLS = 12  # an async result poll checks its endpoint every this many polls
MODEL_SERVER_ATTEMPTS = 5  # tries of one input a model server answers 5xx before the call fails
ERR_METERING_FAILED = "MeteringFailed"  # usage that cannot be priced or keyed: retrying cannot help
FAST_PATH_MARGIN_S = 30.0  # take a lease by signal only if the model is not scaling in sooner
OUTPUT_INLINE_LIMIT = 128 * 1024  # larger outputs are stored and returned by reference


def _already_charged(
    request_id: str, tenant: str, service: str, operation: str, by: str, at: datetime
) -> ApplicationError:
    """The refusal of a request another job was charged for (found by ledger or claim)."""
    return _reject(
        f"request id {request_id} of tenant {tenant} was already charged for "
        f"{service}/{operation} by job {by} at {at.isoformat(timespec='seconds')}; its result "
        "is that job's result. Use a new request id to run it again",
        ERR_ALREADY_CHARGED,
    )


def _reject(message: str, kind: str) -> ApplicationError:
    return rejection(message, kind)  # BENIGN: a refusal, logged without a traceback


def _invoke_error(err: BackendError) -> ApplicationError:
    """A model server answering 5xx to the same input MODEL_SERVER_ATTEMPTS times fails the
    call; throttling, capacity and not-ready errors keep their retries (the job's retry policy
    has no attempt cap, so a burst of throttling cannot fail a job it already paid to warm)."""
    attempt = activity.info().attempt
    if isinstance(err, ModelServerError) and attempt >= MODEL_SERVER_ATTEMPTS:
        return ApplicationError(
            f"{err.message} (on {attempt} tries)", type=err.code, non_retryable=True
        )
    return application_error(err)


class PlanRequest(BaseModel):
    tenant: str
    app_id: str
    environment: str
    service: str
    operation: str
    optional_models: list[str] = Field(default_factory=list)
    # None: a plan scheduled before the workflow passed it; read from the job's start input.
    request_id: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # checked against the operation's


class PlannedStep(BaseModel):
    """One model invocation of the job, in order."""

    role: Literal["primary", "chained", "extra"]  # chained: once per item of the previous step
    model_id: str
    endpoint_name: str
    mode: Literal["sync", "async"] = "sync"
    # False: WARM/HOT and ready, in a short operation: the job just uses it.
    needs_hold: bool = True
    # An optional model replacing a required one: that required model, run instead when the
    # optional one cannot be held or its call fails (None: not a replacement, or older plans).
    fallback: PlannedStep | None = None


class JobPlan(BaseModel):
    tenant_id: str
    tenant_name: str
    tier: int
    service: str
    operation: str
    unit: str
    unit_price: Decimal
    long_running: bool
    content_types: list[str]
    steps: list[PlannedStep]
    degraded: bool = False
    degraded_reason: str | None = None
    poll_seconds: float = 5.0  # async results are polled this often (worker setting)
    backend: Literal["local", "sagemaker"] = "local"  # where inputs must live (path vs s3://)
    # Ledger keys are built from it (None in plans recorded before: keyed by the workflow id).
    request_id: str | None = None
    # The models' prices when planned, like unit_price: a deploy that reprices or removes a
    # model mid-job changes neither its cost rows nor their retry (empty in older plans: the
    # catalog's prices at metering).
    model_pricing: dict[str, ModelPricing] = Field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(s.model_id for s in self.steps))

    @property
    def optional_models(self) -> set[str]:
        """Models only extra steps use: the optional models the caller asked for on top of
        the required ones (one replacing a required model falls back to it instead)."""
        extra = {s.model_id for s in self.steps if s.role == "extra"}
        return extra - {s.model_id for s in self.steps if s.role != "extra"}


class AcquireRequest(BaseModel):
    app_id: str
    environment: str
    model_id: str
    lease_id: str
    requester: str
    verify: bool = False  # the endpoint was found missing: re-read the backend, warm again


class InvokeRequest(BaseModel):
    endpoint_name: str
    model_id: str
    input_location: str
    content_type: str
    options: dict[str, Any] = Field(default_factory=dict)
    step: str  # stable name of the step, for stored outputs
    task: str = ""  # the operation (one model may serve several, e.g. prithvi classify/floods)


class InvokeOutput(BaseModel):
    output: Any
    served_by: str


class MeterRequest(BaseModel):
    plan: JobPlan
    workflow_id: str
    app_id: str
    environment: str
    units: Decimal
    invocations: list[str]  # model ids, one per invocation, in order


class UnbilledCostsRequest(BaseModel):
    """The invocations of a job that ended without its charge (failed or cancelled after they
    ran): their cost is real, the tenant pays nothing for them."""

    plan: JobPlan
    workflow_id: str
    app_id: str
    environment: str
    units: Decimal
    invocations: list[str]  # model ids, one per finished invocation, in order
    outcome: Literal["failed", "cancelled"]


class MeterResult(BaseModel):
    billed: Decimal
    internal_cost: Decimal
    rows_inserted: int
    rows_already_present: int
    costs: dict[str, Decimal]  # per model


def _per_model(costs: list[pricing.ModelCost]) -> dict[str, Decimal]:
    """Each model's cost over its invocations."""
    per_model: dict[str, Decimal] = {}
    for c in costs:
        per_model[c.model_id] = per_model.get(c.model_id, Decimal(0)) + c.amount
    return per_model


class JobActivities:
    def __init__(
        self,
        catalog: Catalog,
        backend: HostingBackend,
        engine: AsyncEngine,
        control: ThermalControl,
        data_dir: Path,
        poll_seconds: float = 5.0,
        request_s3_uri: str | None = None,
        s3_client: Any = None,
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        self.engine = engine
        self.control = control
        self.data_dir = data_dir
        self.poll_seconds = poll_seconds
        # sagemaker backend: async request documents go to S3 (InvokeEndpointAsync reads S3)
        self.request_s3_uri = request_s3_uri
        self.s3 = s3_client
        self.metering = MeteringActivities(engine)

    # ------------------------------------------------------------------ plan
    @activity.defn(name="jobs.plan")
    async def plan(self, req: PlanRequest) -> JobPlan:
        """Everything that can reject the job, checked before any cost."""
        request_id = req.request_id
        if request_id is None:
            request_id = await self._started_request_id()
        if problem := request_id_problem(request_id):
            raise _reject(problem, ERR_INVALID_REQUEST_ID)
        self.control.apps.check(req.app_id, req.environment)  # AppNotServed
        try:
            service = self.catalog.service(req.service)
        except CatalogError as exc:
            raise _reject(str(exc), ERR_UNKNOWN_SERVICE) from None
        try:
            op = self.catalog.operation(service.id, req.operation)
        except CatalogError as exc:
            raise _reject(str(exc), ERR_UNKNOWN_OPERATION) from None
        if problem := option_problem(service.id, op, req.options):
            raise _reject(problem, ERR_INVALID_INPUT)
        async with self.engine.connect() as conn:  # one connection for the three reads
            try:
                tenant = await get_tenant_async(conn, req.tenant)
            except UnknownTenantError as exc:
                raise _reject(str(exc), ERR_UNKNOWN_TENANT) from None
            thermal = await load_thermal(conn, req.app_id, req.environment)
            flags = await load_admin_flags(conn, req.app_id, req.environment)
        await self._refuse_if_charged(str(tenant.id), tenant.name, service.id, op.id, request_id)
        disabled = admin_disabled(self.catalog, flags, service.id)
        status = service_status(self.catalog, service, thermal, disabled)
        if status.state in (ServiceState.DISABLED, ServiceState.OFFLINE):
            raise _reject(
                f"service {service.id} is {status.state.value} in {req.app_id}/{req.environment}: "
                f"{status.reason}",
                ERR_SERVICE_UNAVAILABLE,
            )
        for model_id in op.required_models:
            ok, why = model_availability(self.catalog, model_id, thermal)
            if not ok:
                raise _reject(
                    f"{service.id}/{op.id} needs {model_id}, which is unavailable: {why}",
                    ERR_MODEL_UNAVAILABLE,
                )

        steps, degraded = self._choose(op, req, thermal, tenant.tier)
        needed = max([service.min_tier] + [self.catalog.model(s.model_id).min_tier for s in steps])
        if tenant.tier < needed:
            raise _reject(
                f"tenant {tenant.name} is tier {tenant.tier}; {service.id}/{op.id} needs tier "
                f"{needed} or higher",
                ERR_TIER_TOO_LOW,
            )
        price = service.pricing.price_for(op.unit)
        assert price is not None  # the catalog validates that every operation has its price
        await self._claim(str(tenant.id), tenant.name, service.id, op.id, request_id)
        return JobPlan(
            tenant_id=str(tenant.id),
            tenant_name=tenant.name,
            tier=tenant.tier,
            service=service.id,
            operation=op.id,
            unit=op.unit,
            unit_price=price,
            long_running=op.long_running,
            content_types=list(op.content_types),
            steps=steps,
            degraded=bool(degraded),
            degraded_reason="; ".join(degraded) or None,
            poll_seconds=self.poll_seconds,
            backend="sagemaker"
            if getattr(self.backend, "kind", "local") == "sagemaker"
            else "local",
            request_id=request_id,
            model_pricing={
                m: self.catalog.model(m).pricing
                for s in steps
                for m in (s.model_id, *([s.fallback.model_id] if s.fallback else []))
            },
        )

    async def _started_request_id(self) -> str:
        """The request id in the running job's start input (plans scheduled by older code)."""
        info = activity.info()
        if info.workflow_id is None:
            raise RuntimeError("plan without request_id runs only inside a job workflow")
        client = self.control.client
        handle = client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        async for event in handle.fetch_history_events():  # the first event is the start
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [started] = await client.data_converter.decode(payloads, [ServiceRequest])
            return started.request_id
        raise RuntimeError(f"workflow {info.workflow_id} has no history")  # retried

    async def _claim(
        self, tenant_id: str, tenant_name: str, service: str, operation: str, request_id: str
    ) -> None:
        """Take the request for this job, or refuse it: another job (another workflow id for
        the same request) runs it or has been charged for it."""
        info = activity.info()
        conflict = await claim_request(
            self.engine,
            self.control.client,
            tenant_id,
            job_billing_id(service, operation, request_id),
            info.workflow_id or info.activity_id,
        )
        if conflict is None:
            return
        if conflict.completed_at is not None:
            raise _already_charged(
                request_id, tenant_name, service, operation, conflict.workflow_id,
                conflict.completed_at,
            )  # fmt: skip
        raise _reject(
            f"request id {request_id} of tenant {tenant_name} ({service}/{operation}) is being "
            f"run by job {conflict.workflow_id} (since "
            f"{conflict.claimed_at.isoformat(timespec='seconds')}); its result will be this "
            "request's result. Wait for it, or use a new request id",
            ERR_ALREADY_RUNNING,
        )

    async def _refuse_if_charged(
        self, tenant_id: str, tenant_name: str, service: str, operation: str, request_id: str
    ) -> None:
        """A request is charged once, whichever job (workflow id spelling, CLI start) ran it;
        a job whose request was already charged must not run its models again."""
        key = usage_key(job_billing_id(service, operation, request_id), STEP_SERVICE_CHARGE)
        row = await self._ledger_row(tenant_id, key)
        if row is not None:
            raise _already_charged(
                request_id, tenant_name, service, operation, row.workflow_id, row.occurred_at
            )

    def _choose(
        self,
        op: ServiceOperation,
        req: PlanRequest,
        thermal: dict[str, ModelThermalRow],
        tier: int,
    ) -> tuple[list[PlannedStep], list[str]]:
        """Required models, with an optional model the caller asked for either replacing the
        required model of the same specialty or running as an extra step; an unavailable one
        is skipped and the job says so (graceful degradation, DESIGN 5)."""
        required = op.required_models
        chosen = list(required)
        extras: list[str] = []
        degraded: list[str] = []
        replaced: dict[str, str] = {}  # optional model -> the required model it replaces
        # The rules the job client applies before it starts a workflow: each optional model
        # once (one charge pays for one run of it), none replacing a model another replaces.
        wanted, problem = optional_models_choice(self.catalog, req.service, op, req.optional_models)
        if problem is not None:
            raise _reject(problem, ERR_INVALID_INPUT)
        for model_id in wanted:
            model = self.catalog.model(model_id)
            ok, why = model_availability(self.catalog, model.id, thermal)
            if ok and model.min_tier > tier:
                ok, why = False, f"{model.id} needs tier {model.min_tier}"
            if not ok:
                degraded.append(f"{why}; ran on {', '.join(required)}")
                continue
            same = [
                i
                for i, m in enumerate(chosen)
                if self.catalog.model(m).specialty == model.specialty
            ]
            if same:
                replaced[model.id] = chosen[same[0]]
                chosen[same[0]] = model.id
            else:
                extras.append(model.id)
        roles: list[Literal["primary", "chained", "extra"]] = ["primary"]
        roles += ["chained"] * (len(chosen) - 1)
        roles += ["extra"] * len(extras)
        # A WARM/HOT model that is ready is used without a hold in a short operation (no
        # activity, no signal to the thermal workflow every job of the model shares: the
        # throughput benchmark's largest gain). A long-running operation holds it too: an
        # admin may turn it COLD mid-job (its idle window then starts), and only a lease keeps
        # it in under a call of minutes or hours.
        settled = {m for m, row in thermal.items() if row.warm_and_settled}

        def step(role: Literal["primary", "chained", "extra"], m: str) -> PlannedStep:
            return PlannedStep(
                role=role,
                model_id=m,
                endpoint_name=endpoint_name(req.app_id, req.environment, m),
                mode="async" if uses_async_inference(self.catalog, m) else "sync",
                needs_hold=op.long_running or m not in settled,
            )

        steps = []
        for role, m in zip(roles, chosen + extras, strict=True):
            planned = step(role, m)
            if (original := replaced.get(m)) and self.catalog.model(original).min_tier <= tier:
                planned.fallback = step(role, original)  # degrade to it, never fail for it
            steps.append(planned)
        return steps, degraded

    # ------------------------------------------------------------------ models
    @activity.defn(name="jobs.acquire_model")
    async def acquire_model(self, req: AcquireRequest) -> str:
        """Hold the model: warm it (a COLD model starts now; the job waits) with a lease that
        keeps it from scaling to zero until released. Returns how it was held."""
        hold = WarmUpRequest(
            requester=req.requester, lease_id=req.lease_id, verify_endpoint=req.verify
        )
        ready = None if req.verify else await self._ready_for_a_while(req)
        if ready is not None:
            # Fast path: ready and not about to scale in: a signal takes the lease without a
            # round trip through the thermal workflow (which every job of the model shares).
            # WARM/HOT too ("always"): idleness never scales them in, but an admin may turn
            # one COLD mid-job, and then only the lease keeps it in until the job releases it.
            from workflows.thermal import ModelThermalWorkflow

            handle = self.control.handle(req.app_id, req.environment, req.model_id)
            try:
                await handle.signal(ModelThermalWorkflow.lease, hold)
                return "leased"
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                # The mirror says ready but the model's workflow is gone (terminated by an
                # operator): the update below starts it again, and it adopts what runs.
                activity.logger.warning("thermal workflow of %s not found: %s", req.model_id, err)
        try:
            await with_heartbeat(
                self.control.warm_up(req.app_id, req.environment, req.model_id, hold), every=5.0
            )
        except WorkflowUpdateFailedError as err:  # e.g. turned OFF since the plan
            raise from_update_failure(err) from err
        return "warmed"

    async def _ready_for_a_while(self, req: AcquireRequest) -> str | None:
        """From the Postgres mirror (a query to the workflow would queue behind its tasks):
        ready, not transitioning, and not scaling in within the margin. The mirror's last
        activity can only be older than the workflow's, so the check errs on the safe side."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT target_state, current_state, instance_count, transitioning, "
                        "last_activity_at FROM thermal_states "
                        "WHERE app_id = :a AND environment = :e AND model_id = :m"
                    ),
                    {"a": req.app_id, "e": req.environment, "m": req.model_id},
                )
            ).first()
        if row is None or row[2] < 1 or row[3] or row[0] != row[1]:
            return None
        target = ThermalState(row[0])
        if target in (ThermalState.WARM, ThermalState.HOT):
            return "always"  # never scaled to zero by idleness
        if target != ThermalState.COLD or row[4] is None:
            return None  # AUTOMATIC decides from traffic it alone sees: ask it
        idle = self.control.timings.idle_seconds
        if idle is None:
            idle = self.catalog.model(req.model_id).thermal.scale_to_zero_after_minutes * 60.0
        deadline = row[4] + timedelta(seconds=idle)
        if deadline > datetime.now(UTC) + timedelta(seconds=FAST_PATH_MARGIN_S):
            return "for_a_while"
        return None

    # ------------------------------------------------------------------ invoke
    def _body(self, req: InvokeRequest) -> bytes:
        return json.dumps(
            {
                "input_location": req.input_location,
                "content_type": req.content_type,
                "options": req.options,
                "model_id": req.model_id,
                "task": req.task,
            }
        ).encode()

    def _output(self, raw: bytes, step: str) -> Any:
        """Small outputs travel in history; larger ones are stored and passed by reference."""
        if len(raw) > OUTPUT_INLINE_LIMIT:
            info = activity.info()
            out = (
                self.data_dir
                / "job_outputs"
                / hashlib.sha256((info.workflow_id or "").encode()).hexdigest()[:16]
            )
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{step}.json"
            path.write_bytes(raw)
            return {"output_ref": str(path), "size_bytes": len(raw)}
        try:
            return json.loads(raw)
        except ValueError:
            return {"raw": raw.decode("utf-8", "replace")}

    @activity.defn(name="jobs.invoke")
    async def invoke(self, req: InvokeRequest) -> InvokeOutput:
        try:
            result = await self.backend.invoke(
                req.endpoint_name, self._body(req), "application/json", "application/json"
            )
        except BackendError as err:
            raise _invoke_error(err) from err
        return InvokeOutput(output=self._output(result.body, req.step), served_by=req.endpoint_name)

    @activity.defn(name="jobs.start_async")
    async def start_async(self, req: InvokeRequest) -> AsyncInvocation:
        """Asynchronous inference: the request document goes next to the input; the endpoint
        queues it and writes the result to its output location.

        Not submitted twice by a retry: the invocation is recorded beside the request document
        as soon as the endpoint accepts it, and a retry of this activity (its completion lost,
        its worker gone) returns the recorded one instead of queueing a second inference."""
        info = activity.info()
        key = hashlib.sha256(f"{info.workflow_id}/{req.step}".encode()).hexdigest()[:20]
        # The record belongs to this activity's attempts only: a later start of the same step
        # (after a vanished endpoint, the workflow starts the call anew) or another run of the
        # workflow id (a failed request run again) must submit its own inference.
        scope = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}/{req.step}"
        record = f"{hashlib.sha256(scope.encode()).hexdigest()[:20]}.invocation.json"
        if info.attempt > 1 and (submitted := await self._recorded_invocation(record)):
            return submitted  # an earlier attempt's inference: it is queued or running
        location = await self._store_request(key, self._body(req))
        created_at = await self._created_at(req.endpoint_name)
        try:
            invocation = await self.backend.invoke_async(
                req.endpoint_name, location, "application/json"
            )
        except BackendError as err:
            raise _invoke_error(err) from err
        invocation = invocation.model_copy(
            update={"endpoint_name": req.endpoint_name, "endpoint_created_at": created_at}
        )
        try:
            await self._store(record, invocation.model_dump_json().encode())
        except Exception as exc:  # best effort: the inference runs, the job can use it
            activity.logger.warning(
                "async inference %s not recorded (a retry would submit it again): %s",
                invocation.inference_id,
                exc,
            )
        return invocation

    async def _recorded_invocation(self, name: str) -> AsyncInvocation | None:
        """The invocation an earlier attempt recorded, if any. Unreadable: None (the inference
        is submitted again, as before records existed), unless S3 may answer on a retry."""
        try:
            raw = await self._load(name)
            return None if raw is None else AsyncInvocation.model_validate_json(raw)
        except ApplicationError:
            raise
        except Exception as exc:
            activity.logger.warning("recorded async invocation %s unreadable: %s", name, exc)
            return None

    async def _store_request(self, key: str, body: bytes) -> str:
        """Where the endpoint reads the request: S3 on SageMaker, a spool file locally. The key
        derives from the workflow and step, so a retry overwrites the same object."""
        return await self._store(f"{key}.json", body)

    def _request_prefix(self) -> tuple[str, str]:
        """(bucket, key prefix) of the SageMaker request documents."""
        if not (self.request_s3_uri and self.s3 is not None):
            raise _reject(
                "asynchronous inference on SageMaker needs RADIANT_INPUT_SPOOL_S3_URI or "
                "RADIANT_ASYNC_OUTPUT_S3_URI (an s3:// prefix for request documents)",
                "MisconfiguredWorker",
            )
        bucket, _, prefix = self.request_s3_uri.removeprefix("s3://").partition("/")
        return bucket, f"{prefix.rstrip('/')}/async-requests/".lstrip("/")

    async def _store(self, name: str, body: bytes) -> str:
        """`body` as `name` among the request documents; returns its location."""
        if getattr(self.backend, "kind", "local") == "sagemaker":
            bucket, prefix = self._request_prefix()
            object_key = f"{prefix}{name}"
            put = functools.partial(
                self.s3.put_object,
                Bucket=bucket,
                Key=object_key,
                Body=body,
                ContentType="application/json",
            )
            try:
                await asyncio.to_thread(put)
            except Exception as exc:
                # Classified like every backend call: a missing bucket or a denied PutObject
                # fails the job, instead of retrying forever while it holds its warm model.
                err = classify_exception(exc)
                if err is None:
                    raise
                raise _invoke_error(err) from exc
            return f"s3://{bucket}/{object_key}"
        spool = self.data_dir / "async_requests"
        spool.mkdir(parents=True, exist_ok=True)
        path = spool / name
        partial = path.with_name(f".{name}.{uuid.uuid4().hex[:8]}")
        partial.write_bytes(body)
        partial.replace(path)  # whole or absent: a reader never sees half a document
        return str(path)

    async def _load(self, name: str) -> bytes | None:
        """What `_store` stored as `name`; None if nothing is. A retryable S3 failure raises
        (the activity's retry reads again); another is raised as is."""
        if getattr(self.backend, "kind", "local") == "sagemaker":
            bucket, prefix = self._request_prefix()

            def get() -> bytes:
                return self.s3.get_object(Bucket=bucket, Key=f"{prefix}{name}")["Body"].read()

            try:
                return await asyncio.to_thread(get)
            except Exception as exc:
                err = classify_exception(exc)
                if err is None:
                    raise
                if err.aws_code in ("NoSuchKey", "404", "NotFound"):
                    return None
                if err.retryable:
                    raise application_error(err) from exc
                raise
        try:
            return (self.data_dir / "async_requests" / name).read_bytes()
        except FileNotFoundError:
            return None

    @activity.defn(name="jobs.fetch_async")
    async def fetch_async(self, inv: AsyncInvocation) -> InvokeOutput:
        """One poll; not ready -> a benign retryable error (the retry policy is the poll loop,
        so a long fold holds no worker slot while it runs)."""
        try:
            raw = await self.backend.fetch_async_result(inv)
        except BackendError as err:
            raise application_error(err) from err
        if raw is None:
            if inv.endpoint_name and activity.info().attempt % ENDPOINT_CHECK_POLLS == 0:
                raw = await self._unless_gone(inv, inv.endpoint_name)
        if raw is None:
            raise ApplicationError(
                f"result {inv.inference_id} not ready",
                type=ERR_RESULT_NOT_READY,
                category=ApplicationErrorCategory.BENIGN,
            )
        return InvokeOutput(
            output=self._output(raw, f"async-{inv.inference_id}"), served_by=inv.output_location
        )

    async def _created_at(self, name: str) -> datetime | None:
        """The endpoint's creation time (which incarnation of the name takes the inference);
        None when it cannot be told: the polls then check only that the name exists."""
        try:
            info = await self.backend.describe_endpoint(name)
        except BackendError as err:
            activity.logger.warning("endpoint %s not described: %s", name, err.message)
            return None
        return info.created_at if info is not None else None

    async def _unless_gone(self, inv: AsyncInvocation, name: str) -> bytes | None:
        """Raise the job's "endpoint gone" error (it warms the model again, or reports why it
        cannot, e.g. turned OFF) if the endpoint was deleted, Failed or created anew (another
        endpoint of that name never saw the inference) while its result was awaited:
        otherwise the job would wait out the whole async deadline (12 h) for a lost result. A
        result (or failure) written while it went is read once more first."""
        try:
            info = await self.backend.describe_endpoint(name)
        except BackendError as err:  # unknown: the next check tells
            activity.logger.warning("endpoint %s not described: %s", name, err.message)
            return None
        recreated = (
            info is not None
            and inv.endpoint_created_at is not None
            and info.created_at != inv.endpoint_created_at
        )
        if info is not None and info.status != "Failed" and not recreated:
            return None  # still there (a Deleting one may still drain its jobs into results)
        try:
            raw = await self.backend.fetch_async_result(inv)
        except BackendError as err:
            raise application_error(err) from err
        if raw is None:
            what = "recreated" if recreated else "deleted" if info is None else info.status
            raise ApplicationError(
                f"endpoint {name} was {what} while async inference {inv.inference_id} waited "
                "for its result: it will not come",
                type=EndpointNotFound.CODE,
                non_retryable=True,
            )
        return raw

    # ------------------------------------------------------------------ meter
    @activity.defn(name="jobs.meter")
    async def meter(self, req: MeterRequest) -> MeterResult:
        """The service charge and one cost row per model invocation, exactly once."""
        plan = req.plan
        try:
            charge, costs, entries = self._usage(req)
        except (ValueError, CatalogError) as exc:
            # Nothing a retry could change (an unpriceable amount, a key too long): fail the
            # job with the reason instead of retrying forever.
            raise _reject(
                f"usage of job {req.workflow_id} cannot be metered: {exc}", ERR_METERING_FAILED
            ) from None
        claim = (
            ClaimRef(job_billing_id(plan.service, plan.operation, plan.request_id), req.workflow_id)
            if plan.request_id is not None
            else None  # planned before request ids (and claims)
        )
        result = await self.metering.record_for_claim(
            RecordUsageRequest(tenant_id=uuid.UUID(plan.tenant_id), entries=entries), claim
        )
        billed = charge.amount
        charge_key = entries[0].idempotency_key  # service_call_entries puts the charge first
        if result.superseded:
            billed = Decimal(0)  # another job took the request over: it runs and charges it
        elif charge_key not in result.inserted_keys:
            # Already there: this job's own earlier attempt, or another job for the same
            # request that ran at the same time (e.g. the tenant spelled by id, not name):
            # that one was billed, so this one reports nothing billed.
            row = await self._ledger_row(plan.tenant_id, charge_key)
            if row is not None and row.workflow_id != req.workflow_id:
                billed = Decimal(0)
        return MeterResult(
            billed=billed,
            internal_cost=sum((c.amount for c in costs), Decimal(0)),
            rows_inserted=result.inserted,
            rows_already_present=result.already_present,
            costs=_per_model(costs),
        )

    @activity.defn(name="jobs.record_unbilled_costs")
    async def record_unbilled_costs(self, req: UnbilledCostsRequest) -> MeterResult:
        """One cost row (billed 0) per invocation of a job that will not be charged, keyed by
        the request and this run: exactly once per run, and a later run of the request (its
        claim was never completed) records its own."""
        plan = req.plan
        try:
            costs = self._model_costs(plan, req.units, req.invocations)
            common = usage_columns(
                tenant_id=plan.tenant_id, workflow_id=req.workflow_id, app_id=req.app_id,
                environment=req.environment, service_id=plan.service,
                operation_id=plan.operation, occurred_at=datetime.now(UTC),
            )  # fmt: skip
            entries = model_cost_entries(
                common, self._key_id(plan, req.workflow_id), costs, unit=plan.unit,
                step_prefix=f"unbilled/{activity.info().workflow_run_id}/",
                metadata={"outcome": req.outcome},
            )  # fmt: skip
        except (ValueError, CatalogError) as exc:
            raise _reject(
                f"costs of job {req.workflow_id} cannot be recorded: {exc}", ERR_METERING_FAILED
            ) from None
        result = await self.metering.record_for_claim(
            RecordUsageRequest(tenant_id=uuid.UUID(plan.tenant_id), entries=entries), None
        )
        return MeterResult(
            billed=Decimal(0),
            internal_cost=sum((c.amount for c in costs), Decimal(0)),
            rows_inserted=result.inserted,
            rows_already_present=result.already_present,
            costs=_per_model(costs),
        )

    def _model_costs(
        self, plan: JobPlan, units: Decimal, invocations: list[str]
    ) -> list[pricing.ModelCost]:
        """One cost per invocation, at the prices the plan was made with."""
        return [
            pricing.model_cost_at(
                m, plan.model_pricing.get(m) or self.catalog.model(m).pricing, plan.unit, units
            )
            for m in invocations
        ]

    @staticmethod
    def _key_id(plan: JobPlan, workflow_id: str) -> str:
        """Keyed by the request, not the workflow id's spelling of it: one charge per request."""
        if plan.request_id is None:
            return workflow_id  # planned before request ids
        return job_billing_id(plan.service, plan.operation, plan.request_id)

    async def _ledger_row(self, tenant_id: str, key: str) -> Row[Any, Any] | None:
        """(workflow_id, occurred_at) of the tenant's ledger row with this key, if any."""
        async with tenant_transaction(self.engine, tenant_id) as conn:
            return (
                await conn.execute(
                    select(usage_ledger.c.workflow_id, usage_ledger.c.occurred_at).where(
                        usage_ledger.c.tenant_id == uuid.UUID(tenant_id),
                        usage_ledger.c.idempotency_key == key,
                    )
                )
            ).first()

    def _usage(
        self, req: MeterRequest
    ) -> tuple[pricing.Charge, list[pricing.ModelCost], list[UsageEntry]]:
        """The charge, the model costs and the ledger rows of a finished job."""
        plan = req.plan
        # The price the plan quoted, not today's catalog: a deploy that changes prices while a
        # job runs (or between a committed attempt and its retry) does not change its charge.
        charge = pricing.charge_at(plan.unit, plan.unit_price, req.units)
        costs = self._model_costs(plan, req.units, req.invocations)
        entries = service_call_entries(
            tenant_id=uuid.UUID(plan.tenant_id),
            workflow_id=req.workflow_id,
            key_id=self._key_id(plan, req.workflow_id),
            app_id=req.app_id,
            environment=req.environment,
            service_id=plan.service,
            operation_id=plan.operation,
            unit=plan.unit,
            units=req.units,
            unit_price=charge.unit_price,
            billed_amount=charge.amount,
            model_costs=costs,
            occurred_at=datetime.now(UTC),
            metadata=_what_ran(plan, req.invocations),
        )
        return charge, costs, entries


def _what_ran(plan: JobPlan, invocations: list[str]) -> dict[str, Any]:
    """The charge row's account of the job as it ran, not as planned: the models invoked, in
    order, and whether it was degraded (by the plan, or by an optional model dropped since:
    one that could not be held or failed, and so was never invoked, or ran on the required
    model it was to replace)."""
    ran = list(dict.fromkeys(invocations))
    # Optional models: extras, and replacements (which fell back to the model they replaced).
    optional = plan.optional_models | {s.model_id for s in plan.steps if s.fallback}
    # A replacement whose required model ran instead, after some calls of its own (analyze's
    # segmenter failing on a later box): dropped too, as the job's result says.
    fell_back = {
        s.model_id
        for s in plan.steps
        if s.fallback and s.fallback.model_id in ran and s.fallback.model_id not in plan.models
    }
    dropped = [m for m in plan.models if m in optional and (m not in ran or m in fell_back)]
    metadata: dict[str, Any] = {"degraded": plan.degraded or bool(dropped), "models": ran}
    if dropped:
        metadata["dropped"] = dropped
    return metadata
