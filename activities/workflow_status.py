"""Whether a workflow runs, asked of Temporal (the source of truth, never guessed from a
timeout): request claims, the reconcile's ownership checks and the CLI ask the same way."""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


async def workflow_running(client: Client, workflow_id: str) -> bool:
    """Only NOT_FOUND means "not running" (never started, or past retention); any other error
    (UNAVAILABLE, DEADLINE_EXCEEDED) propagates, so a caller retries instead of treating a
    live workflow as gone."""
    return await _running(client, workflow_id) is not None


async def workflow_closed_at(client: Client, workflow_id: str) -> datetime | None:
    """When the latest run of `workflow_id` closed, on the Temporal server's clock (the one
    `workflow.now()` reads); None while it runs, or when there is none (errors as
    `workflow_running`)."""
    desc = await _described(client, workflow_id)
    if desc is None or desc.status == WorkflowExecutionStatus.RUNNING:
        return None
    return desc.close_time


async def running_task_queue(client: Client, workflow_id: str) -> str | None:
    """The task queue of the running workflow, None when it does not run (errors as
    `workflow_running`)."""
    desc = await _running(client, workflow_id)
    return None if desc is None else desc.task_queue


async def _running(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    desc = await _described(client, workflow_id)
    return desc if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING else None


async def _described(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The latest run's description; None only for NOT_FOUND (other errors propagate)."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
