"""Awaiting an activity that must finish once started, whatever a workflow cancel says.

Metering is that step: once its activity runs, the charge will be committed (the activity does
not heartbeat, so it never learns of a cancel). Awaiting it plainly would end the workflow
CANCELLED at once while the charge lands anyway: the tenant pays and gets no result. Shielded,
a cancel arriving meanwhile is too late: the workflow waits for the charge and completes.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from temporalio import workflow

T = TypeVar("T")

#: Asked only when a cancel arrives during the step, so runs without one record no marker.
PATCH = "finish-despite-cancel"


async def finish_despite_cancel(handle: workflow.ActivityHandle[T]) -> T:
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if not workflow.patched(PATCH):
            # Recorded before this patch: the cancel reached the activity, and the workflow
            # went on with what awaiting the cancelled activity raised; an activity already
            # done (its result and the cancel in one task) left the plain cancel.
            if handle.done():
                raise
            handle.cancel()
            return await handle
        workflow.logger.info("cancel requested while the charge was being recorded: finishing")
        return await handle
