"""SageMakerBackend against botocore Stubbers: every request is validated against the real API
model (instance types such as ml.g5.xlarge included), responses too."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.backends.base import (
    NON_RETRYABLE_ERROR_TYPES,
    AccessDenied,
    AsyncInferenceFailed,
    AsyncInvocation,
    EndpointFailed,
    EndpointNameConflict,
    EndpointSpec,
    InvalidEndpointState,
    InvalidRequest,
    ModelError,
    ModelNotReady,
    ModelServerError,
    QuotaExceeded,
    ResourceNotFound,
    Throttled,
    endpoint_name,
)
from activities.backends.sagemaker import SageMakerBackend, resource_name
from activities.thermal_activities import (
    ERR_NOT_READY,
    ERR_UPDATE_ROLLED_BACK,
    ThermalActivities,
    WaitInServiceInput,
)
from models_catalog.catalog import load_catalog

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/radiant-dev-sagemaker-execution"
IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-gpu-py310-cu121-ubuntu22.04"
)
NAME = endpoint_name("thinktank", "dev", "yolov8m")
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{NAME}"
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": f"endpoint/{NAME}/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


def spec(**over: Any) -> EndpointSpec:
    base: dict[str, Any] = {
        "endpoint_name": NAME,
        "model_id": "yolov8m",
        "image": IMAGE,
        "instance_type": "ml.g5.xlarge",
        "environment": {"MODEL_NAME": "yolov8m"},
        "instance_count": 1,
        "min_instances": 0,
        "max_instances": 5,
        "tags": {"radiant:category": "vision_detection"},
    }
    return EndpointSpec(**{**base, **over})


def described(status: str = "InService", config: str | None = None, **extra: Any) -> dict:
    resp: dict[str, Any] = {
        "EndpointName": NAME,
        "EndpointArn": ARN,
        "EndpointConfigName": config or resource_name(NAME, spec().model_copy(
            update={"execution_role_arn": ROLE}).config_hash()),
        "EndpointStatus": status,
        "CreationTime": T0,
        "LastModifiedTime": T0,
    }  # fmt: skip
    if status != "Creating":
        resp["ProductionVariants"] = [
            {"VariantName": "AllTraffic", "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}
        ]
    resp.update(extra)
    return resp


OWNER = {"radiant:app": "thinktank", "radiant:environment": "dev"}


def expect_tags(sm: Stubber, app: str = "thinktank", env: str = "dev") -> None:
    """ListTags of the described endpoint: ensure checks who owns an existing endpoint."""
    tags = {
        "radiant:app": app,
        "radiant:environment": env,
        "radiant:model": "yolov8m",
        "radiant:managed-by": "radiant-orchestrator",
    }
    sm.add_response(
        "list_tags",
        {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]},
        {"ResourceArn": ARN, "MaxResults": 100},
    )


def not_found(stub: Stubber, method: str, what: str = "endpoint", **params: Any) -> None:
    stub.add_client_error(
        method,
        service_error_code="ValidationException",
        service_message=f'Could not find {what} "{NAME}".',
        http_status_code=400,
        expected_params=params or None,
    )


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


CURRENT = described()["EndpointConfigName"]  # the config `described()` serves by default


def expect_pruned(
    sm: Stubber, *stale: str, current: str = CURRENT, listed: tuple[str, ...] = ()
) -> None:
    """The prune on an InService endpoint: ListEndpointConfigs (`current`, `stale`, `listed`),
    DeleteEndpointConfig of each stale one, ListModels (the same names), DeleteModel of each."""
    listing = (current, *stale, *listed)
    sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [
            {"EndpointConfigName": n, "EndpointConfigArn": f"arn:aws:sagemaker:x:1:c/{n}",
             "CreationTime": T0} for n in listing]},
        {"NameContains": NAME, "MaxResults": 100},
    )  # fmt: skip
    for name in stale:
        sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    sm.add_response(
        "list_models",
        {"Models": [
            {"ModelName": n, "ModelArn": f"arn:aws:sagemaker:x:1:m/{n}", "CreationTime": T0}
            for n in listing]},
        {"NameContains": NAME, "MaxResults": 100},
    )  # fmt: skip
    for name in stale:
        sm.add_response("delete_model", {}, {"ModelName": name})


@pytest.fixture
def aws(caplog: pytest.LogCaptureFixture):
    kw = {
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    clients = {
        n: boto3.client(n, **kw)
        for n in ("sagemaker", "sagemaker-runtime", "application-autoscaling", "s3")
    }
    stubs = SimpleNamespace(
        sm=Stubber(clients["sagemaker"]),
        rt=Stubber(clients["sagemaker-runtime"]),
        aa=Stubber(clients["application-autoscaling"]),
        s3=Stubber(clients["s3"]),
    )
    for stub in vars(stubs).values():
        stub.activate()
    stubs.backend = SageMakerBackend(
        clients["sagemaker"],
        clients["sagemaker-runtime"],
        clients["application-autoscaling"],
        clients["s3"],
        ROLE,
        async_output_s3_uri="s3://radiant-async/dev",
    )
    stubs.prune_may_fail = False
    yield stubs
    # A failed prune is only logged, never raised: a call the Stubber did not expect there
    # would pass unseen, so no warning may be logged unless the test asks for one.
    warned = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name == "activities.backends.sagemaker" and r.levelno >= logging.WARNING
    ]
    assert stubs.prune_may_fail or not warned, warned
    for stub in (stubs.sm, stubs.rt, stubs.aa, stubs.s3):
        stub.assert_no_pending_responses()
        stub.deactivate()


def expect_create_model_and_config(sm: Stubber, config: str, **variant_extra: Any) -> None:
    tags = ANY
    sm.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{config}"},
        {
            "ModelName": config,
            "PrimaryContainer": {"Image": IMAGE, "Environment": {"MODEL_NAME": "yolov8m"}},
            "ExecutionRoleArn": ROLE,
            "Tags": tags,
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{config}"},
        {
            "EndpointConfigName": config,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": config,
                    "InstanceType": variant_extra.pop("InstanceType", "ml.g5.xlarge"),
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1.0,
                    **variant_extra,
                }
            ],
            "Tags": tags,
        },
    )


# --------------------------------------------------------------------------- ensure_endpoint


async def test_ensure_creates_model_config_endpoint(aws) -> None:
    s = spec()
    config = resource_name(NAME, s.model_copy(update={"execution_role_arn": ROLE}).config_hash())
    not_found(aws.sm, "describe_endpoint", EndpointName=NAME)
    expect_create_model_and_config(aws.sm, config)
    aws.sm.add_response(
        "create_endpoint",
        {"EndpointArn": ARN},
        {
            "EndpointName": NAME,
            "EndpointConfigName": config,
            "Tags": [
                {"Key": "radiant:category", "Value": "vision_detection"},
                {"Key": "radiant:managed-by", "Value": "radiant-orchestrator"},
                {"Key": "radiant:model", "Value": "yolov8m"},
            ],
        },
    )
    info = await aws.backend.ensure_endpoint(s)
    assert info.status == "Creating"
    assert info.config_name == config and config.startswith(f"{NAME}-") and len(config) <= 63
    assert info.desired_instance_count == 1 and info.instance_count == 0


async def test_ensure_is_idempotent_when_endpoint_exists(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_tags(aws.sm)
    expect_pruned(aws.sm)  # nothing superseded
    info = await aws.backend.ensure_endpoint(spec(tags=OWNER))  # no Create* call is stubbed
    assert (info.status, info.instance_count, info.model_id) == ("InService", 1, "yolov8m")


async def test_ensure_refuses_an_endpoint_another_app_owns(aws) -> None:
    """("ThinkTank", "dev") and ("thinktank", "dev") share one endpoint name: the second must not
    adopt (and later scale or delete) the first one's endpoint. No Update*/Delete* is stubbed."""
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_tags(aws.sm, app="ThinkTank")
    with pytest.raises(EndpointNameConflict) as exc:
        await aws.backend.ensure_endpoint(spec(tags=OWNER))
    assert not exc.value.retryable and exc.value.code in NON_RETRYABLE_ERROR_TYPES
    assert "thinktank/dev/yolov8m cannot use endpoint" in exc.value.message
    assert "ThinkTank/dev/yolov8m already owns" in exc.value.message


