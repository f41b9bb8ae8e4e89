"""Review finding: an S3 NoSuchBucket (the async request document's PutObject, the async
result's GetObject) was classified ResourceNotFound, which a job takes for a vanished endpoint
(ENDPOINT_GONE): it warmed the model again and submitted the async inference twice. A missing
bucket is a configuration error: the job fails once, saying which bucket and setting."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.backends.base import endpoint_name
from activities.backends.errors import classify_client_error
from activities.job_activities import InvokeRequest
from models_catalog.service_state import uses_async_inference
from tests.jobs.test_sagemaker_shapes import CASES, CATALOG, stubbed  # noqa: F401  (fixture)
from tests.jobs.test_service_jobs import prepare, start_job
from workflows.service_job import ENDPOINT_GONE


async def test_storing_an_async_request_in_a_missing_bucket_is_not_a_gone_endpoint(
    stubbed,  # noqa: F811
) -> None:
    jobs, stubs = stubbed
    model_id = next(m for _, m in CASES if uses_async_inference(CATALOG, m))
    stubs["s3"].add_client_error(
        "put_object", service_error_code="NoSuchBucket",
        service_message="The specified bucket does not exist", http_status_code=404,
    )  # fmt: skip
    req = InvokeRequest(
        endpoint_name=endpoint_name("radiant", "prod", model_id), model_id=model_id,
        input_location="s3://radiant-inputs/prod/in/sample.bin",
        content_type="application/octet-stream", options={}, step="s0",
    )  # fmt: skip
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(jobs.start_async, req)
    assert err.value.non_retryable
    assert err.value.type not in ENDPOINT_GONE
    assert "NoSuchBucket" in str(err.value)
    assert "RADIANT_INPUT_SPOOL_S3_URI" in str(err.value)


def _no_such_bucket(op: str) -> ClientError:
    resp = {
        "Error": {
            "Code": "NoSuchBucket",
            "Message": "The specified bucket does not exist",
            "BucketName": "radiant-async-typo",
        },
        "ResponseMetadata": {"HTTPStatusCode": 404},
    }
    return ClientError(resp, op)  # type: ignore[arg-type]


async def test_async_result_bucket_missing_fails_the_job_once(thermal, tenants, monkeypatch):
    """The job fails on the first NoSuchBucket: no second warm-up, no second submission."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])
    submitted: list[str] = []
    invoke_async = h.backend.invoke_async

    async def counting(name, *a, **kw):
        submitted.append(name)
        return await invoke_async(name, *a, **kw)

    async def no_bucket(inv):  # what the backend raises for S3's answer (classified)
        raise classify_client_error(_no_such_bucket("GetObject"))

    monkeypatch.setattr(h.backend, "invoke_async", counting)
    monkeypatch.setattr(h.backend, "fetch_async_result", no_bucket)
    handle = await start_job(h, app, big.name, "scientific/protein/fold")
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=120)
    verified = 0  # acquires of an endpoint taken for gone (AcquireRequest.verify)
    async for ev in handle.fetch_history_events():
        a = ev.activity_task_scheduled_event_attributes
        if a.activity_type.name == "jobs.acquire_model" and b'"verify":true' in b"".join(
            p.data.replace(b" ", b"") for p in a.input.payloads
        ):
            verified += 1
    assert len(submitted) == 1  # not submitted again after a re-warm
    assert verified == 0
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert "radiant-async-typo" in cause.message and "NoSuchBucket" in cause.message
