"""A request cancelled while an activity of it runs (here its planning) ends CANCELLED, not
FAILED: the activity's error is re-raised as it is, its cancel kept as its cause (the
`llm-cancel-ends-cancelled` patch). Before, the re-raise named the error as its own cause, which
hid the cancel from the SDK.

RADIANT_RECORD_HISTORIES=1 keeps the cancelled run's history under tests/llm/histories/ (a
guard of the patch, see tests/llm/test_replay.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from activities.llm.activities import PrepareInput
from activities.llm.types import LLMPlan, LLMRequest, LLMResponse, llm_workflow_id
from tests.llm.conftest import LLMHarness
from tests.llm.test_cancelled_call import record_history
from workers.llm_registration import LLM_WORKFLOWS

pytestmark = pytest.mark.slow


async def test_cancel_during_prepare_ends_cancelled(llm: LLMHarness):
    queue = f"llm-prepare-{uuid.uuid4().hex[:6]}"
    preparing = asyncio.Event()

    @activity.defn(name="llm.prepare")
    async def prepare(inp: PrepareInput) -> LLMPlan:
        preparing.set()
        while True:  # until the cancel reaches it (a heartbeat brings it)
            activity.heartbeat()
            await asyncio.sleep(0.1)

    rid = uuid.uuid4().hex[:12]
    req = LLMRequest(
        request_id=rid,
        tenant=llm.tenant("t1"),
        app_id=llm.new_app(),
        environment="test",
        messages=[{"role": "user", "content": "cancel me"}],
    )  # type: ignore[call-arg]
    async with Worker(llm.client, task_queue=queue, workflows=LLM_WORKFLOWS, activities=[prepare]):
        handle = await llm.client.start_workflow(
            "ChatCompletionWorkflow",
            req,
            id=llm_workflow_id(req.tenant, "chat", rid),
            task_queue=queue,
            result_type=LLMResponse,
        )
        await asyncio.wait_for(preparing.wait(), 30)
        await handle.cancel()
        try:
            with pytest.raises(WorkflowFailureError) as info:
                await asyncio.wait_for(handle.result(), 30)
        finally:
            await record_history(handle, "llm-cancelled-prepare")
    assert isinstance(info.value.cause, CancelledError), info.value.cause
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