async def test_ensure_waits_for_another_owners_endpoint_being_deleted(aws) -> None:
    """The name is free once the other owner's delete finishes: retryable, not a conflict."""
    aws.sm.add_response("describe_endpoint", described("Deleting"), {"EndpointName": NAME})
    with pytest.raises(InvalidEndpointState) as exc:
        await aws.backend.ensure_endpoint(spec(tags=OWNER))  # no ListTags stubbed either
    assert exc.value.retryable


async def test_ensure_adopts_an_endpoint_without_owner_tags(aws) -> None:
    """Endpoints of versions before ownership tags have none: they decide nothing."""
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": [{"Key": "radiant:model", "Value": "yolov8m"}]})
    expect_pruned(aws.sm)
    assert (await aws.backend.ensure_endpoint(spec(tags=OWNER))).status == "InService"


async def test_ensure_after_crash_tolerates_existing_model_and_config(aws) -> None:
    s = spec()
    not_found(aws.sm, "describe_endpoint")
    for op, what in (
        ("create_model", "model"),
        ("create_endpoint_config", "endpoint configuration"),
    ):
        aws.sm.add_client_error(
            op,
            service_error_code="ValidationException",
            service_message=f'Cannot create already existing {what} "arn:aws:sagemaker:x".',
        )
    aws.sm.add_response("create_endpoint", {"EndpointArn": ARN})
    assert (await aws.backend.ensure_endpoint(s)).status == "Creating"


def expect_create_refused_as_existing(sm: Stubber) -> None:
    """A create whose CreateEndpoint answers "already existing" (another worker, or an
    endpoint of that name still Deleting): the describe that follows decides."""
    not_found(sm, "describe_endpoint")
    sm.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:m/m"})
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/c"},
    )
    sm.add_client_error(
        "create_endpoint", service_error_code="ValidationException",
        service_message=f'Cannot create already existing endpoint "{ARN}".',
    )  # fmt: skip


@pytest.mark.parametrize("race_env", ["dev", "Dev"])
async def test_ensure_lost_create_race_returns_existing(aws, race_env: str) -> None:
    expect_create_refused_as_existing(aws.sm)
    aws.sm.add_response("describe_endpoint", described("Creating"))
    expect_tags(aws.sm, env=race_env)
    ensure = aws.backend.ensure_endpoint(spec(tags=OWNER))
    if race_env == "dev":
        assert (await ensure).status == "Creating"
    else:  # the race was lost to another owner of the same name
        with pytest.raises(EndpointNameConflict):
            await ensure


