"""Text generation and embeddings: ChatCompletionWorkflow, TextCompletionWorkflow,
EmbeddingWorkflow (ids `llm/{tenant}/{kind}/{request_id}`).

One request = one workflow: validate (here, deterministic, before any activity), plan (tenant,
model, token estimate, selection; refusals happen before any cost), warm a cold self-hosted model
in the background or hold the request until its model is ready (a lease keeps it from scaling to
zero mid-call; released afterwards), call LiteLLM, meter exactly once, answer.

A cancel during the provider call does not stop it (the call does not heartbeat) and the
provider charges it: the workflow waits for the call, records its cost billed 0 (the claim left
open: the request may run again) and ends CANCELLED. A cancel during metering comes too late.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.llm.activities import LLMActivities, PrepareInput
    from activities.llm.types import (
        ERR_EMPTY_PROMPT,
        ERR_INVALID_REQUEST,
        ERR_PAYLOAD_TOO_LARGE,
        MAX_INPUT_BYTES,
        NON_RETRYABLE_LLM_ERRORS,
        LLMCallInput,
        LLMCallResult,
        LLMKind,
        LLMPlan,
        LLMRequest,
        LLMResponse,
        MeterInput,
        WarmUpHold,
        request_id_problem,
    )
    from workflows import search_attributes as sa
    from workflows.thermal import DEFAULT_WARMUP_DEADLINE, ModelThermalWorkflow
    from workflows.thermal_types import ReleaseRequest, thermal_workflow_id
    from workflows.uncancellable import finish_despite_cancel

PREPARE_TIMEOUT = timedelta(seconds=60)
# The Router's own timeout is 120 s per deployment tried: the model and up to two catalog
# fallbacks (the catalog allows no more) must all get their time within one attempt.
CALL_TIMEOUT = timedelta(minutes=7)
METER_TIMEOUT = timedelta(seconds=30)
HOLD_HEARTBEAT = timedelta(seconds=30)
QUICK_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=NON_RETRYABLE_LLM_ERRORS)
# Temporal owns retries of provider calls (LiteLLM's are off): a few, with backoff.
CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_LLM_ERRORS,
)
# The call happened: metering must eventually succeed (a database outage only delays the row).
METER_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=60))
# The cost of a call cancelled while it ran: best effort, the cancel must not wait forever.
UNBILLED_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5)
# Asked only when a cancel arrives during the provider call, so runs without one record no
# marker. Before it, the cancel reached the call's activity and the workflow ended at once,
# while the call (it does not heartbeat) still ran and the provider charged it: unrecorded.
CANCELLED_CALL_PATCH = "llm-cancelled-call-recorded"
# Runs before this patch accepted any request id (a too long one then failed metering forever).
REQUEST_ID_PATCH = "llm-request-id-check"
HOSTING = ("self_hosted", "external", "any")
# A start input that does not decode (a missing field) fails the request with pydantic's
# message instead of retrying its first workflow task forever.
UNDECODABLE_REQUEST: list[type[BaseException]] = [ValidationError]
# The longest a caller may ask to wait for a warm-up (a number, not NaN or infinity). Runs
# started before the bound accepted more: the patch is asked only for a deadline above it.
MAX_WARMUP_DEADLINE_S = 24 * 3600.0
DEADLINE_BOUND_PATCH = "llm-warmup-deadline-bound"
# Asked where the hold of a self-hosted model is scheduled: a cancelled hold has taken its lease
# or never will once it ends, and the lease is released whenever the hold was asked (the thermal
# workflow ignores the release of a lease it never took). Before, only a hold that returned was
# released: one that failed or was cancelled after the model took its lease left it held
# (lease_seconds, then the idle period) with nobody to release it.
RELEASE_FAILED_HOLD_PATCH = "llm-release-failed-hold"
# Asked only when an activity ends cancelled by the request's cancel (planning; the hold, the
# call or the charge only in runs recorded before their own patches): the workflow ends
# CANCELLED. Before, the re-raise named the activity's error as its own cause, which hid the
# cancel, and the workflow ended FAILED.
CANCEL_ENDS_CANCELLED_PATCH = "llm-cancel-ends-cancelled"
ROLES = ("system", "user", "assistant", "tool", "developer")


def validate(kind: str, req: LLMRequest) -> None:
    """Refuse malformed requests before any activity runs (no cost, no usage row)."""

    def bad(message: str, err_type: str = ERR_INVALID_REQUEST) -> ApplicationError:
        return ApplicationError(message, type=err_type, non_retryable=True)

    if not req.request_id.strip():
        raise bad("request_id is empty")
    if (problem := request_id_problem(req.request_id)) and workflow.patched(REQUEST_ID_PATCH):
        raise bad(problem)
    if not req.tenant.strip():
        raise bad("tenant is empty")
    if req.prefer_hosting not in HOSTING:
        raise bad(f"prefer_hosting {req.prefer_hosting!r} is not one of {', '.join(HOSTING)}")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise bad(f"max_tokens must be at least 1, got {req.max_tokens}")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise bad(f"temperature must be between 0 and 2, got {req.temperature}")
    deadline = req.warmup_deadline_seconds
    if deadline is not None and (
        deadline <= 0
        # above the bound, infinite or NaN (runs recorded before the patch accepted those)
        or (not deadline <= MAX_WARMUP_DEADLINE_S and workflow.patched(DEADLINE_BOUND_PATCH))
    ):
        raise bad(
            f"warmup_deadline_seconds must be a number of seconds in (0, "
            f"{MAX_WARMUP_DEADLINE_S:.0f}], got {deadline}"
        )
    if kind == "chat":
        payload: object = req.messages
        if not req.messages:
            raise bad("messages is empty", ERR_EMPTY_PROMPT)
        for i, msg in enumerate(req.messages):
            if msg.get("role") not in ROLES:
                raise bad(
                    f"messages[{i}].role {msg.get('role')!r} is not one of {', '.join(ROLES)}"
                )
        if not any(_has_text(m.get("content")) for m in req.messages):
            raise bad("every message is empty", ERR_EMPTY_PROMPT)
    elif kind == "completion":
        payload = req.prompt
        if not (req.prompt or "").strip():
            raise bad("prompt is empty", ERR_EMPTY_PROMPT)
    else:
        payload = req.input
        if not req.input or any(not t.strip() for t in req.input):
            raise bad("input is empty (or holds an empty string)", ERR_EMPTY_PROMPT)
    size = len(json.dumps(payload, default=str).encode())
    if size > MAX_INPUT_BYTES:
        raise bad(
            f"input is {size} bytes; at most {MAX_INPUT_BYTES} travel inline", ERR_PAYLOAD_TOO_LARGE
        )


def _has_text(content: object) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):  # content parts
        return any(isinstance(p, dict) and (p.get("text") or p.get("image_url")) for p in content)
    return False


def _unwrap(err: ActivityError) -> BaseException | None:
    """What fails the workflow in place of the activity's error: the activity's own
    ApplicationError (its type is the contract). None: re-raise the activity's error as it is
    (a cancel then ends the workflow CANCELLED, a timeout keeps its cause)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    if isinstance(cause, CancelledError) and not workflow.patched(CANCEL_ENDS_CANCELLED_PATCH):
        return err  # recorded before the patch: `raise err from err` ended it FAILED
    return None


