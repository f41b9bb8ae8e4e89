"""SageMakerBackend review findings: a retry of a call whose first try SageMaker accepted (its
answer lost, its worker gone) must see its own change under way and not redo it; an endpoint
deleted between DescribeEndpoint and ListTags is gone, not an error; the real-time payload
limit is a validation error."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from activities.backends.base import MAX_SYNC_PAYLOAD, InvalidRequest, classify_client_error
from activities.backends.sagemaker import resource_name
from tests.backends.test_sagemaker import (
    ARN,
    NAME,
    ROLE,
    T0,
    described,
    expect_tags,
    not_found,
    spec,
)
from tests.backends.test_sagemaker import aws as aws  # noqa: F401 - the Stubber fixture


async def test_a_retried_config_change_whose_update_is_under_way_returns_it(aws) -> None:
    """The first try's UpdateEndpoint was accepted: the endpoint is Updating towards the new
    config (PendingDeploymentSummary; EndpointConfigName stays the old one until it ends). The
    retry returns that update (the workflow then polls for InService on the new config, which
    reports a rollback), instead of being refused until InService and, after a rollback,
    deploying the failing config again. No UpdateEndpoint (or any other call) is stubbed."""
    old = resource_name(NAME, "0badc0de")
    new_spec = spec(instance_type="ml.g5.2xlarge", min_instances=1, max_instances=5)
    new = resource_name(
        NAME, new_spec.model_copy(update={"execution_role_arn": ROLE}).config_hash()
    )
    pending = {
        "EndpointConfigName": new,
        "ProductionVariants": [{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
        "StartTime": T0,
    }
    aws.sm.add_response(
        "describe_endpoint",
        described("Updating", config=old, PendingDeploymentSummary=pending),
        {"EndpointName": NAME},
    )
    expect_tags(aws.sm)
    info = await aws.backend.ensure_endpoint(new_spec)
    assert (info.status, info.config_name) == ("Updating", new)


# --------------------------------------------------------------------------- payload limit


async def test_a_payload_over_the_real_time_limit_is_refused_before_sending(aws) -> None:
    """6 MB (the API model's Body max): larger, SageMaker answers 413 or resets the
    connection, which reads as a retryable ServiceUnavailable that a job would retry forever.
    No InvokeEndpoint is stubbed."""
    with pytest.raises(InvalidRequest, match="exceeds") as exc:
        await aws.backend.invoke(NAME, b"x" * (MAX_SYNC_PAYLOAD + 1), "application/json")
    assert not exc.value.retryable


def test_sagemakers_413_is_a_validation_error() -> None:
    """What InvokeEndpoint answers to an oversized body (aws/sagemaker-python-sdk#171)."""
    err = ClientError(
        {
            "Error": {"Code": "413", "Message": "HTTP content length exceeded 6291456 bytes."},
            "ResponseMetadata": {"HTTPStatusCode": 413},
        },
        "InvokeEndpoint",
    )
    classified = classify_client_error(err)
    assert isinstance(classified, InvalidRequest) and not classified.retryable


# --------------------------------------------------------------------------- vanishing


@pytest.mark.parametrize(
    "message", ["", f"Could not find resource {ARN}.", f'Could not find endpoint "{ARN}".']
)
async def test_an_endpoint_deleted_between_describe_and_list_tags_is_gone(
    aws, message: str
) -> None:
    """The reconcile lists Deleting endpoints; one whose deletion ends between its describe
    and its ListTags (which then answers a ValidationException of undocumented wording) is
    gone, as a describe a moment later says, not a non-retryable failure of the snapshot or
    of a thermal describe."""
    aws.sm.add_response("describe_endpoint", described("Deleting"), {"EndpointName": NAME})
    aws.sm.add_client_error(
        "list_tags",
        service_error_code="ValidationException",
        service_message=message,
        expected_params={"ResourceArn": ARN, "MaxResults": 100},
    )
    not_found(aws.sm, "describe_endpoint", EndpointName=NAME)
    assert await aws.backend.describe_endpoint(NAME) is None