async def test_changed_spec_gets_new_config_and_update_endpoint(aws) -> None:
    old = resource_name(NAME, "0badc0de")
    new_spec = spec(instance_type="ml.g5.2xlarge")
    new = resource_name(
        NAME, new_spec.model_copy(update={"execution_role_arn": ROLE}).config_hash()
    )
    assert new != old
    aws.sm.add_response("describe_endpoint", described("InService", config=old))
    expect_tags(aws.sm)
    expect_pruned(aws.sm, current=old)
    expect_create_model_and_config(aws.sm, new, InstanceType="ml.g5.2xlarge")
    aws.aa.add_response("deregister_scalable_target", {}, TARGET)
    aws.sm.add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {"EndpointName": NAME, "EndpointConfigName": new, "RetainAllVariantProperties": True},
    )
    info = await aws.backend.ensure_endpoint(new_spec)
    assert (info.status, info.config_name) == ("Updating", new)


async def test_changed_spec_while_updating_is_retryable(aws) -> None:
    aws.sm.add_response(
        "describe_endpoint", described("Updating", config=resource_name(NAME, "0badc0de"))
    )
    expect_tags(aws.sm)
    with pytest.raises(InvalidEndpointState) as exc:
        await aws.backend.ensure_endpoint(spec())
    assert exc.value.retryable


async def test_ensure_on_failed_endpoint_surfaces_failure_reason(aws) -> None:
    reason = "CapacityError: Unable to provision requested ML compute capacity."
    aws.sm.add_response("describe_endpoint", described("Failed", FailureReason=reason))
    expect_tags(aws.sm)
    with pytest.raises(EndpointFailed) as exc:
        await aws.backend.ensure_endpoint(spec())
    assert not exc.value.retryable and exc.value.failure_reason == reason
    assert exc.value.code in NON_RETRYABLE_ERROR_TYPES


async def test_resource_limit_exceeded_is_not_retryable(aws) -> None:
    not_found(aws.sm, "describe_endpoint")
    expect_create_model_and_config(
        aws.sm,
        resource_name(NAME, spec().model_copy(update={"execution_role_arn": ROLE}).config_hash()),
    )
    aws.sm.add_client_error(
        "create_endpoint",
        service_error_code="ResourceLimitExceeded",
        service_message="The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0",
    )
    with pytest.raises(QuotaExceeded) as exc:
        await aws.backend.ensure_endpoint(spec())
    assert not exc.value.retryable and exc.value.code in NON_RETRYABLE_ERROR_TYPES


async def test_throttling_is_retryable(aws) -> None:
    aws.sm.add_client_error(
        "describe_endpoint",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
    )
    with pytest.raises(Throttled) as exc:
        await aws.backend.ensure_endpoint(spec())
    assert exc.value.retryable and exc.value.code not in NON_RETRYABLE_ERROR_TYPES


async def test_async_endpoint_config_has_output_and_failure_paths(aws) -> None:
    s = spec(async_inference=True, min_instances=0)
    eff = s.model_copy(
        update={"execution_role_arn": ROLE, "async_output_s3_uri": "s3://radiant-async/dev"}
    )
    config = resource_name(NAME, eff.config_hash())
    not_found(aws.sm, "describe_endpoint")
    aws.sm.add_response(
        "create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m"}
    )
    aws.sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/c"},
        {
            "EndpointConfigName": config,
            "ProductionVariants": ANY,
            "AsyncInferenceConfig": {
                "OutputConfig": {
                    "S3OutputPath": "s3://radiant-async/dev/output",
                    "S3FailurePath": "s3://radiant-async/dev/failure",
                }
            },
            "Tags": ANY,
        },
    )
    aws.sm.add_response("create_endpoint", {"EndpointArn": ARN})
    info = await aws.backend.ensure_endpoint(s)
    assert info.async_inference and info.config_name == config


async def test_missing_role_is_a_validation_error(aws) -> None:
    aws.backend.execution_role_arn = None
    with pytest.raises(InvalidRequest):
        await aws.backend.ensure_endpoint(spec())


# --------------------------------------------------------------------------- describe / list


async def test_describe_missing_endpoint_is_none(aws) -> None:
    not_found(aws.sm, "describe_endpoint", EndpointName=NAME)
    assert await aws.backend.describe_endpoint(NAME) is None


