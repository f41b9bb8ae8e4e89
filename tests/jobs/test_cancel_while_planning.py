"""A job cancelled while it plans ends CANCELLED, not FAILED (found by a review: the step's
error was re-raised without its CancelledError cause, and the SDK then failed the workflow)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import InputRef, ServiceRequest

planning = asyncio.Event()


@activity.defn(name="jobs.plan")
async def endless_plan(_req: object) -> None:
    """A plan that never ends (a database that hangs): only the cancel stops it."""
    planning.set()
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


async def test_cancel_while_planning_ends_cancelled(temporal_client):
    planning.clear()
    queue = f"cancel-plan-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[ServiceJobWorkflow],
        activities=[endless_plan],
    ):
        req = ServiceRequest(
            tenant="acme",
            request_id=uuid.uuid4().hex[:10],
            service="perception",
            operation="detect",
            input=InputRef(uri="/x.png"),
        )
        handle = await temporal_client.start_workflow(
            ServiceJobWorkflow.run, req, id=f"job/acme/{req.request_id}", task_queue=queue
        )
        await asyncio.wait_for(planning.wait(), 30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
