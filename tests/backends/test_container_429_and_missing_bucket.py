"""Review findings: a container's 429 is throttling (retried), not a bad input; a missing S3
bucket is a configuration error, not a vanished endpoint (which a job answers by warming the
model and submitting its inference again)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from activities.backends.base import (
    NON_RETRYABLE_ERROR_TYPES,
    AsyncInvocation,
    InvalidRequest,
    ModelError,
    ModelServerError,
    Throttled,
    classify_client_error,
)
from activities.backends.local import _container_error
from tests.backends.test_sagemaker import NAME, aws  # noqa: F401  (fixture)
from workflows.service_job import ENDPOINT_GONE


def model_error(status: int) -> ClientError:
    """InvokeEndpoint's ModelError as botocore parses it: the container's status is
    `OriginalStatusCode` at the top level of the response."""
    resp = {
        "Error": {"Code": "ModelError", "Message": "Received client error from primary"},
        "ResponseMetadata": {"HTTPStatusCode": 424},
        "OriginalStatusCode": status,
        "OriginalMessage": "busy",
    }
    return ClientError(resp, "InvokeEndpoint")  # type: ignore[arg-type]


CONTAINER_CASES = [
    (429, Throttled, True),  # overloaded container: back off, retry
    (400, ModelError, False),  # the input is bad
    (413, ModelError, False),
    (503, ModelServerError, True),  # 5xx: retried, a few tries per input (jobs.invoke)
    (500, ModelServerError, True),
]


@pytest.mark.parametrize(("status", "expected", "retryable"), CONTAINER_CASES)
def test_container_status_decides_the_class(status: int, expected: type, retryable: bool) -> None:
    err = classify_client_error(model_error(status))
    assert type(err) is expected
    assert err.retryable is retryable
    assert (err.code in NON_RETRYABLE_ERROR_TYPES) is (not retryable)


@pytest.mark.parametrize(("status", "expected", "retryable"), CONTAINER_CASES)
def test_the_local_stand_in_classifies_a_container_answer_alike(
    status: int, expected: type, retryable: bool
) -> None:
    """The local stand-in's own mapping of its model servers' answers matches SageMaker's."""
    cls = _container_error(status)
    assert cls is expected and cls("x").retryable is retryable


@pytest.mark.parametrize(
    ("status", "expected"), [(429, Throttled), (503, ModelServerError)], ids=["429", "503"]
)
async def test_invoke_container_overloaded_is_retried(aws, status: int, expected: type) -> None:  # noqa: F811
    aws.rt.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (429) from primary with message ...",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": status},
    )
    with pytest.raises(expected) as exc:
        await aws.backend.invoke(NAME, b"x", "application/octet-stream")
    assert exc.value.retryable
    assert exc.value.code not in NON_RETRYABLE_ERROR_TYPES


def test_no_such_bucket_is_a_configuration_error_naming_the_bucket() -> None:
    resp = {
        "Error": {
            "Code": "NoSuchBucket",
            "Message": "The specified bucket does not exist",
            "BucketName": "radiant-inputs-typo",
        },
        "ResponseMetadata": {"HTTPStatusCode": 404},
    }
    err = classify_client_error(ClientError(resp, "PutObject"))  # type: ignore[arg-type]
    assert isinstance(err, InvalidRequest) and not err.retryable
    assert err.code not in ENDPOINT_GONE
    assert err.code in NON_RETRYABLE_ERROR_TYPES
    assert "'radiant-inputs-typo'" in err.message and "NoSuchBucket" in err.message
    assert "RADIANT_INPUT_SPOOL_S3_URI" in err.message
    assert "RADIANT_ASYNC_OUTPUT_S3_URI" in err.message


def test_no_such_key_is_still_not_found() -> None:
    resp = {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}
    err = classify_client_error(ClientError(resp, "GetObject"))  # type: ignore[arg-type]
    assert err.code == "ResourceNotFound"


async def test_async_result_bucket_missing_is_not_a_gone_endpoint(aws) -> None:  # noqa: F811
    inv = AsyncInvocation(
        inference_id="abc",
        output_location="s3://radiant-async-typo/dev/output/abc.out",
        failure_location="s3://radiant-async-typo/dev/failure/abc-error.out",
    )
    aws.s3.add_client_error(
        "get_object", service_error_code="NoSuchBucket",
        service_message="The specified bucket does not exist", http_status_code=404,
        expected_params={"Bucket": "radiant-async-typo", "Key": "dev/output/abc.out"},
    )  # fmt: skip
    with pytest.raises(InvalidRequest) as exc:
        await aws.backend.fetch_async_result(inv)
    err = exc.value
    assert not err.retryable
    assert err.code not in ENDPOINT_GONE
    assert err.aws_code == "NoSuchBucket"
    assert "'radiant-async-typo'" in err.message
    assert "RADIANT_ASYNC_OUTPUT_S3_URI" in err.message
    aws.s3.assert_no_pending_responses()
