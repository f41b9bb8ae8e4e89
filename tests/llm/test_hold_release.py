"""A request's hold of a self-hosted model that fails or is cancelled after the model took its
lease releases the lease (the `llm-release-failed-hold` patch): the thermal workflow's warm_up
takes it as soon as it starts, so a hold that never returned used to leave it held
(lease_seconds, then the idle period) with nobody to release it. A cancelled hold ends the
request CANCELLED, not FAILED (the `llm-cancel-ends-cancelled` patch).

RADIANT_RECORD_HISTORIES=1 keeps the cancelled run's history under tests/llm/histories/ (a
guard of both patches, see tests/llm/test_replay.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities.llm.activities import PrepareInput
from activities.llm.types import (
    LLMPlan,
    LLMRequest,
    LLMResponse,
    WarmUpHold,
    WarmUpHoldResult,
    llm_workflow_id,
)
from tests.fixtures.waiting import wait_for
from tests.llm.conftest import LLMHarness
from tests.llm.test_cancelled_call import record_history
from workers.llm_registration import LLM_WORKFLOWS
from workflows.thermal_types import WarmUpRequest

MISTRAL = "mistral-7b-instruct"  # self-hosted, cold in a new app
pytestmark = pytest.mark.slow


def self_hosted_chat(llm: LLMHarness, app: str) -> tuple[LLMRequest, str]:
    rid = uuid.uuid4().hex[:12]
    req = LLMRequest(
        request_id=rid,
        tenant=llm.tenant("t3"),
        app_id=app,
        environment="test",
        prefer_hosting="self_hosted",
        messages=[{"role": "user", "content": "hold me"}],
    )  # type: ignore[call-arg]
    return req, llm_workflow_id(req.tenant, "chat", rid)


async def in_flight(llm: LLMHarness, app: str) -> int | None:
    try:
        return (await llm.control.status(app, "test", MISTRAL)).in_flight
    except Exception:  # noqa: BLE001 - the thermal workflow is not started yet
        return None


async def lease_released(llm: LLMHarness, app: str) -> None:
    async def released() -> bool:
        return await in_flight(llm, app) == 0

    await wait_for(released, limit=15)


async def test_cancelled_hold_releases_its_lease_and_ends_cancelled(llm: LLMHarness):
    app = llm.new_app()
    req, wid = self_hosted_chat(llm, app)
    handle = await llm.client.start_workflow(
        "ChatCompletionWorkflow", req, id=wid, task_queue=llm.task_queue, result_type=LLMResponse
    )

    async def leased() -> bool:  # the model warms up for this request and holds its lease
        return bool(await in_flight(llm, app))

    await wait_for(leased, every=0.05)
    await handle.cancel()
    try:
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), 60)
    finally:
        await record_history(handle, "llm-cancelled-hold")
    await lease_released(llm, app)
    assert isinstance(info.value.cause, CancelledError), info.value.cause
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_failed_hold_releases_its_lease(llm: LLMHarness):
    """A hold that fails once the model took its lease (a warm-up whose answer never came
    back): the request fails with the hold's error, and the lease is released."""
    app = llm.new_app()
    req, wid = self_hosted_chat(llm, app)
    queue = f"llm-hold-{uuid.uuid4().hex[:6]}"

    @activity.defn(name="llm.prepare")
    async def prepare(inp: PrepareInput) -> LLMPlan:
        return LLMPlan(
            tenant_id=str(uuid.uuid4()),
            tenant_tier=3,
            model_id=MISTRAL,
            hosting="self_hosted",
            provider_id="local",
            wait_for_warm_up=True,
            prompt_tokens=3,
        )

    @activity.defn(name="llm.hold_warm")
    async def hold_warm(hold: WarmUpHold) -> WarmUpHoldResult:
        await llm.control.warm_up(
            hold.app_id,
            hold.environment,
            hold.model_id,
            WarmUpRequest(
                requester=hold.requester,
                lease_id=hold.lease_id,
                lease_seconds=hold.lease_seconds,
            ),
        )
        raise ApplicationError("the hold's answer was lost", type="HoldLost", non_retryable=True)

    async with Worker(
        llm.client, task_queue=queue, workflows=LLM_WORKFLOWS, activities=[prepare, hold_warm]
    ):
        handle = await llm.client.start_workflow(
            "ChatCompletionWorkflow", req, id=wid, task_queue=queue, result_type=LLMResponse
        )
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), 60)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "HoldLost", cause
    await lease_released(llm, app)