async def serve(kind: LLMKind, req: LLMRequest) -> LLMResponse:
    validate(kind, req)
    info = workflow.info()
    workflow.upsert_search_attributes(
        [sa.APP.value_set(req.app_id), sa.ENVIRONMENT.value_set(req.environment)]
    )
    try:
        plan: LLMPlan = await workflow.execute_activity_method(
            LLMActivities.prepare,
            PrepareInput(kind=kind, request=req),
            start_to_close_timeout=PREPARE_TIMEOUT,
            retry_policy=QUICK_RETRY,
        )
    except ActivityError as err:
        if (unwrapped := _unwrap(err)) is None:
            raise
        raise unwrapped from err
    workflow.upsert_search_attributes(
        [sa.TENANT.value_set(plan.tenant_id), sa.MODEL.value_set(plan.model_id)]
    )
    if plan.warm_up is not None:
        await _start_background_warm_up(req, plan.warm_up)

    leased = False
    deadline = req.warmup_deadline_seconds or DEFAULT_WARMUP_DEADLINE
    try:
        if plan.hosting == "self_hosted":
            # Patched: a cancelled hold has taken its lease or never will once it ends, so the
            # release below cannot come before the lease; and it comes whatever the hold's end.
            leased = workflow.patched(RELEASE_FAILED_HOLD_PATCH)
            hold = workflow.start_activity_method(
                LLMActivities.hold_warm,
                WarmUpHold(
                    app_id=req.app_id,
                    environment=req.environment,
                    model_id=plan.model_id,
                    lease_id=info.workflow_id,
                    requester=info.workflow_id,
                    deadline_seconds=deadline,
                ),
                start_to_close_timeout=timedelta(seconds=deadline + 120),
                heartbeat_timeout=HOLD_HEARTBEAT,
                retry_policy=QUICK_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if leased
                else ActivityCancellationType.TRY_CANCEL,
            )
            await (_await_hold(hold) if leased else hold)
            leased = True  # (recorded before the patch: released only once the hold returned)
        call = workflow.start_activity_method(
            LLMActivities.call,
            LLMCallInput(
                kind=kind,
                model_id=plan.model_id,
                app_id=req.app_id,
                environment=req.environment,
                messages=req.messages,
                prompt=req.prompt,
                input=req.input,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                allow_fallbacks=req.allow_fallbacks,
                request_id=req.request_id,
                fallbacks=plan.fallbacks,
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CALL_RETRY,
        )
        try:
            result: LLMCallResult = await asyncio.shield(call)
        except asyncio.CancelledError:
            if workflow.patched(CANCELLED_CALL_PATCH):
                await _record_cancelled_call(kind, req, plan, call)
                raise  # CANCELLED; the lease is released below
            # Recorded before this patch: the cancel reached the call's activity, and the
            # workflow went on with what awaiting the cancelled activity raised; a call
            # already done (its result and the cancel in one task) left the plain cancel.
            if call.done():
                raise
            call.cancel()
            result = await call
        meter = workflow.start_activity_method(
            LLMActivities.meter,
            _meter_input(kind, req, plan, result),
            start_to_close_timeout=METER_TIMEOUT,
            retry_policy=METER_RETRY,
        )
        metered = await finish_despite_cancel(meter)  # charged once it starts: too late to cancel
    except ActivityError as err:
        if (unwrapped := _unwrap(err)) is None:
            raise
        raise unwrapped from err
    finally:
        if leased:
            await _release(req, plan.model_id, info.workflow_id)
    if result.model_id != plan.model_id:
        workflow.upsert_search_attributes([sa.MODEL.value_set(result.model_id)])
    return LLMResponse(
        request_id=req.request_id,
        workflow_id=info.workflow_id,
        kind=kind,
        model=result.model_id,
        requested_model=req.model,
        served_by=result.served_by,
        provider_id=result.provider_id,
        hosting=result.hosting,
        fallback_used=result.fallback_used,
        waited_for_warm_up=plan.wait_for_warm_up,
        warming_in_background=plan.warm_up,
        content=result.content,
        embeddings=result.embeddings,
        finish_reason=result.finish_reason,
        usage=result.usage,
        # Superseded: another workflow took the request over and charges it, not this one.
        billed=Decimal(0) if metered.superseded else result.cost.billed,
        internal_cost=result.cost.internal_cost,
        selection=plan.explanation,
    )


def _meter_input(
    kind: LLMKind,
    req: LLMRequest,
    plan: LLMPlan,
    result: LLMCallResult,
    unbilled: Literal["cancelled"] | None = None,
) -> MeterInput:
    """What the ledger row of the call needs: what it cost, not what it said (the answer
    need not travel twice)."""
    return MeterInput(
        tenant_id=plan.tenant_id,
        workflow_id=workflow.info().workflow_id,
        step="llm_call",
        kind=kind,
        request_id=req.request_id,
        app_id=req.app_id,
        environment=req.environment,
        requested_model=req.model,
        result=result.model_copy(update={"content": None, "embeddings": None}),
        unbilled=unbilled,
    )


async def _record_cancelled_call(
    kind: LLMKind, req: LLMRequest, plan: LLMPlan, call: workflow.ActivityHandle[LLMCallResult]
) -> None:
    """Cancelled while the provider call ran: the call goes on (its activity does not
    heartbeat, so it never learns of the cancel) and the provider charges us for it. The
    tenant is not charged (no answer), and the request's claim stays open (it may run again),
    but a call that succeeded has its cost recorded, billed 0, for the margin report."""
    workflow.logger.info("cancel requested during the provider call: recording its cost")
    try:
        result = await finish_despite_cancel(call)
    except ActivityError as failed:  # refused or failed: nothing to record
        workflow.logger.info("the cancelled request's provider call failed: %s", failed.cause)
        return
    if result.cost.internal_cost is None:  # self-hosted: its cost is the endpoint's uptime
        return
    record = workflow.start_activity_method(
        LLMActivities.record_unbilled_call,
        _meter_input(kind, req, plan, result, unbilled="cancelled"),
        start_to_close_timeout=METER_TIMEOUT,
        retry_policy=UNBILLED_RETRY,
    )
    try:
        await finish_despite_cancel(record)  # a second cancel does not lose it either
    except ActivityError as failed:  # the cancel is the outcome to report
        workflow.logger.warning("cost of the cancelled call not recorded: %s", failed.cause)


async def _await_hold(hold: workflow.ActivityHandle[object]) -> None:
    """Await the hold; a cancel stops it, waits until it has ended (the model has taken its
    lease or never will) and ends the request CANCELLED, even if the hold succeeded meanwhile
    (its heartbeat brings the cancel late: a model may be ready before)."""
    try:
        await asyncio.shield(hold)
    except asyncio.CancelledError:
        hold.cancel()
        try:
            await hold
        except ActivityError:  # cancelled (or failed meanwhile): the cancel is the outcome
            pass
        raise


async def _start_background_warm_up(req: LLMRequest, model_id: str) -> None:
    """Best effort: this request is served by another model either way."""
    try:
        await workflow.execute_activity_method(
            LLMActivities.start_warm_up,
            WarmUpHold(
                app_id=req.app_id,
                environment=req.environment,
                model_id=model_id,
                lease_id="",
                requester=workflow.info().workflow_id,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
    except ActivityError as err:
        workflow.logger.warning("background warm-up of %s not started: %s", model_id, err.cause)


async def _release(req: LLMRequest, model_id: str, lease_id: str) -> None:
    handle = workflow.get_external_workflow_handle(
        thermal_workflow_id(req.app_id, req.environment, model_id)
    )
    try:
        await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease_id))
    except Exception as err:  # noqa: BLE001 - the lease expires on its own anyway
        workflow.logger.warning("could not release lease %s on %s: %s", lease_id, model_id, err)


@workflow.defn(failure_exception_types=UNDECODABLE_REQUEST)
class ChatCompletionWorkflow:
    @workflow.run
    async def run(self, req: LLMRequest) -> LLMResponse:
        return await serve("chat", req)


@workflow.defn(failure_exception_types=UNDECODABLE_REQUEST)
class TextCompletionWorkflow:
    @workflow.run
    async def run(self, req: LLMRequest) -> LLMResponse:
        return await serve("completion", req)


@workflow.defn(failure_exception_types=UNDECODABLE_REQUEST)
class EmbeddingWorkflow:
    @workflow.run
    async def run(self, req: LLMRequest) -> LLMResponse:
        return await serve("embedding", req)


WORKFLOW_BY_KIND: dict[str, type] = {
    "chat": ChatCompletionWorkflow,
    "completion": TextCompletionWorkflow,
    "embedding": EmbeddingWorkflow,
}

__all__ = [
    "ChatCompletionWorkflow",
    "EmbeddingWorkflow",
    "TextCompletionWorkflow",
    "WORKFLOW_BY_KIND",
    "serve",
    "validate",
]