async def test_describe_reads_model_id_from_tags(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.sm.add_response(
        "list_tags",
        {"Tags": [{"Key": "radiant:model", "Value": "yolov8m"}]},
        {"ResourceArn": ARN, "MaxResults": 100},
    )
    info = await aws.backend.describe_endpoint(NAME)
    assert info is not None and info.model_id == "yolov8m" and info.created_at == T0


async def test_list_endpoints_pages_and_skips_vanished(aws) -> None:
    other = f"{NAME}-b"
    summary = {
        "EndpointArn": ARN,
        "CreationTime": T0,
        "LastModifiedTime": T0,
        "EndpointStatus": "InService",
    }
    aws.sm.add_response(
        "list_endpoints",
        {"Endpoints": [{**summary, "EndpointName": NAME}], "NextToken": "t1"},
        {"NameContains": "radiant-thinktank-dev-", "MaxResults": 100},
    )
    aws.sm.add_response(
        "list_endpoints",
        {"Endpoints": [{**summary, "EndpointName": other}]},
        {"NameContains": "radiant-thinktank-dev-", "MaxResults": 100, "NextToken": "t1"},
    )
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": [{"Key": "radiant:model", "Value": "yolov8m"}]})
    not_found(aws.sm, "describe_endpoint", EndpointName=other)  # deleted meanwhile
    infos = await aws.backend.list_endpoints("radiant-thinktank-dev-")
    assert [(i.endpoint_name, i.model_id) for i in infos] == [(NAME, "yolov8m")]


# --------------------------------------------------------------------------- capacity


async def test_set_capacity_updates_count_and_registers_autoscaling(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.sm.add_response(
        "update_endpoint_weights_and_capacities",
        {"EndpointArn": ARN},
        {
            "EndpointName": NAME,
            "DesiredWeightsAndCapacities": [
                {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}
            ],
        },
    )
    aws.aa.add_response(
        "register_scalable_target", {}, {**TARGET, "MinCapacity": 2, "MaxCapacity": 3}
    )
    aws.aa.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p"},
        {
            **TARGET,
            "PolicyName": f"{NAME}-target-tracking",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 70.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    expect_pruned(aws.sm)
    info = await aws.backend.set_capacity(NAME, 2, 2, 3)  # HOT: floor 2
    assert (info.status, info.desired_instance_count) == ("Updating", 2)


async def test_set_capacity_same_count_only_refreshes_autoscaling(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.aa.add_response(
        "register_scalable_target", {}, {**TARGET, "MinCapacity": 1, "MaxCapacity": 3}
    )
    aws.aa.add_response("put_scaling_policy", {"PolicyARN": "arn:p"})
    expect_pruned(aws.sm)
    info = await aws.backend.set_capacity(NAME, 1, 1, 3)
    assert info.status == "InService"


@pytest.mark.parametrize("status", ["Creating", "Updating", "SystemUpdating", "RollingBack"])
async def test_set_capacity_while_transitional_is_retryable(aws, status: str) -> None:
    aws.sm.add_response("describe_endpoint", described(status))
    with pytest.raises(InvalidEndpointState) as exc:
        await aws.backend.set_capacity(NAME, 2, 1, 3)
    assert exc.value.retryable and exc.value.code == "InvalidEndpointState"


async def test_set_capacity_in_progress_validation_error_is_retryable(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.sm.add_client_error(
        "update_endpoint_weights_and_capacities",
        service_error_code="ValidationException",
        service_message=f'Cannot update in-progress endpoint "{ARN}".',
    )
    with pytest.raises(InvalidEndpointState):
        await aws.backend.set_capacity(NAME, 2, 1, 3)


async def test_set_capacity_to_zero_on_realtime_endpoint_is_rejected(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"))
    with pytest.raises(InvalidRequest, match="delete_endpoint"):
        await aws.backend.set_capacity(NAME, 0, 0, 3)


async def test_async_endpoint_floor_of_zero_is_refused_before_any_call(aws) -> None:
    """Scaling out from 0 on the backlog target alone waits for 5 queued requests per instance
    (AWS needs a HasBacklogWithoutCapacity alarm this backend does not create): refused."""
    aws.sm.add_response(
        "describe_endpoint",
        described("InService", AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/o"}}),
    )
    with pytest.raises(InvalidRequest, match="floor of 0 instances is not supported"):
        await aws.backend.set_capacity(NAME, 0, 0, 2)


async def test_async_endpoint_scales_on_backlog_policy(aws) -> None:
    aws.sm.add_response(
        "describe_endpoint",
        described("InService", AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/o"}}),
    )
    aws.sm.add_response("update_endpoint_weights_and_capacities", {"EndpointArn": ARN})
    aws.aa.add_response(
        "register_scalable_target", {}, {**TARGET, "MinCapacity": 1, "MaxCapacity": 2}
    )
    aws.aa.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:p"},
        {
            **TARGET,
            "PolicyName": ANY,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 5.0,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": NAME}],
                    "Statistic": "Average",
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    expect_pruned(aws.sm)
    info = await aws.backend.set_capacity(NAME, 2, 1, 2)
    assert info.desired_instance_count == 2


# --------------------------------------------------------------------------- delete


async def test_delete_removes_everything_and_tolerates_missing_parts(aws) -> None:
    current, stale = resource_name(NAME, "11111111"), resource_name(NAME, "22222222")
    neighbour = resource_name(f"{NAME}-x", "33333333")  # another endpoint's config: kept
    aws.aa.add_client_error(
        "deregister_scalable_target",
        service_error_code="ObjectNotFoundException",
        service_message="No scalable target registered",
        expected_params=TARGET,
    )
    aws.sm.add_response("delete_endpoint", {}, {"EndpointName": NAME})
    aws.sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [
            {"EndpointConfigName": n, "EndpointConfigArn": f"arn:aws:sagemaker:x:1:c/{n}",
             "CreationTime": T0} for n in (current, stale, neighbour)]},
        {"NameContains": NAME, "MaxResults": 100},
    )  # fmt: skip
    aws.sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": current})
    not_found(aws.sm, "delete_endpoint_config", "endpoint configuration", EndpointConfigName=stale)
    aws.sm.add_response(
        "list_models",
        {
            "Models": [
                {"ModelName": current, "ModelArn": "arn:aws:sagemaker:x:1:m/c", "CreationTime": T0}
            ]
        },
        {"NameContains": NAME, "MaxResults": 100},
    )
    not_found(aws.sm, "delete_model", "model", ModelName=current)
    await aws.backend.delete_endpoint(NAME)


async def test_delete_of_missing_endpoint_succeeds(aws) -> None:
    aws.aa.add_client_error(
        "deregister_scalable_target", service_error_code="ObjectNotFoundException"
    )
    not_found(aws.sm, "delete_endpoint", EndpointName=NAME)
    aws.sm.add_response("list_endpoint_configs", {"EndpointConfigs": []})
    aws.sm.add_response("list_models", {"Models": []})
    await aws.backend.delete_endpoint(NAME)


# --------------------------------------------------------------------------- superseded configs


def expect_capacity_refresh(aa: Stubber) -> None:
    """set_capacity(NAME, 1, 1, 3) on the 1-instance endpoint: autoscaling only."""
    aa.add_response("register_scalable_target", {}, {**TARGET, "MinCapacity": 1, "MaxCapacity": 3})
    aa.add_response("put_scaling_policy", {"PolicyARN": "arn:p"})


async def test_set_capacity_in_service_prunes_superseded_configs_and_models(aws) -> None:
    """A HOT endpoint updated many times and never deleted: once it is InService on its current
    config, the configs and models of earlier ones go (also a model whose config an earlier
    prune already deleted); the current pair and another endpoint's resources stay."""
    stale = [resource_name(NAME, h) for h in ("0badc0de", "22222222", "33333333")]
    neighbour = resource_name(f"{NAME}-x", "44444444")
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_capacity_refresh(aws.aa)

    def configs(*names: str) -> list[dict[str, Any]]:
        return [
            {"EndpointConfigName": n, "EndpointConfigArn": f"arn:aws:sagemaker:x:1:c/{n}",
             "CreationTime": T0} for n in names
        ]  # fmt: skip

    listing = {"NameContains": NAME, "MaxResults": 100}
    aws.sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": configs(stale[0], CURRENT), "NextToken": "page-2"},
        listing,
    )
    aws.sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": configs(neighbour, stale[1])},
        {**listing, "NextToken": "page-2"},
    )
    for name in stale[:2]:
        aws.sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    aws.sm.add_response(
        "list_models",
        {"Models": [
            {"ModelName": n, "ModelArn": f"arn:aws:sagemaker:x:1:m/{n}", "CreationTime": T0}
            for n in (CURRENT, *stale, neighbour)]},
        listing,
    )  # fmt: skip
    for name in stale:
        aws.sm.add_response("delete_model", {}, {"ModelName": name})
    info = await aws.backend.set_capacity(NAME, 1, 1, 3)
    assert (info.status, info.config_name) == ("InService", CURRENT)


@pytest.mark.parametrize(
    "status", ["Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"]
)
async def test_nothing_is_pruned_unless_in_service(aws, status: str) -> None:
    """While Updating the old config still serves, in UpdateRollbackFailed both may: neither
    ensure (on the current config) nor set_capacity lists or deletes anything (none stubbed)."""
    # Updating to a new config: SageMaker describes the deployment under way.
    pending = {"PendingDeploymentSummary": {"EndpointConfigName": "radiant-next"}}
    extra = pending if status == "Updating" else {}
    aws.sm.add_response("describe_endpoint", described(status, **extra))
    expect_tags(aws.sm)
    assert (await aws.backend.ensure_endpoint(spec(tags=OWNER))).status == status
    aws.sm.add_response("describe_endpoint", described(status, **extra))
    with pytest.raises(InvalidEndpointState):
        await aws.backend.set_capacity(NAME, 1, 1, 3)


async def test_a_config_this_backend_did_not_name_prunes_nothing(aws) -> None:
    """Its model's name is unknown (ours share their config's name): keep everything."""
    aws.sm.add_response("describe_endpoint", described("InService", config="hand-made-config"))
    expect_capacity_refresh(aws.aa)
    assert (await aws.backend.set_capacity(NAME, 1, 1, 3)).status == "InService"


async def test_a_retried_prune_finds_the_superseded_resources_gone(aws) -> None:
    stale = resource_name(NAME, "0badc0de")
    aws.sm.add_response("describe_endpoint", described("InService"))
    expect_capacity_refresh(aws.aa)
    aws.sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [
            {"EndpointConfigName": n, "EndpointConfigArn": f"arn:aws:sagemaker:x:1:c/{n}",
             "CreationTime": T0} for n in (CURRENT, stale)]},
    )  # fmt: skip
    not_found(aws.sm, "delete_endpoint_config", "endpoint configuration", EndpointConfigName=stale)
    aws.sm.add_response(
        "list_models",
        {"Models": [
            {"ModelName": n, "ModelArn": f"arn:aws:sagemaker:x:1:m/{n}", "CreationTime": T0}
            for n in (CURRENT, stale)]},
    )  # fmt: skip
    not_found(aws.sm, "delete_model", "model", ModelName=stale)
    assert (await aws.backend.set_capacity(NAME, 1, 1, 3)).status == "InService"


@pytest.mark.parametrize(
    ("code", "retryable"), [("AccessDeniedException", False), ("ThrottlingException", True)]
)
async def test_a_failed_prune_never_fails_the_capacity_change(
    aws, caplog: pytest.LogCaptureFixture, code: str, retryable: bool
) -> None:
    """Housekeeping: a denied or throttled DeleteEndpointConfig is logged, and the capacity
    change it followed succeeds (the next prune or delete_endpoint retries it)."""
    aws.prune_may_fail = True
    stale = resource_name(NAME, "0badc0de")
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.sm.add_response("update_endpoint_weights_and_capacities", {"EndpointArn": ARN})
    aws.aa.add_response("register_scalable_target", {})
    aws.aa.add_response("put_scaling_policy", {"PolicyARN": "arn:p"})
    aws.sm.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [
            {"EndpointConfigName": stale, "EndpointConfigArn": "arn:aws:sagemaker:x:1:c/s",
             "CreationTime": T0}]},
    )  # fmt: skip
    aws.sm.add_client_error(
        "delete_endpoint_config", service_error_code=code, service_message="no",
        http_status_code=400, expected_params={"EndpointConfigName": stale},
    )  # fmt: skip
    info = await aws.backend.set_capacity(NAME, 2, 1, 3)  # no ListModels after the failure
    assert (info.status, info.desired_instance_count) == ("Updating", 2)
    expected = "Throttled" if retryable else "AccessDenied"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"endpoint {NAME}: pruning superseded configs failed: {expected}: DeleteEndpointConfig: no"
    ]


