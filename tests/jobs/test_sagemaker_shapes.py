"""The SageMaker calls of every operation's model invocations, checked by botocore's Stubber
against the real API model: InvokeEndpoint for short operations; PutObject (the request
document) + InvokeEndpointAsync + PutObject (the invocation's record) + GetObject (the result)
for long ones."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from temporalio.testing import ActivityEnvironment

from activities.backends.base import endpoint_name
from activities.backends.sagemaker import SageMakerBackend
from activities.job_activities import InvokeRequest, JobActivities
from models_catalog.catalog import load_catalog
from models_catalog.service_state import uses_async_inference

CATALOG = load_catalog()
CASES = [
    (f"{s.id}/{op.id}", model) for s, op in CATALOG.operations() for model in op.required_models
]


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.fixture
def stubbed(tmp_path: Path):
    kw = {"region_name": "us-east-1", "aws_access_key_id": "t", "aws_secret_access_key": "t"}
    clients = {
        n: boto3.client(n, **kw)
        for n in ("sagemaker", "sagemaker-runtime", "application-autoscaling", "s3")
    }
    stubs = {n: Stubber(c) for n, c in clients.items()}
    for s in stubs.values():
        s.activate()
    backend = SageMakerBackend(
        clients["sagemaker"],
        clients["sagemaker-runtime"],
        clients["application-autoscaling"],
        clients["s3"],
        "arn:aws:iam::123456789012:role/radiant",
        async_output_s3_uri="s3://radiant-async/prod",
    )
    jobs = JobActivities(
        CATALOG,
        backend,
        engine=None,
        control=None,
        data_dir=tmp_path,  # type: ignore[arg-type]
        request_s3_uri="s3://radiant-inputs/prod",
        s3_client=clients["s3"],
    )
    yield jobs, stubs
    for s in stubs.values():
        s.assert_no_pending_responses()
        s.deactivate()


@pytest.mark.parametrize(("key", "model_id"), CASES, ids=[f"{k}:{m}" for k, m in CASES])
async def test_operation_call_shapes(stubbed, key: str, model_id: str):
    jobs, stubs = stubbed
    name = endpoint_name("radiant", "prod", model_id)
    req = InvokeRequest(
        endpoint_name=name,
        model_id=model_id,
        input_location="s3://radiant-inputs/prod/in/sample.bin",
        content_type="application/octet-stream",
        options={"k": 1},
        step="s0",
    )
    env = ActivityEnvironment()
    answer = json.dumps({"model": model_id, "ok": True}).encode()
    if not uses_async_inference(CATALOG, model_id):
        stubs["sagemaker-runtime"].add_response(
            "invoke_endpoint",
            {"Body": body(answer), "ContentType": "application/json"},
            {
                "EndpointName": name,
                "Body": ANY,
                "ContentType": "application/json",
                "Accept": "application/json",
            },
        )
        out = await env.run(jobs.invoke, req)
        assert out.output == {"model": model_id, "ok": True}
        return
    stubs["s3"].add_response(
        "put_object",
        {},
        {"Bucket": "radiant-inputs", "Key": ANY, "Body": ANY, "ContentType": "application/json"},
    )
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}"
    created = datetime(2026, 1, 1, tzinfo=UTC)
    stubs["sagemaker"].add_response(  # which incarnation of the endpoint takes the inference
        "describe_endpoint",
        {
            "EndpointName": name, "EndpointArn": arn, "EndpointConfigName": f"{name}-c",
            "EndpointStatus": "InService", "CreationTime": created, "LastModifiedTime": created,
            "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://radiant-async/prod"}},
        },
        {"EndpointName": name},
    )  # fmt: skip
    stubs["sagemaker"].add_response(
        "list_tags", {"Tags": []}, {"ResourceArn": arn, "MaxResults": 100}
    )
    out_uri = f"s3://radiant-async/prod/output/{model_id}.out"
    stubs["sagemaker-runtime"].add_response(
        "invoke_endpoint_async",
        {"InferenceId": "inf-1", "OutputLocation": out_uri},
        {"EndpointName": name, "InputLocation": ANY, "ContentType": "application/json"},
    )
    stubs["s3"].add_response(  # the invocation, recorded for a retry (not submitted twice)
        "put_object",
        {},
        {"Bucket": "radiant-inputs", "Key": ANY, "Body": ANY, "ContentType": "application/json"},
    )
    invocation = await env.run(jobs.start_async, req)
    assert invocation.output_location == out_uri
    assert (invocation.endpoint_name, invocation.endpoint_created_at) == (name, created)
    stubs["s3"].add_response(
        "get_object",
        {"Body": body(answer)},
        {"Bucket": "radiant-async", "Key": f"prod/output/{model_id}.out"},
    )
    out = await env.run(jobs.fetch_async, invocation)
    assert out.output == {"model": model_id, "ok": True}


def test_every_operation_is_covered():
    assert len({k for k, _ in CASES}) == 16
    long_ops = {f"{s.id}/{op.id}" for s, op in CATALOG.operations() if op.long_running}
    async_ops = {k for k, m in CASES if uses_async_inference(CATALOG, m)}
    assert async_ops == long_ops  # every long operation polls an async endpoint


@pytest.mark.parametrize(
    ("code", "status"), [("NoSuchBucket", 404), ("AccessDenied", 403)], ids=["bucket", "denied"]
)
async def test_storing_an_async_request_that_s3_refuses_fails_the_job(stubbed, code, status):
    """A missing bucket or a denied PutObject is classified like every backend call: a
    non-retryable failure, not an unclassified error Temporal retries forever while the job
    keeps its model warm."""
    from temporalio.exceptions import ApplicationError

    jobs, stubs = stubbed
    model_id = next(m for _, m in CASES if uses_async_inference(CATALOG, m))
    stubs["s3"].add_client_error("put_object", service_error_code=code, http_status_code=status)
    req = InvokeRequest(
        endpoint_name=endpoint_name("radiant", "prod", model_id), model_id=model_id,
        input_location="s3://radiant-inputs/prod/in/sample.bin",
        content_type="application/octet-stream", options={}, step="s0",
    )  # fmt: skip
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(jobs.start_async, req)
    assert err.value.non_retryable and code in str(err.value)
