"""SageMakerBackend reads every page of ListTags (botocore Stubbers validate each request,
NextToken included, against the real API model): owner tags on a later page still count."""

from __future__ import annotations

import pytest
from temporalio.testing import ActivityEnvironment

from activities.backends import sagemaker
from activities.backends.base import EndpointNameConflict, Unclassified
from activities.fleet_activities import FleetActivities, ReconcileInput
from tests.backends.test_sagemaker import ARN, NAME, OWNER, T0, described, not_found, spec
from tests.backends.test_sagemaker import aws as aws  # noqa: F401 - the Stubber fixture
from tests.backends.test_sagemaker_tags import OWNER_TAGS
from tests.thermal.test_reconcile_scope import FakeTemporal

# AWS's own tags, which do not count against the 50-tag limit, on the first page
SYSTEM_TAGS = [{"Key": f"aws:cloudformation:key-{i}", "Value": "x"} for i in range(3)]
LIST_TAGS = {"ResourceArn": ARN, "MaxResults": 100}


def expect_two_pages(sm, second: list[dict[str, str]]) -> None:
    sm.add_response("list_tags", {"Tags": SYSTEM_TAGS, "NextToken": "page-2"}, LIST_TAGS)
    sm.add_response("list_tags", {"Tags": second}, {**LIST_TAGS, "NextToken": "page-2"})


async def test_owner_tags_on_the_second_page_are_read_once_per_incarnation(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_two_pages(aws.sm, OWNER_TAGS)
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    tags = await aws.backend.endpoint_tags(NAME)
    assert tags == {t["Key"]: t["Value"] for t in SYSTEM_TAGS + OWNER_TAGS}
    assert await aws.backend.endpoint_tags(NAME) == tags  # cached: no ListTags again


async def test_ensure_refuses_another_owner_whose_tags_are_on_the_second_page(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    theirs = [t if t["Key"] != "radiant:app" else {**t, "Value": "other"} for t in OWNER_TAGS]
    expect_two_pages(aws.sm, theirs)
    with pytest.raises(EndpointNameConflict):
        await aws.backend.ensure_endpoint(spec(tags=OWNER))


async def test_endpoint_deleted_between_tag_pages_is_gone(aws) -> None:
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": SYSTEM_TAGS, "NextToken": "page-2"}, LIST_TAGS)
    not_found(aws.sm, "list_tags", ResourceArn=ARN, MaxResults=100, NextToken="page-2")
    not_found(aws.sm, "describe_endpoint", EndpointName=NAME)
    assert await aws.backend.endpoint_tags(NAME) is None


async def test_endless_tag_pages_fail_clearly_and_cache_nothing(aws, monkeypatch) -> None:
    monkeypatch.setattr(sagemaker, "MAX_TAG_PAGES", 2)
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    aws.sm.add_response("list_tags", {"Tags": SYSTEM_TAGS, "NextToken": "p2"}, LIST_TAGS)
    aws.sm.add_response(
        "list_tags", {"Tags": [], "NextToken": "p3"}, {**LIST_TAGS, "NextToken": "p2"}
    )
    with pytest.raises(Unclassified) as exc:
        await aws.backend.endpoint_tags(NAME)
    assert not exc.value.retryable and "after 2 pages" in exc.value.message
    assert NAME not in aws.backend._tag_cache  # a partial tag set is never taken as the whole


async def test_reconcile_sees_owner_tags_on_the_second_page(aws) -> None:
    """Orphan detection: without page 2 the endpoint would look unmanaged (no owner tags)."""
    summary = {"EndpointArn": ARN, "CreationTime": T0, "LastModifiedTime": T0}
    aws.sm.add_response(
        "list_endpoints",
        {"Endpoints": [{**summary, "EndpointName": NAME, "EndpointStatus": "InService"}]},
        {"NameContains": "radiant-thinktank", "MaxResults": 100},
    )
    aws.sm.add_response("describe_endpoint", described("InService"), {"EndpointName": NAME})
    expect_two_pages(aws.sm, OWNER_TAGS)
    acts = FleetActivities(aws.backend, None, FakeTemporal())  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(
        acts.snapshot, ReconcileInput(app_id="thinktank", environment="dev")
    )
    assert [(o.endpoint_name, o.managed, o.model_id) for o in snap.owners] == [
        (NAME, True, "yolov8m")
    ]


async def test_endless_endpoint_pages_fail_clearly(aws, monkeypatch) -> None:
    """The other list calls page too, with a bound: never a partial list taken as complete."""
    monkeypatch.setattr(sagemaker, "MAX_LIST_PAGES", 2)
    params = {"NameContains": "radiant-", "MaxResults": 100}
    aws.sm.add_response("list_endpoints", {"Endpoints": [], "NextToken": "p2"}, params)
    aws.sm.add_response(
        "list_endpoints", {"Endpoints": [], "NextToken": "p3"}, {**params, "NextToken": "p2"}
    )
    with pytest.raises(Unclassified, match="after 2 pages"):
        await aws.backend.list_endpoints("radiant-")