async def test_ensure_on_its_current_in_service_config_prunes_superseded(aws) -> None:
    stale = resource_name(NAME, "0badc0de")
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_tags(aws.sm)
    expect_pruned(aws.sm, stale)
    assert (await aws.backend.ensure_endpoint(spec(tags=OWNER))).status == "InService"


async def test_a_config_change_prunes_all_but_the_serving_and_the_new_config(aws) -> None:
    """Before UpdateEndpoint, while still InService on `old`: `old` serves until the update
    finishes and `new` (made by an earlier try of this call, say) is about to: both stay."""
    old, stale = resource_name(NAME, "0badc0de"), resource_name(NAME, "22222222")
    new_spec = spec(instance_type="ml.g5.2xlarge")
    new = resource_name(
        NAME, new_spec.model_copy(update={"execution_role_arn": ROLE}).config_hash()
    )
    aws.sm.add_response("describe_endpoint", described("InService", config=old))
    expect_tags(aws.sm)
    expect_pruned(aws.sm, stale, current=old, listed=(new,))
    expect_create_model_and_config(aws.sm, new, InstanceType="ml.g5.2xlarge")
    aws.aa.add_response("deregister_scalable_target", {}, TARGET)
    aws.sm.add_response("update_endpoint", {"EndpointArn": ARN})
    info = await aws.backend.ensure_endpoint(new_spec)
    assert (info.status, info.config_name) == ("Updating", new)


