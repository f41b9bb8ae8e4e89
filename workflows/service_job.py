"""ServiceJobWorkflow: one durable job of a mid-level service (all 16 operations, typed by
service and operation).

Order: plan (tenant, tier, service state, models) -> validate the input -> hold the models warm
(COLD models warm up while the job waits; never failed for being cold) -> invoke (sync, or async
inference polled without holding a worker slot) -> meter exactly once -> result. Everything
that can reject a job happens before the first cost: the warm-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.inputs.activity import InputActivities, ValidateRequest
    from activities.job_activities import (
        AcquireRequest,
        InvokeOutput,
        InvokeRequest,
        JobActivities,
        JobPlan,
        MeterRequest,
        PlannedStep,
        PlanRequest,
    )
    from workflows import search_attributes as sa
    from workflows.service_types import ModelCall, ServiceRequest, ServiceResult, ValidatedInput
    from workflows.thermal import ModelThermalWorkflow
    from workflows.thermal_types import ReleaseRequest, thermal_workflow_id

T = TypeVar("T")
QUICK = timedelta(seconds=60)
NO_RETRY_ON_REJECT = RetryPolicy(maximum_interval=timedelta(seconds=30))
INVOKE_TIMEOUT = timedelta(minutes=10)
WARMUP_TIMEOUT = timedelta(hours=1)  # an endpoint can sit in Creating for 35+ minutes
ASYNC_DEADLINE = timedelta(hours=12)
ANALYZE_MAX_DETECTIONS = 5
ENDPOINT_GONE = frozenset(
    {"EndpointNotFound", "ResourceNotFound"}
)  # perception/analyze segments at most this many detections


async def _rejecting(call: Awaitable[T]) -> T:
    """A rejection raised by an activity fails the job with the activity's own message and
    type (the caller sees "tenant x is tier 3 ...", not "activity task failed")."""
    try:
        return await call
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from None
        raise


@workflow.defn
class ServiceJobWorkflow:
    def __init__(self) -> None:
        self.stage = "queued"
        self.detail: str | None = None

    @workflow.query
    def progress(self) -> dict[str, Any]:
        return {"stage": self.stage, "detail": self.detail}

    def _set(self, stage: str, detail: str | None = None) -> None:
        self.stage, self.detail = stage, detail

    @workflow.run
    async def run(self, req: ServiceRequest) -> ServiceResult:
        info = workflow.info()
        present = info.typed_search_attributes
        missing = [
            pair.key.value_set(pair.value)
            for pair in sa.job_search_attributes(req)
            if present.get(pair.key) != pair.value
        ]
        if missing:  # started without them (e.g. plain JSON from the Temporal CLI)
            workflow.upsert_search_attributes(missing)
        self._set("planning")
        plan = await _rejecting(
            workflow.execute_activity_method(
                JobActivities.plan,
                PlanRequest(
                    tenant=req.tenant,
                    app_id=req.app_id,
                    environment=req.environment,
                    service=req.service,
                    operation=req.operation,
                    optional_models=req.optional_models,
                ),
                start_to_close_timeout=QUICK,
                retry_policy=NO_RETRY_ON_REJECT,
            )
        )
        workflow.upsert_search_attributes([sa.MODEL.value_set(plan.steps[0].model_id)])
        self._set("validating input")
        validated = await _rejecting(
            workflow.execute_activity_method(
                InputActivities.validate,
                ValidateRequest(
                    input=req.input,
                    service=plan.service,
                    operation=plan.operation,
                    content_types=plan.content_types,
                    unit=plan.unit,
                    backend=plan.backend,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=NO_RETRY_ON_REJECT,
            )
        )

        leases = {
            m: AcquireRequest(
                app_id=req.app_id,
                environment=req.environment,
                model_id=m,
                lease_id=f"{info.workflow_id}/{m}",
                requester=info.workflow_id,
            )
            for m in plan.models
            if any(step.needs_hold for step in plan.steps if step.model_id == m)
        }
        try:
            self._set("waiting for warm-up", ", ".join(plan.models))
            holds = await asyncio.gather(
                *(
                    _rejecting(
                        workflow.execute_activity_method(
                            JobActivities.acquire_model,
                            lease,
                            start_to_close_timeout=WARMUP_TIMEOUT,
                            heartbeat_timeout=timedelta(seconds=30),
                            retry_policy=NO_RETRY_ON_REJECT,
                        )
                    )
                    for lease in leases.values()
                )
            )
            # WARM/HOT models are held without a lease: nothing to release for them.
            leases = {
                m: lease
                for (m, lease), how in zip(leases.items(), holds, strict=True)
                if how != "unleased"
            }
            calls = await self._invoke_all(req, plan, validated)
        finally:
            # Release even when cancelled or failed: the models may scale to zero again. A
            # signal from the workflow itself: no activity round trip.
            await asyncio.gather(
                *(
                    workflow.get_external_workflow_handle(
                        thermal_workflow_id(lease.app_id, lease.environment, lease.model_id)
                    ).signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease.lease_id))
                    for lease in leases.values()
                )
            )

        # Charged only now, after every invocation succeeded: a cancelled or failed job
        # pays nothing for work that did not finish.
        self._set("metering")
        metered = await workflow.execute_activity_method(
            JobActivities.meter,
            MeterRequest(
                plan=plan,
                workflow_id=info.workflow_id,
                app_id=req.app_id,
                environment=req.environment,
                units=validated.units,
                invocations=[c.model_id for c in calls],
            ),
            start_to_close_timeout=QUICK,
        )
        for call in calls:
            call.internal_cost = metered.costs.get(call.model_id, Decimal(0))
        self._set("done")
        return ServiceResult(
            request_id=req.request_id,
            workflow_id=info.workflow_id,
            service=plan.service,
            operation=plan.operation,
            tenant_id=plan.tenant_id,
            models_used=plan.models,
            degraded=plan.degraded,
            degraded_reason=plan.degraded_reason,
            output=self._combine(plan, calls),
            units=validated.units,
            unit=plan.unit,
            billed=metered.billed,
            internal_cost=metered.internal_cost,
            calls=calls,
        )

    # ------------------------------------------------------------------ invocation
    async def _invoke_all(
        self, req: ServiceRequest, plan: JobPlan, validated: ValidatedInput
    ) -> list[ModelCall]:
        calls: list[ModelCall] = []
        previous: Any = None
        for index, step in enumerate(plan.steps):
            if step.role == "chained" and plan.operation == "analyze":
                # perception/analyze: segment each detection of the detector's output.
                boxes = [d.get("box") for d in (previous or {}).get("detections", [])]
                for n, box in enumerate(boxes[:ANALYZE_MAX_DETECTIONS]):
                    out = await self._invoke(
                        req, plan, step, validated, {**req.options, "box": box}, f"{index}-{n}"
                    )
                    calls.append(self._call(step, out, plan))
                continue
            options = dict(req.options)
            if previous is not None and step.role != "primary":
                options["previous_output"] = previous
            out = await self._invoke(req, plan, step, validated, options, str(index))
            calls.append(self._call(step, out, plan))
            if step.role == "primary":
                previous = out.output
        return calls

    def _call(self, step: PlannedStep, out: InvokeOutput, plan: JobPlan) -> ModelCall:
        return ModelCall(
            model_id=step.model_id,
            endpoint_name=step.endpoint_name,
            mode=step.mode,
            output=out.output,
            units=Decimal(0),
            internal_cost=Decimal(0),
        )

    async def _invoke(
        self,
        req: ServiceRequest,
        plan: JobPlan,
        step: PlannedStep,
        validated: ValidatedInput,
        options: dict[str, Any],
        name: str,
    ) -> InvokeOutput:
        self._set("invoking", f"{step.model_id} ({step.mode})")
        call = InvokeRequest(
            endpoint_name=step.endpoint_name,
            model_id=step.model_id,
            input_location=validated.location,
            content_type=validated.content_type,
            options=options,
            step=f"step-{name}-{step.model_id}",
            task=plan.operation,
        )
        for attempt in (1, 2):
            try:
                return await self._call_model(plan, step, call)
            except ActivityError as err:
                cause = err.cause
                gone = isinstance(cause, ApplicationError) and cause.type in ENDPOINT_GONE
                if gone and attempt == 1:
                    # The endpoint vanished (drift the reconcile has not repaired yet): have the
                    # thermal workflow re-read the backend and warm it again, then retry once.
                    self._set("waiting for warm-up", f"{step.model_id} (endpoint was gone)")
                    await _rejecting(
                        workflow.execute_activity_method(
                            JobActivities.acquire_model,
                            AcquireRequest(
                                app_id=req.app_id,
                                environment=req.environment,
                                model_id=step.model_id,
                                lease_id=f"{workflow.info().workflow_id}/{step.model_id}",
                                requester=workflow.info().workflow_id,
                                verify=True,
                            ),
                            start_to_close_timeout=WARMUP_TIMEOUT,
                            heartbeat_timeout=timedelta(seconds=30),
                            retry_policy=NO_RETRY_ON_REJECT,
                        )
                    )
                    continue
                why = cause.message if isinstance(cause, ApplicationError) else str(err)
                raise ApplicationError(
                    f"{step.model_id} failed on {step.endpoint_name}: {why}",
                    type="InvocationFailed",
                    non_retryable=True,
                ) from None
        raise AssertionError("unreachable")

    async def _call_model(
        self, plan: JobPlan, step: PlannedStep, call: InvokeRequest
    ) -> InvokeOutput:
        if step.mode == "sync":
            return await workflow.execute_activity_method(
                JobActivities.invoke, call, start_to_close_timeout=INVOKE_TIMEOUT
            )
        invocation = await workflow.execute_activity_method(
            JobActivities.start_async, call, start_to_close_timeout=QUICK
        )
        poll = timedelta(seconds=plan.poll_seconds)
        return await workflow.execute_activity_method(
            JobActivities.fetch_async,
            invocation,
            start_to_close_timeout=QUICK,
            schedule_to_close_timeout=ASYNC_DEADLINE,
            retry_policy=RetryPolicy(
                initial_interval=poll, backoff_coefficient=1.0, maximum_interval=poll
            ),
        )

    def _combine(self, plan: JobPlan, calls: list[ModelCall]) -> Any:
        """The job's answer: the primary output, with chained and extra outputs attached."""
        if not calls:
            return None
        primary = calls[0].output
        rest = calls[1:]
        if not rest:
            return primary
        return {
            "primary": primary,
            "steps": [{"model_id": c.model_id, "output": c.output} for c in rest],
        }
