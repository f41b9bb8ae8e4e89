"""ServiceJobWorkflow: one durable job of a mid-level service (all 16 operations, typed by
service and operation).

Order: plan (tenant, tier, service state, models) -> validate the input -> hold the models warm
(COLD models warm up while the job waits; never failed for being cold) -> invoke (sync, or async
inference polled without holding a worker slot) -> meter exactly once -> result. Everything
that can reject a job happens before the first cost: the warm-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as StepTimeout  # not the builtin TimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.inputs.activity import InputActivities, ValidateRequest
    from activities.inputs.limits import BEFORE_OPTION
    from activities.job_activities import (
        AcquireRequest,
        InvokeOutput,
        InvokeRequest,
        JobActivities,
        JobPlan,
        MeterRequest,
        PlannedStep,
        PlanRequest,
        UnbilledCostsRequest,
    )
    from workflows import search_attributes as sa
    from workflows.service_types import ModelCall, ServiceRequest, ServiceResult, ValidatedInput
    from workflows.thermal import ModelThermalWorkflow
    from workflows.thermal_types import ReleaseRequest, WarmUpRequest, thermal_workflow_id
    from workflows.uncancellable import finish_despite_cancel

T = TypeVar("T")
QUICK = timedelta(seconds=60)
NO_RETRY_ON_REJECT = RetryPolicy(maximum_interval=timedelta(seconds=30))
INVOKE_TIMEOUT = timedelta(minutes=10)
WARMUP_TIMEOUT = timedelta(hours=1)  # an endpoint can sit in Creating for 35+ minutes
ASYNC_DEADLINE = timedelta(hours=12)
ANALYZE_MAX_DETECTIONS = 5  # perception/analyze segments at most this many detections
ENDPOINT_GONE = frozenset({"EndpointNotFound", "ResourceNotFound"})
# A job can outlive the lease its warm-up took (1 h warm-up + 12 h async): it renews its
# leases while it runs, each renewal good for several periods (a late workflow task is fine).
LEASE_RENEW_EVERY = timedelta(minutes=10)
LEASE_SECONDS = 1800.0
# No attempt cap: throttling and not-ready endpoints retry; a model server answering 5xx to
# the same input fails the call after a few tries (jobs.invoke, MODEL_SERVER_ATTEMPTS).
INVOKE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# ...but within a budget: an endpoint that keeps answering "unavailable" or "throttled" fails
# the call (an optional model is then dropped) instead of holding its models warm forever.
# Timeouts are not part of replay: changing them needs no patch.
INVOKE_BUDGET = timedelta(minutes=30)
# Planning reads Postgres: retried through an outage, not forever (an unexpected error).
PLAN_BUDGET = timedelta(minutes=10)
# One patch for the commands histories recorded before it do not have: lease renewal, and
# with it cancelled warm-ups awaited, optional models dropped, re-acquired leases released.
# (Each patch also upserts the TemporalChangeVersion search attribute: one, not four.)
RUNTIME_PATCH = "lease-renewal"
# Asked only when a job ends uncharged after some invocations ran (histories without it never
# recorded their costs): those invocations' costs are recorded, billed 0.
UNBILLED_COSTS_PATCH = "record-unbilled-costs"
# Asked only when an optional model replacing a required one cannot be held or its call
# fails: the job runs on the required model (degraded) instead of failing; before, it failed.
FALLBACK_PATCH = "optional-replacement-falls-back"
# Asked only when an optional replacement of analyze's chained segmenter fails a call: the
# required segmenter segments the remaining detections; before, the job failed.
CHAINED_FALLBACK_PATCH = "chained-replacement-falls-back"
# Asked only when the detector's output holds no `detections` (a stored large output, text, or
# null): the job fails with the reason; before, it segmented nothing and was charged in full.
DETECTIONS_PATCH = "chained-needs-detections"
# Asked only when a job that held no lease when its calls began takes one (a fallback to a
# COLD required model, an endpoint found gone): that lease is renewed too; before, it ran on
# its first hour and an idle timer could scale the model in under a long job.
LATE_RENEWAL_PATCH = "renew-leases-taken-late"
# Asked only when metering refuses the charge (an amount the ledger cannot hold, an unknown
# tenant): the invocations' costs are recorded, billed 0, as for any job that ends uncharged;
# before, the models' work went unrecorded.
UNBILLED_ON_REFUSAL_PATCH = "unbilled-costs-when-metering-refuses"
# Asked only when a job is cancelled while it plans or reads its input: it ends CANCELLED.
# Before, re-raising the step's error `from None` dropped its CancelledError cause (an
# ActivityError's cause is its __cause__), so the job ended FAILED ("activity cancelled").
CANCELLED_STEP_PATCH = "cancelled-step-ends-cancelled"
# Validating the input reads it (S3): retried through an outage, not forever.
VALIDATE_BUDGET = timedelta(minutes=30)


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


async def _within_budget(what: str, budget: timedelta, call: Awaitable[T]) -> T:
    """A step retried through transient errors until `budget` (its schedule-to-close timeout)
    runs out, then failing the job with what it was doing and the last reason."""
    try:
        return await call
    except ActivityError as err:
        if (gave_up := _gave_up(err, what, budget)) is not None:
            raise gave_up from None
        if is_cancelled_exception(err) and workflow.patched(CANCELLED_STEP_PATCH):
            raise  # its CancelledError cause kept: the job ends CANCELLED
        raise err from None


def _why(err: BaseException) -> str:
    """The user-facing reason of a failed activity (its ApplicationError's message)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.message if isinstance(cause, ApplicationError) else str(err)


def _gave_up(err: ActivityError, what: str, budget: timedelta) -> ApplicationError | None:
    """A step retried until its budget ran out, as the non-retryable error a user reads (with
    the last attempt's reason); None for any other failure. The server ends such a step with
    the last attempt's failure and retry state TIMEOUT, or with a schedule-to-close timeout
    when an attempt was still running."""
    cause = err.cause
    if isinstance(cause, StepTimeout) and cause.type == TimeoutType.SCHEDULE_TO_CLOSE:
        cause = cause.cause
    elif err.retry_state != RetryState.TIMEOUT:
        return None
    reason = cause.message if isinstance(cause, ApplicationError) else "no attempt finished"
    minutes = budget.total_seconds() / 60
    return ApplicationError(
        f"{what}: gave up after {minutes:g} minutes of retries; last error: {reason}",
        type="StepTimedOut",
        non_retryable=True,
    )


def _boxes(detected: Any) -> list[Any]:
    """The boxes of the detector's detections that analyze segments. Another shape fails the
    job with the reason (raised in workflow code, any other error would fail the workflow task
    and retry it forever); histories from before segmented nothing when `detections` was
    missing (DETECTIONS_PATCH is asked only then)."""
    detections = detected.get("detections") if isinstance(detected, dict) else None
    if isinstance(detections, list) and all(isinstance(d, dict) for d in detections):
        return [d.get("box") for d in detections]
    # what `(output or {}).get("detections", [])` read as none before (an empty dict or
    # string iterated to no boxes too)
    missing = not detected or (isinstance(detected, dict) and not detected.get("detections"))
    if missing and not workflow.patched(DETECTIONS_PATCH):
        return []
    if isinstance(detected, dict) and "output_ref" in detected:
        shape = f"an output of {detected.get('size_bytes')} bytes, too large to pass on"
    else:
        shape = f"no list of detection objects in {type(detected).__name__} output"
    raise ApplicationError(
        f"the detector's output cannot be segmented: {shape}",
        type="InvocationFailed",
        non_retryable=True,
    )


def _error(task: asyncio.Task[Any]) -> BaseException | None:
    """What a finished task raised (None while it runs, when it succeeded or was cancelled)."""
    return task.exception() if task.done() and not task.cancelled() else None


def _refusal(errors: list[BaseException], fatal: Sequence[BaseException] = ()) -> BaseException:
    """The first real refusal in plan order, not a warm-up cancelled because of it (a warm-up
    still running when the cancel reaches it ends as a cancelled ActivityError), and among
    those first one that fails the job by itself (`fatal`: a required model's), not an
    optional replacement's that would have fallen back."""
    ordered = [*fatal, *(e for e in errors if e not in fatal)]
    return next((e for e in ordered if not is_cancelled_exception(e)), ordered[0])


def _lease(req: ServiceRequest, model_id: str, *, verify: bool = False) -> AcquireRequest:
    """The job's hold of a model: one lease per (job, model), whichever step asks for it."""
    workflow_id = workflow.info().workflow_id
    return AcquireRequest(
        app_id=req.app_id,
        environment=req.environment,
        model_id=model_id,
        lease_id=f"{workflow_id}/{model_id}",
        requester=workflow_id,
        verify=verify,
    )


def _split_cost(total: Decimal, count: int) -> list[Decimal]:
    """`total` in `count` shares that sum to it exactly: equal shares at the total's precision
    (at least 1e-8), the remainder on the first share."""
    quantum = Decimal(1).scaleb(min(total.as_tuple().exponent, -8))  # type: ignore[arg-type]
    share = (total / count).quantize(quantum, rounding=ROUND_DOWN)
    return [total - share * (count - 1)] + [share] * (count - 1)


# A start input that does not decode (plain JSON with `"input": {}`, a missing field) fails
# the job with pydantic's message instead of retrying its first workflow task forever.
@workflow.defn(failure_exception_types=[ValidationError])
class ServiceJobWorkflow:
    def __init__(self) -> None:
        self.stage = "queued"
        self.detail: str | None = None
        # Every lease asked for (a cancelled warm-up may still take it): all are released.
        self._requested: dict[str, AcquireRequest] = {}
        self._unleased: set[str] = set()  # WARM/HOT models held without a lease
        self._held: dict[str, AcquireRequest] = {}  # leases taken: renewed while the job runs
        self._reacquired: list[AcquireRequest] = []  # taken again after a vanished endpoint
        self._stop_renewing = False
        self._renewing: asyncio.Task[None] | None = None  # the renewal loop, once started
        self._invoking = False  # the calls run: a lease taken now starts the renewals late
        self._dropped: dict[str, str] = {}  # optional models the job ran without, and why
        self._calls: list[ModelCall] = []  # invocations finished so far, in order
        # Replacements that fell back: optional model -> the required model's step run instead.
        self._fell_back: dict[str, PlannedStep] = {}

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
        plan = await _within_budget(
            "the job could not be planned",
            PLAN_BUDGET,
            _rejecting(
                workflow.execute_activity_method(
                    JobActivities.plan,
                    PlanRequest(
                        tenant=req.tenant,
                        app_id=req.app_id,
                        environment=req.environment,
                        service=req.service,
                        operation=req.operation,
                        optional_models=req.optional_models,
                        request_id=req.request_id,
                        options=req.options,
                    ),
                    start_to_close_timeout=QUICK,
                    schedule_to_close_timeout=PLAN_BUDGET,
                    retry_policy=NO_RETRY_ON_REJECT,
                )
            ),
        )
        workflow.upsert_search_attributes([sa.MODEL.value_set(plan.steps[0].model_id)])
        self._set("validating input")
        validated = await _within_budget(
            "the input could not be read",
            VALIDATE_BUDGET,
            _rejecting(
                workflow.execute_activity_method(
                    InputActivities.validate,
                    ValidateRequest(
                        input=req.input,
                        service=plan.service,
                        operation=plan.operation,
                        content_types=plan.content_types,
                        unit=plan.unit,
                        backend=plan.backend,
                        options=req.options,
                        tenant=plan.tenant_name,
                    ),
                    start_to_close_timeout=timedelta(minutes=5),
                    schedule_to_close_timeout=VALIDATE_BUDGET,
                    retry_policy=NO_RETRY_ON_REJECT,
                )
            ),
        )

        leases = {
            m: _lease(req, m)
            for m in plan.models
            if any(step.needs_hold for step in plan.steps if step.model_id == m)
        }
        try:
            try:
                self._set("waiting for warm-up", ", ".join(plan.models))
                await self._acquire_all(req, plan, leases)
                steps = [
                    self._fell_back.get(s.model_id, s)
                    for s in plan.steps
                    if s.model_id not in self._dropped or s.model_id in self._fell_back
                ]
                self._start_renewals()
                try:
                    calls = await self._invoke_all(req, plan, steps, validated)
                finally:
                    await self._stop_renewals()
            finally:
                await self._release_all()
        except (Exception, asyncio.CancelledError) as err:
            if self._calls and workflow.patched(UNBILLED_COSTS_PATCH):
                await self._record_unbilled(req, plan, validated, err)
            raise

        # Charged only now, after every invocation succeeded: a cancelled or failed job
        # pays nothing for work that did not finish (its finished calls are costs, above).
        self._set("metering")
        meter = workflow.start_activity_method(
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
        # Charged once it starts: too late to cancel. A refusal (an amount the ledger cannot
        # hold) fails the job with the activity's own reason, not "activity task failed".
        try:
            metered = await _rejecting(finish_despite_cancel(meter))
        except ApplicationError as refused:  # retried until it was refused for good
            if workflow.patched(UNBILLED_ON_REFUSAL_PATCH):
                await self._record_unbilled(req, plan, validated, refused)
            raise
        self._share_costs(calls, metered.costs)
        self._set("done")
        reasons = [plan.degraded_reason] if plan.degraded_reason else []
        reasons += self._dropped.values()
        return ServiceResult(
            request_id=req.request_id,
            workflow_id=info.workflow_id,
            service=plan.service,
            operation=plan.operation,
            tenant_id=plan.tenant_id,
            models_used=[
                self._fell_back[m].model_id if m in self._fell_back else m
                for m in plan.models
                if m not in self._dropped or m in self._fell_back
            ],
            degraded=plan.degraded or bool(self._dropped),
            degraded_reason="; ".join(reasons) or None,
            output=self._combine(plan, calls),
            units=validated.units,
            unit=plan.unit,
            billed=metered.billed,
            internal_cost=metered.internal_cost,
            calls=calls,
        )

    async def _record_unbilled(
        self, req: ServiceRequest, plan: JobPlan, validated: ValidatedInput, err: BaseException
    ) -> None:
        """A job failed or cancelled after some invocations ran: the tenant pays nothing, but
        the models ran, so their costs go to the ledger (billed 0) for the margin report."""
        self._set("recording costs")
        handle = workflow.start_activity_method(
            JobActivities.record_unbilled_costs,
            UnbilledCostsRequest(
                plan=plan,
                workflow_id=workflow.info().workflow_id,
                app_id=req.app_id,
                environment=req.environment,
                units=validated.units,
                invocations=[c.model_id for c in self._calls],
                outcome="cancelled" if is_cancelled_exception(err) else "failed",
            ),
            start_to_close_timeout=QUICK,
            # Best effort, unlike the charge: the job's own error must not wait forever.
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
        )
        try:
            await finish_despite_cancel(handle)  # a second cancel does not lose them either
        except ActivityError as failed:  # the job's own failure is the one to report
            workflow.logger.warning("costs of the finished invocations not recorded: %s", failed)

    @staticmethod
    def _share_costs(calls: list[ModelCall], costs: dict[str, Decimal]) -> None:
        """Each call's share of its model's cost: the shares of a model sum to its cost."""
        for model_id in dict.fromkeys(c.model_id for c in calls):
            mine = [c for c in calls if c.model_id == model_id]
            shares = _split_cost(costs.get(model_id, Decimal(0)), len(mine))
            for call, share in zip(mine, shares, strict=True):
                call.internal_cost = share

    # ------------------------------------------------------------------ model holds
    async def _acquire(self, lease: AcquireRequest) -> str:
        # Patched: a cancelled warm-up has taken its lease or never will once this returns, so
        # the release that follows cannot come before the lease it releases.
        waits = workflow.patched(RUNTIME_PATCH)
        return await _rejecting(
            workflow.execute_activity_method(
                JobActivities.acquire_model,
                lease,
                start_to_close_timeout=WARMUP_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=NO_RETRY_ON_REJECT,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if waits
                else ActivityCancellationType.TRY_CANCEL,
            )
        )

    async def _acquire_all(
        self, req: ServiceRequest, plan: JobPlan, leases: dict[str, AcquireRequest]
    ) -> None:
        """Hold every model (COLD ones warm up meanwhile). An optional model that cannot be
        held is dropped (the job runs degraded); a required one fails the job, and the other
        warm-ups are cancelled."""
        if not leases:
            return
        self._requested.update(leases)
        optional = plan.optional_models
        tasks = {m: asyncio.create_task(self._acquire(lease)) for m, lease in leases.items()}
        pending = list(tasks.values())
        try:
            while pending:
                _, pending = await workflow.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if self._fatal([m for m, t in tasks.items() if _error(t)], optional, plan):
                    break
        except asyncio.CancelledError:  # the job was cancelled: so are its warm-ups
            await self._cancel(pending)
            raise
        if pending and workflow.patched(RUNTIME_PATCH):
            await self._cancel(pending)
        failed = {m: err for m, t in tasks.items() if (err := _error(t)) is not None}
        if self._fatal(list(failed), optional, plan):
            replacements = {s.model_id for s in plan.steps if s.fallback}
            required = [e for m, e in failed.items() if m not in optional | replacements]
            raise _refusal(list(failed.values()), required)
        for m, err in failed.items():
            if (fallback := self._fallback(plan, m)) is not None:
                self._dropped[m] = f"{m} could not be held: {_why(err)}; ran on {fallback.model_id}"
                await self._fall_back(req, m, fallback)
                continue
            self._dropped[m] = f"{m} could not be held: {_why(err)}; ran without it"
        for m, task in tasks.items():
            if m not in failed:
                self._took(m, leases[m], task.result())

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[str]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await workflow.wait(tasks)

    def _fatal(self, failed: list[str], optional: set[str], plan: JobPlan) -> bool:
        """Whether these failed holds fail the job: a required model's always (an optional
        model replacing one falls back to it: FALLBACK_PATCH); an optional model's only in
        histories recorded before optional models degraded here."""
        if any(m not in optional and self._fallback(plan, m) is None for m in failed):
            return True
        return bool(failed) and not workflow.patched(RUNTIME_PATCH)

    @staticmethod
    def _fallback(plan: JobPlan, model_id: str) -> PlannedStep | None:
        """The required model's step an optional replacement falls back to (plans from before
        have none; histories from before failed the job: FALLBACK_PATCH is asked here, only
        when such a replacement failed)."""
        step = next((s for s in plan.steps if s.model_id == model_id and s.fallback), None)
        if step is None or not workflow.patched(FALLBACK_PATCH):
            return None
        return step.fallback

    def _chained_fallback(
        self, plan: JobPlan, step: PlannedStep, err: BaseException
    ) -> PlannedStep | None:
        """The required segmenter an optional replacement in analyze's chained step falls back
        to when its call fails (not when the job was cancelled)."""
        if is_cancelled_exception(err):
            return None
        if not any(s.model_id == step.model_id and s.fallback for s in plan.steps):
            return None  # the required segmenter itself failed
        if not workflow.patched(CHAINED_FALLBACK_PATCH):
            return None
        return self._fallback(plan, step.model_id)

    async def _run_instead(
        self,
        req: ServiceRequest,
        plan: JobPlan,
        failed: PlannedStep,
        fallback: PlannedStep,
        err: BaseException,
        validated: ValidatedInput,
        options: dict[str, Any],
        name: str,
    ) -> InvokeOutput:
        """The call of an optional replacement that failed, made on the required model it
        replaced (held first); the replacement is dropped with the reason."""
        self._dropped[failed.model_id] = (
            f"{failed.model_id} failed: {_why(err)}; ran on {fallback.model_id}"
        )
        await self._fall_back(req, failed.model_id, fallback)
        return await self._invoke(req, plan, fallback, validated, options, f"{name}-fallback")

    async def _fall_back(self, req: ServiceRequest, model_id: str, fallback: PlannedStep) -> None:
        """Hold the required model instead of its failed replacement (its refusal fails the
        job, as for any required model)."""
        self._fell_back[model_id] = fallback
        if fallback.model_id in self._held or fallback.model_id in self._unleased:
            return
        lease = _lease(req, fallback.model_id)
        self._requested[fallback.model_id] = lease
        self._set("waiting for warm-up", f"{fallback.model_id} (instead of {model_id})")
        self._took(fallback.model_id, lease, await self._acquire(lease))

    def _took(self, model_id: str, lease: AcquireRequest, how: str) -> None:
        if how == "unleased":
            self._unleased.add(model_id)  # WARM/HOT: nothing to renew or release
        else:
            self._held[model_id] = lease
            late = self._invoking and self._renewing is None  # _stop_renewals ends _invoking
            if late and workflow.patched(LATE_RENEWAL_PATCH):
                self._renewing = asyncio.create_task(self._renew_leases())

    async def _release_all(self) -> None:
        """Release even when cancelled or failed: the models may scale to zero again. A
        signal from the workflow itself: no activity round trip."""
        releases = [lease for m, lease in self._requested.items() if m not in self._unleased]
        if self._reacquired and workflow.patched(RUNTIME_PATCH):
            known = {lease.lease_id for lease in releases}
            again = {a.lease_id: a for a in self._reacquired if a.lease_id not in known}
            releases += again.values()
        released = await asyncio.gather(
            *(
                self._thermal(lease).signal(
                    ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease.lease_id)
                )
                for lease in releases
            ),
            # A model whose workflow never started (its hold was cancelled before it ran) has
            # nothing to release: that must not replace the job's own error or cancel.
            return_exceptions=True,
        )
        for lease, outcome in zip(releases, released, strict=True):
            if isinstance(outcome, BaseException):
                workflow.logger.info("release of %s not sent: %s", lease.model_id, outcome)

    @staticmethod
    def _thermal(lease: AcquireRequest) -> workflow.ExternalWorkflowHandle[Any]:
        return workflow.get_external_workflow_handle(
            thermal_workflow_id(lease.app_id, lease.environment, lease.model_id)
        )

    def _start_renewals(self) -> None:
        self._invoking = True
        if self._held and workflow.patched(RUNTIME_PATCH):
            self._renewing = asyncio.create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        """Renew the leases the job holds until stopped: an expired lease would let an idle
        timer scale a model to zero while the job still uses it."""
        while not self._stop_renewing:
            # At once first: a lease taken when a long warm-up (of this model or another)
            # began may be close to expiry by the time every hold is in place.
            await asyncio.gather(
                *(
                    self._thermal(lease).signal(
                        ModelThermalWorkflow.lease,
                        WarmUpRequest(
                            requester=lease.requester,
                            lease_id=lease.lease_id,
                            lease_seconds=LEASE_SECONDS,
                        ),
                    )
                    for lease in list(self._held.values())
                ),
                return_exceptions=True,  # one model's failed signal stops no other renewal
            )
            try:
                await workflow.wait_condition(
                    lambda: self._stop_renewing, timeout=LEASE_RENEW_EVERY
                )
                return
            except TimeoutError:
                pass

    async def _stop_renewals(self) -> None:
        """Stop renewing, and let a renewal under way land first: one arriving after the
        release would take the lease again."""
        self._stop_renewing, self._invoking = True, False
        if self._renewing is not None:
            await asyncio.gather(self._renewing, return_exceptions=True)

    # ------------------------------------------------------------------ invocation
    async def _invoke_all(
        self,
        req: ServiceRequest,
        plan: JobPlan,
        steps: list[PlannedStep],
        validated: ValidatedInput,
    ) -> list[ModelCall]:
        calls = self._calls  # the finished invocations, kept for a failure's cost rows
        previous: Any = None
        optional = plan.optional_models
        # The checked (or spooled) copy of a before scene, never the caller's raw location.
        base = dict(req.options)
        if BEFORE_OPTION in validated.details:
            base[BEFORE_OPTION] = validated.details[BEFORE_OPTION]
        for index, step in enumerate(steps):
            if step.role == "chained" and plan.operation == "analyze":
                # perception/analyze: segment each detection of the detector's output.
                segmenter = step
                for n, box in enumerate(_boxes(previous)[:ANALYZE_MAX_DETECTIONS]):
                    options = {**base, "box": box}
                    try:
                        out = await self._invoke(
                            req, plan, segmenter, validated, options, f"{index}-{n}"
                        )
                    except (ActivityError, ApplicationError) as err:
                        fallback = self._chained_fallback(plan, segmenter, err)
                        if fallback is None:
                            raise
                        # The required segmenter segments this and the remaining boxes.
                        out = await self._run_instead(
                            req, plan, segmenter, fallback, err, validated, options, f"{index}-{n}"
                        )
                        segmenter = fallback
                    calls.append(self._call(segmenter, out, validated))
                continue
            options = dict(base)
            if previous is not None and step.role != "primary":
                options["previous_output"] = previous
            try:
                out = await self._invoke(req, plan, step, validated, options, str(index))
            except (ActivityError, ApplicationError) as err:
                fallback = (
                    None if is_cancelled_exception(err) else self._fallback(plan, step.model_id)
                )
                if fallback is not None:
                    # An optional replacement that fails: the required model answers instead.
                    out = await self._run_instead(
                        req, plan, step, fallback, err, validated, options, str(index)
                    )
                    calls.append(self._call(fallback, out, validated))
                    if step.role == "primary":
                        previous = out.output
                    continue
                if (
                    step.model_id not in optional
                    or is_cancelled_exception(err)  # the job was cancelled: not a model failure
                    or not workflow.patched(RUNTIME_PATCH)
                ):
                    raise
                # An optional model that fails: the job answers without it (DESIGN 5).
                self._dropped[step.model_id] = (
                    f"{step.model_id} failed: {_why(err)}; ran without it"
                )
                continue
            calls.append(self._call(step, out, validated))
            if step.role == "primary":
                previous = out.output
        return calls

    def _call(self, step: PlannedStep, out: InvokeOutput, validated: ValidatedInput) -> ModelCall:
        return ModelCall(
            model_id=step.model_id,
            endpoint_name=step.endpoint_name,
            mode=step.mode,
            output=out.output,
            units=validated.units,  # each invocation is costed on the job's units
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
                    again = _lease(req, step.model_id, verify=True)
                    # It takes a lease even for a model held unleased before: release it too.
                    self._reacquired.append(again)
                    self._took(step.model_id, again, await self._acquire(again))
                    continue
                if is_cancelled_exception(err) and workflow.patched(RUNTIME_PATCH):
                    raise  # the job was cancelled mid-call: it ends cancelled, not failed
                what = f"{step.model_id} failed on {step.endpoint_name}"
                # an async inference's result is awaited up to ASYNC_DEADLINE, not the budget
                fetching = err.activity_type == "jobs.fetch_async"
                timed_out = _gave_up(err, what, ASYNC_DEADLINE if fetching else INVOKE_BUDGET)
                raise ApplicationError(
                    timed_out.message if timed_out else f"{what}: {_why(err)}",
                    type="InvocationFailed",
                    non_retryable=True,
                ) from None
        raise AssertionError("unreachable")

    async def _call_model(
        self, plan: JobPlan, step: PlannedStep, call: InvokeRequest
    ) -> InvokeOutput:
        if step.mode == "sync":
            return await workflow.execute_activity_method(
                JobActivities.invoke,
                call,
                start_to_close_timeout=INVOKE_TIMEOUT,
                schedule_to_close_timeout=INVOKE_BUDGET,
                retry_policy=INVOKE_RETRY,
            )
        invocation = await workflow.execute_activity_method(
            JobActivities.start_async,
            call,
            start_to_close_timeout=QUICK,
            schedule_to_close_timeout=INVOKE_BUDGET,
            retry_policy=INVOKE_RETRY,
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