# --------------------------------------------------------------------------- inference


async def test_invoke_returns_body(aws) -> None:
    payload = b'{"detections": []}'
    aws.rt.add_response(
        "invoke_endpoint",
        {"Body": body(payload), "ContentType": "application/json"},
        {
            "EndpointName": NAME,
            "Body": b"img",
            "ContentType": "image/jpeg",
            "Accept": "application/json",
        },
    )
    result = await aws.backend.invoke(NAME, b"img", "image/jpeg", "application/json")
    assert (result.body, result.content_type) == (payload, "application/json")


@pytest.mark.parametrize(
    ("code", "fields", "expected", "retryable"),
    [
        ("ModelError", {"OriginalStatusCode": 400}, ModelError, False),
        ("ModelError", {"OriginalStatusCode": 503}, ModelServerError, True),
        ("ModelNotReadyException", {}, ModelNotReady, True),
        # SageMaker's 60-s invocation timeout (a container still loading its weights): no
        # status from the container, retryable as on the local stand-in
        ("ModelError", {"OriginalStatusCode": 0}, ModelServerError, True),
        ("ModelError", {}, ModelServerError, True),
    ],
)
async def test_invoke_errors(aws, code: str, fields: dict, expected: type, retryable: bool) -> None:
    timed_out = code == "ModelError" and fields.get("OriginalStatusCode", 0) == 0
    aws.rt.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=(
            'Received server error (0) from primary with message "Your invocation timed out '
            'while waiting for a response from container primary."'
            if timed_out
            else "Received client error from primary with message ..."
        ),
        http_status_code=424 if code == "ModelError" else 429,
        modeled_fields=fields or None,
    )
    with pytest.raises(expected) as exc:
        await aws.backend.invoke(NAME, b"x", "application/octet-stream")
    assert exc.value.retryable is retryable


async def test_invoke_async_and_fetch_result(aws) -> None:
    out = "s3://radiant-async/dev/output/abc.out"
    fail = "s3://radiant-async/dev/failure/abc-error.out"
    aws.rt.add_response(
        "invoke_endpoint_async",
        {"InferenceId": "abc", "OutputLocation": out, "FailureLocation": fail},
        {
            "EndpointName": NAME,
            "InputLocation": "s3://in/req.json",
            "ContentType": "application/json",
        },
    )
    inv = await aws.backend.invoke_async(NAME, "s3://in/req.json", "application/json")
    assert inv == AsyncInvocation(inference_id="abc", output_location=out, failure_location=fail)

    def missing(key: str) -> None:
        aws.s3.add_client_error(
            "get_object", service_error_code="NoSuchKey", http_status_code=404,
            expected_params={"Bucket": "radiant-async", "Key": key},
        )  # fmt: skip

    missing("dev/output/abc.out")
    missing("dev/failure/abc-error.out")
    assert await aws.backend.fetch_async_result(inv) is None  # not ready

    aws.s3.add_response(
        "get_object",
        {"Body": body(b'{"ok": 1}')},
        {"Bucket": "radiant-async", "Key": "dev/output/abc.out"},
    )
    assert await aws.backend.fetch_async_result(inv) == b'{"ok": 1}'  # ready

    missing("dev/output/abc.out")
    aws.s3.add_response("get_object", {"Body": body(b"CUDA out of memory")})
    with pytest.raises(AsyncInferenceFailed, match="CUDA out of memory") as exc:
        await aws.backend.fetch_async_result(inv)  # failed
    assert not exc.value.retryable


# --------------------------------------------------------------------------- review findings


