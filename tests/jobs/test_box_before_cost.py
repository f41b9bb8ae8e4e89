"""Review finding: an `options.box` outside the image was refused by the model server only
after the model warmed up (InvocationFailed). The input check refuses it first: InvalidInput,
no endpoint started."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.jobs.test_service_jobs import prepare, start_job
from workflows.service_types import ERR_INVALID_INPUT


async def test_box_outside_the_image_is_refused_before_any_warm_up(thermal, tenants) -> None:
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    handle = await start_job(
        h, app, big.name, "perception/segment", options={"box": [50000, 50000, 60000, 60000]}
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=90)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (ERR_INVALID_INPUT, True)
    assert "does not cover at least 2 x 2 pixels of the 160 x 120 image" in cause.message
    assert not await h.backend.list_endpoints(f"radiant-{app}-")  # nothing warmed
