"""Whether a workflow runs, asked of Temporal (the source of truth, never guessed from a
timeout): request claims, the reconcile's ownership checks and the CLI ask the same way."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


async def workflow_running(client: Client, workflow_id: str) -> bool:
    """Only NOT_FOUND means "not running" (never started, or past retention); any other error
    (UNAVAILABLE, DEADLINE_EXCEEDED) propagates, so a caller retries instead of treating a
    live workflow as gone."""
    return await _running(client, workflow_id) is not None


async def running_task_queue(client: Client, workflow_id: str) -> str | None:
    """The task queue of the running workflow, None when it does not run (errors as
    `workflow_running`)."""
    desc = await _running(client, workflow_id)
    return None if desc is None else desc.task_queue


async def _running(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    desc = await latest_run(client, workflow_id)
    return desc if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING else None


async def latest_run(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The latest run's description, running or closed; None only for NOT_FOUND (other errors
    propagate, as for `workflow_running`)."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