async def test_async_output_denied_names_the_missing_list_permission(aws) -> None:
    """Without s3:ListBucket, S3 answers 403 (not 404) for a result not written yet: the job
    fails saying which permission to grant, not just "Access Denied"."""
    inv = AsyncInvocation(inference_id="abc", output_location="s3://radiant-async/dev/o/abc.out")
    aws.s3.add_client_error(
        "get_object", service_error_code="AccessDenied", service_message="Access Denied",
        http_status_code=403,
    )  # fmt: skip
    with pytest.raises(AccessDenied, match="s3:ListBucket on the async output prefix") as exc:
        await aws.backend.fetch_async_result(inv)
    assert not exc.value.retryable


async def test_a_scaling_policy_on_a_target_not_visible_yet_is_retried(aws) -> None:
    """Application Auto Scaling is eventually consistent: PutScalingPolicy right after
    RegisterScalableTarget may answer ObjectNotFound. That is a retry, not a vanished endpoint
    (which would make the thermal workflow refresh and never set the policy)."""
    aws.sm.add_response("describe_endpoint", described("InService"))
    aws.aa.add_response("register_scalable_target", {})
    aws.aa.add_client_error(
        "put_scaling_policy", service_error_code="ObjectNotFoundException",
        service_message="No scalable target registered for service namespace: sagemaker",
    )  # fmt: skip
    with pytest.raises(InvalidEndpointState, match="not visible yet") as exc:
        await aws.backend.set_capacity(NAME, 1, 1, 3)
    assert exc.value.retryable


async def test_an_endpoint_whose_update_rollback_failed_is_updated_again(aws) -> None:
    """UpdateRollbackFailed waits for another UpdateEndpoint (AWS), so a changed spec updates
    it instead of waiting for a status that never comes."""
    old = resource_name(NAME, "0badc0de")
    new_spec = spec(instance_type="ml.g5.2xlarge")
    new = resource_name(
        NAME, new_spec.model_copy(update={"execution_role_arn": ROLE}).config_hash()
    )
    aws.sm.add_response("describe_endpoint", described("UpdateRollbackFailed", config=old))
    expect_tags(aws.sm)
    expect_create_model_and_config(aws.sm, new, InstanceType="ml.g5.2xlarge")
    aws.aa.add_response("deregister_scalable_target", {}, TARGET)
    aws.sm.add_response("update_endpoint", {"EndpointArn": ARN})
    info = await aws.backend.ensure_endpoint(new_spec)
    assert (info.status, info.config_name) == ("Updating", new)


async def test_create_racing_a_deleting_endpoint_waits(aws) -> None:
    """CreateEndpoint says "already existing" while the name is still Deleting: retry until it
    is gone, rather than report the dying endpoint as the one just created."""
    expect_create_refused_as_existing(aws.sm)
    aws.sm.add_response("describe_endpoint", described("Deleting"))
    with pytest.raises(InvalidEndpointState, match="Deleting") as exc:
        await aws.backend.ensure_endpoint(spec(tags=OWNER))
    assert exc.value.retryable


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('Could not find endpoint configuration "radiant-x-abc".', ResourceNotFound),
        ('Could not find model "radiant-x-abc".', ResourceNotFound),
        ("Requested image 1234.dkr.ecr.us-east-1.amazonaws.com/x:1 not found.", InvalidRequest),
        ("Could not find model data at s3://models/yolov8m/model.tar.gz.", InvalidRequest),
    ],
)
def test_create_time_configuration_errors_are_not_a_vanished_resource(message, expected) -> None:
    """A wrong image or model-data location is a configuration error to report, not a resource
    that disappeared (which the thermal workflow answers by recreating, three times)."""
    from botocore.exceptions import ClientError

    from activities.backends.errors import classify_client_error

    err = classify_client_error(
        ClientError({"Error": {"Code": "ValidationException", "Message": message}}, "CreateModel")
    )
    assert type(err) is expected and not err.retryable


async def test_slow_invocations_do_not_hold_up_control_plane_calls(aws) -> None:
    """40 invocations waiting on their models (more than asyncio's default pool has threads,
    32 at most) do not queue a DescribeEndpoint behind them: inference and the control plane
    run on pools of their own (before, a warm-up's polls timed out behind slow invocations)."""
    release = threading.Event()
    stubbed = aws.backend.runtime

    class SlowRuntime:
        def invoke_endpoint(self, **params: Any) -> dict:
            release.wait(30)
            return {"Body": io.BytesIO(b"{}"), "ContentType": "application/json"}

    aws.backend.runtime = SlowRuntime()
    invocations: list[asyncio.Future] = []
    try:
        invocations += [
            asyncio.ensure_future(aws.backend.invoke(NAME, b"x", "application/json"))
            for _ in range(40)
        ]
        await asyncio.sleep(0.2)  # every invocation has taken its thread
        aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
        expect_tags(aws.sm)
        info = await asyncio.wait_for(aws.backend.describe_endpoint(NAME), 10)
        assert info is not None and info.status == "InService"
        assert not any(i.done() for i in invocations)  # still waiting on their models
    finally:
        release.set()
        await asyncio.gather(*invocations)
        aws.backend.runtime = stubbed


