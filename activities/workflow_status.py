"""Whether a workflow runs, asked of Temporal (the source of truth, never guessed from a
timeout): request claims, the reconcile's ownership checks and the CLI ask the same way."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


async def workflow_running(client: Client, workflow_id: str) -> bool:
    """Only NOT_FOUND means "not running" (never started, or past retention); any other error
    (UNAVAILABLE, DEADLINE_EXCEEDED) propagates, so a caller retries instead of treating a
    live workflow as gone."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return desc.status == WorkflowExecutionStatus.RUNNING
