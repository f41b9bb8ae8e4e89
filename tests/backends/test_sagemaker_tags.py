"""SageMakerBackend.endpoint_tags (the reconcile's ownership check) against botocore Stubbers."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import ActivityEnvironment

from activities.backends.base import TAG_MANAGED_BY, TAG_MODEL
from activities.fleet_activities import FleetActivities, ReconcileInput
from tests.backends.test_sagemaker import ARN, NAME, T0, described, not_found
from tests.backends.test_sagemaker import aws as aws  # noqa: F401 - the Stubber fixture
from tests.thermal.test_reconcile_scope import FakeTemporal

OWNER_TAGS = [
    {"Key": "radiant:app", "Value": "thinktank"},
    {"Key": "radiant:environment", "Value": "dev"},
    {"Key": TAG_MODEL, "Value": "yolov8m"},
    {"Key": TAG_MANAGED_BY, "Value": "radiant-orchestrator"},
]


async def test_endpoint_tags_reads_tags_once_per_incarnation(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": OWNER_TAGS}, {"ResourceArn": ARN, "MaxResults": 100})
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    tags = await aws.backend.endpoint_tags(NAME)
    assert tags == {t["Key"]: t["Value"] for t in OWNER_TAGS}
    assert await aws.backend.endpoint_tags(NAME) == tags  # same endpoint: no second ListTags


async def test_recreated_endpoint_has_its_tags_read_again(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": OWNER_TAGS}, {"ResourceArn": ARN, "MaxResults": 100})
    # deleted and made again by hand under the same name (hence ARN): no radiant tags
    later = described("InService", CreationTime=T0 + timedelta(hours=1))
    aws.sm.add_response("describe_endpoint", later, {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": []}, {"ResourceArn": ARN, "MaxResults": 100})
    assert (await aws.backend.endpoint_tags(NAME) or {}).get(TAG_MANAGED_BY)
    assert await aws.backend.endpoint_tags(NAME) == {}


async def test_endpoint_tags_of_missing_endpoint_is_none(aws) -> None:
    not_found(aws.sm, "describe_endpoint", EndpointName=NAME)
    assert await aws.backend.endpoint_tags(NAME) is None


async def test_reconcile_snapshot_describes_each_endpoint_once(aws) -> None:
    """The listing's description carries the tags the ownership check needs: one
    DescribeEndpoint and one ListTags per endpoint (the Stubber fails on a second describe)."""
    summary = {"EndpointArn": ARN, "CreationTime": T0, "LastModifiedTime": T0}
    aws.sm.add_response(
        "list_endpoints",
        {"Endpoints": [{**summary, "EndpointName": NAME, "EndpointStatus": "InService"}]},
        {"NameContains": "radiant-thinktank", "MaxResults": 100},
    )
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": OWNER_TAGS}, {"ResourceArn": ARN, "MaxResults": 100})
    acts = FleetActivities(aws.backend, None, FakeTemporal())  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(
        acts.snapshot, ReconcileInput(app_id="thinktank", environment="dev")
    )
    assert [(o.endpoint_name, o.managed, o.model_id) for o in snap.owners] == [
        (NAME, True, "yolov8m")
    ]
    aws.sm.assert_no_pending_responses()