@pytest.mark.parametrize(("asked", "low", "desired"), [(3, 3, 3), (7, 2, 5)])
async def test_a_retried_capacity_change_resumes_at_its_autoscaling_step(
    aws, asked: int, low: int, desired: int
) -> None:
    """The first try changed the count (SageMaker is Updating to `desired` for minutes) and
    then failed to set the scaling policy: the retry registers autoscaling instead of being
    refused until InService (which gave up on the change while it was under way). Also when
    the count asked was clamped into [min, max] (7 -> 5)."""
    updating = described("Updating")
    updating["ProductionVariants"] = [
        {"VariantName": "AllTraffic", "CurrentInstanceCount": 1, "DesiredInstanceCount": desired}
    ]
    aws.sm.add_response("describe_endpoint", updating)
    aws.aa.add_response(
        "register_scalable_target", {}, {**TARGET, "MinCapacity": low, "MaxCapacity": 5}
    )
    aws.aa.add_response("put_scaling_policy", {"PolicyARN": "arn:p"})
    info = await aws.backend.set_capacity(NAME, asked, low, 5)  # no count change, no prune
    assert (info.status, info.desired_instance_count) == ("Updating", desired)


async def test_a_create_racing_a_delete_that_just_finished_is_retried(aws) -> None:
    """CreateEndpoint says "already existing" (the old endpoint was still Deleting) and the
    describe that follows finds the name free: a retry creates it, not a failed warm-up."""
    expect_create_refused_as_existing(aws.sm)
    not_found(aws.sm, "describe_endpoint")
    with pytest.raises(InvalidEndpointState, match="being deleted") as exc:
        await aws.backend.ensure_endpoint(spec(tags=OWNER))
    assert exc.value.retryable


def expect_config_change_until_update(aws) -> EndpointSpec:  # type: ignore[no-untyped-def]
    """An InService endpoint whose spec changed (instance type, bounds 1..5): everything up to
    its UpdateEndpoint (describe, tags, prune, new model and config, deregister)."""
    old = resource_name(NAME, "0badc0de")
    new_spec = spec(instance_type="ml.g5.2xlarge", min_instances=1, max_instances=5)
    new = resource_name(
        NAME, new_spec.model_copy(update={"execution_role_arn": ROLE}).config_hash()
    )
    aws.sm.add_response("describe_endpoint", described("InService", config=old))
    expect_tags(aws.sm)
    expect_pruned(aws.sm, current=old)
    expect_create_model_and_config(aws.sm, new, InstanceType="ml.g5.2xlarge")
    aws.aa.add_response("deregister_scalable_target", {}, TARGET)
    return new_spec


async def test_a_refused_config_update_gives_the_old_fleet_its_autoscaling_back(aws) -> None:
    """Blue/green needs both fleets at once: UpdateEndpoint may be refused for quota after the
    scalable target was deregistered (AWS requires that first). The old fleet serves on, with
    its autoscaling registered again, and the refusal is what the caller hears."""
    new_spec = expect_config_change_until_update(aws)
    aws.sm.add_client_error(
        "update_endpoint", service_error_code="ResourceLimitExceeded",
        service_message="The account-level service limit 'ml.g5.2xlarge for endpoint usage' "
        "is 1 Instances, with current utilization of 1 Instances",
    )  # fmt: skip
    aws.aa.add_response(
        "register_scalable_target", {}, {**TARGET, "MinCapacity": 1, "MaxCapacity": 5}
    )
    aws.aa.add_response("put_scaling_policy", {"PolicyARN": "arn:p"})
    with pytest.raises(QuotaExceeded):
        await aws.backend.ensure_endpoint(new_spec)


async def test_an_update_that_may_have_been_accepted_registers_nothing(aws) -> None:
    """A throttled (or timed-out) UpdateEndpoint is retried by the activity, whose describe then
    tells whether it was accepted: registering autoscaling now could land mid-deployment."""
    new_spec = expect_config_change_until_update(aws)
    aws.sm.add_client_error(
        "update_endpoint", service_error_code="ThrottlingException", service_message="Rate exceeded"
    )
    with pytest.raises(Throttled):  # and no autoscaling call (none stubbed)
        await aws.backend.ensure_endpoint(new_spec)


async def test_a_rolled_back_update_is_told_from_one_still_under_way(aws) -> None:
    """After UpdateEndpoint, the warm-up polls for InService on the config it asked for.
    SageMaker ends a failed update InService on the old config with a FailureReason (AWS: "the
    status is InService but update operation fails"): the poll fails with that reason."""
    old, new = resource_name(NAME, "0badc0de"), resource_name(NAME, "1234abcd")
    reason = "Received server error (500) from primary with message ping failed."
    aws.sm.add_response(
        "describe_endpoint", described("Updating", config=old), {"EndpointName": NAME}
    )
    expect_tags(aws.sm)
    aws.sm.add_response(
        "describe_endpoint",
        described("InService", config=old, FailureReason=reason),
        {"EndpointName": NAME},
    )
    aws.sm.add_response(
        "describe_endpoint", described("InService", config=new), {"EndpointName": NAME}
    )
    acts = ThermalActivities(load_catalog(), aws.backend, None)
    req = WaitInServiceInput(endpoint_name=NAME, config_name=new)
    with pytest.raises(ApplicationError) as updating:
        await ActivityEnvironment().run(acts.wait_in_service_on_config, req)
    assert updating.value.type == ERR_NOT_READY
    with pytest.raises(ApplicationError) as rolled:
        await ActivityEnvironment().run(acts.wait_in_service_on_config, req)
    assert rolled.value.type == ERR_UPDATE_ROLLED_BACK and rolled.value.non_retryable
    assert reason in rolled.value.message and old in rolled.value.message
    info = await ActivityEnvironment().run(acts.wait_in_service_on_config, req)
    assert (info.status, info.config_name) == ("InService", new)
