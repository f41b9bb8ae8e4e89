"""Review fixes of the service jobs: malformed requests refused at once (a huge integer option,
a tenant reference no tenant can have) instead of a plan retried forever; optional models named
twice run once, two replacing the same required model are refused; every model a job uses is
held by a lease (WARM/HOT too); an async inference is not submitted twice by a retry; the charge
row says what ran."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
import pytest_asyncio
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

import activities.job_activities as job_activities
from activities.backends.base import AsyncInvocation, EndpointInfo, endpoint_name
from activities.backends.local import LocalStandInBackend
from activities.backends.sagemaker import SageMakerBackend
from activities.job_activities import (
    InvokeRequest,
    JobActivities,
    JobPlan,
    PlannedStep,
    _what_ran,
)
from activities.tenants import UnknownTenantError, get_tenant, get_tenant_async
from models_catalog.catalog import load_catalog
from models_catalog.operation_options import option_problem, optional_models_choice
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness, running_harness
from tests.jobs.test_job_runtime import signals, turned_off_behind_the_mirror
from tests.jobs.test_service_jobs import prepare, start_job, submit, usage_rows
from workers.job_client import JobClient
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import ERR_INVALID_INPUT, ERR_UNKNOWN_TENANT
from workflows.thermal_types import SetTargetRequest

CATALOG = load_catalog()
HUGE = json.loads("1" + "0" * 400)  # what a JSON request can carry: an int no float holds


async def refused(handle, kind: str, seconds: float = 30) -> ApplicationError:
    """The job's failure, which must come at once (a plan retried forever never fails)."""
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), timeout=seconds)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == kind, cause
    assert cause.non_retryable
    return cause


async def scheduled(handle, activity_type: str) -> int:
    events = [e async for e in handle.fetch_history_events()]
    attrs = [e.activity_task_scheduled_event_attributes for e in events]
    return sum(1 for a in attrs if a.activity_type.name == activity_type)


# ---------------------------------------------------------------------- A: malformed input
@pytest.mark.parametrize(
    ("operation", "options"),
    [
        ("detect", {"max_detections": HUGE}),  # integer
        ("detect", {"max_detections": -HUGE}),
        ("detect", {"min_score": HUGE}),  # number
        ("detect", {"min_score": float("inf")}),
        ("detect", {"min_score": float("nan")}),
        ("segment", {"box": [0, 0, HUGE, -HUGE]}),
        ("segment", {"box": [0, 0, float("inf"), 5]}),
    ],
    ids=["int", "negative-int", "number", "inf", "nan", "box", "box-inf"],
)
def test_huge_or_non_finite_options_get_the_options_message(operation, options):
    op = CATALOG.operation("perception", operation)
    (key,) = options
    problem = option_problem("perception", op, options)
    assert problem is not None and problem.startswith(f"options.{key} of perception/{operation}")


def test_huge_integers_are_compared_exactly():
    op = CATALOG.operation("perception", "segment")  # a box has no upper bound
    assert option_problem("perception", op, {"box": [0, 0, HUGE, HUGE + 1]}) is None


def test_an_integer_too_long_to_print_is_described():
    op = CATALOG.operation("perception", "detect")
    problem = option_problem("perception", op, {"max_detections": 10**5000})
    assert problem == (
        "options.max_detections of perception/detect must be an integer >= 1 and <= 100, "
        "got an integer of more than 4300 digits"
    )
    problem = option_problem("perception", op, {"max_detections": HUGE})
    assert problem is not None and len(problem) < 200 and problem.endswith("...")


def test_job_client_refuses_a_huge_integer_with_a_value_error(thermal: ThermalHarness):
    """`radiant submit` reports ValueError/OSError; an OverflowError was a traceback."""
    client = JobClient(thermal.client, thermal.settings)
    with pytest.raises(ValueError, match="options.max_detections of perception/detect"):
        client.check_request("perception", "detect", {"max_detections": HUGE}, [])


async def test_plan_refuses_a_huge_integer_option_at_once(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    handle = await start_job(
        thermal, app, big.name, "perception/detect", options={"max_detections": HUGE}
    )
    cause = await refused(handle, ERR_INVALID_INPUT)
    assert cause.message.startswith("options.max_detections of perception/detect must be")
    assert await scheduled(handle, "jobs.acquire_model") == 0


@pytest.mark.parametrize("ref", ["acme\x00", "no such tenant", "x" * 64, "-dash"])
async def test_a_reference_no_tenant_can_have_is_unknown_without_a_query(
    thermal: ThermalHarness, catalog_db, ref: str
):
    with pytest.raises(UnknownTenantError) as err:
        await get_tenant_async(thermal.engine, ref)
    assert err.value.ref == ref
    with pytest.raises(UnknownTenantError):
        get_tenant(catalog_db.app_url, ref)


async def test_plan_refuses_a_tenant_with_a_nul_byte_at_once(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    handle = await start_job(thermal, app, f"{big.name}\x00", "perception/detect")
    cause = await refused(handle, ERR_UNKNOWN_TENANT)
    assert "unknown tenant" in cause.message


# ---------------------------------------------------------------------- B: optional models
def test_optional_models_are_canonical_and_once():
    op = CATALOG.operation("perception", "analyze")
    assert optional_models_choice(CATALOG, "perception", op, ["clip-vit-l14"] * 6) == (
        ["clip-vit-l14"],
        None,
    )
    # an alias and the id: one model
    assert optional_models_choice(CATALOG, "perception", op, ["clip-vit-l", "clip-vit-l14"]) == (
        ["clip-vit-l14"],
        None,
    )
    # a detector and a segmenter replace one required model each; classifiers run as extras
    both = ["yolov8x", "sam2", "clip-vit-l14", "efficientnetv2-l"]
    assert optional_models_choice(CATALOG, "perception", op, both) == (both, None)


def test_more_names_than_optional_models_are_refused():
    op = CATALOG.operation("perception", "detect")  # 3 optional models
    _, problem = optional_models_choice(CATALOG, "perception", op, ["yolov8x"] * 4)
    assert problem == (
        "4 optional models named; perception/detect has 3: yolov8x, yolov11x, grounding-dino"
    )


@pytest.mark.parametrize(
    ("operation", "names", "replaced"),
    [
        ("detect", ["yolov8x", "yolov11x"], "yolov8m"),
        ("analyze", ["sam2", "yolov8x", "sam-vit-h"], "mobilesam"),
        ("detect", ["yolov8", "grounding-dino"], "yolov8m"),  # an alias names the model
    ],
)
def test_two_models_replacing_one_required_model_are_refused(operation, names, replaced):
    op = CATALOG.operation("perception", operation)
    _, problem = optional_models_choice(CATALOG, "perception", op, names)
    first, second = _colliding(names, replaced)
    assert problem is not None
    assert f"optional models {first} and {second} of perception/{operation}" in problem
    assert f"each would replace {replaced}" in problem


def _colliding(names: list[str], replaced: str) -> tuple[str, str]:
    specialty = CATALOG.model(replaced).specialty
    ids = [CATALOG.model(n).id for n in names if CATALOG.model(n).specialty == specialty]
    return ids[0], ids[1]


def test_job_client_refuses_what_the_plan_refuses(thermal: ThermalHarness):
    client = JobClient(thermal.client, thermal.settings)
    client.check_request("perception", "analyze", {}, ["clip-vit-l14"] * 6)  # runs once
    with pytest.raises(ValueError, match="each would replace yolov8m"):
        client.check_request("perception", "detect", {}, ["yolov8x", "yolov11x"])
    with pytest.raises(ValueError, match="4 optional models named"):
        client.check_request("perception", "detect", {}, ["yolov8x"] * 4)


async def test_an_optional_model_named_many_times_runs_once(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    result = await submit(
        thermal, app, big.name, "perception/analyze", optional_models=["clip-vit-l14"] * 6
    )
    assert [c.model_id for c in result.calls].count("clip-vit-l14") == 1
    rows = await usage_rows(thermal, big.id, result.workflow_id)
    invocations = [r for r in rows if r["kind"] == "model_invocation"]
    assert len(invocations) == len(result.calls)
    assert [r["model_id"] for r in invocations].count("clip-vit-l14") == 1


async def test_two_optional_detectors_are_refused_before_any_cost(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    handle = await start_job(
        thermal, app, big.name, "perception/detect", optional_models=["yolov8x", "yolov11x"]
    )
    cause = await refused(handle, ERR_INVALID_INPUT)
    assert "optional models yolov8x and yolov11x of perception/detect" in cause.message
    assert await scheduled(handle, "jobs.acquire_model") == 0


# ---------------------------------------------------------------------- C: every model held
@pytest_asyncio.fixture
async def slow_fold(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ThermalHarness]:
    """Model servers taking 8 s per inference (the idle window is 3 s)."""
    data_dir = tmp_path_factory.mktemp("slow-fold")
    backend = LocalStandInBackend(data_dir, invoke_seconds=8.0)
    async with running_harness(temporal_client, catalog_db, data_dir, backend) as harness:
        yield harness


async def test_a_warm_model_turned_cold_mid_job_is_not_scaled_in(
    slow_fold: ThermalHarness, tenants
):
    """alphafold2 WARM when planned; an admin turns it COLD while the job folds: the job's
    lease keeps it in until the job releases it (without one, its idle window ran out under
    the running inference and the job failed)."""
    big, _ = tenants
    h = slow_fold
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])
    await h.control.set_target(app, "test", "alphafold2", SetTargetRequest(state=ThermalState.WARM))
    handle = await start_job(h, app, big.name, "scientific/protein/fold")

    async def invoking() -> bool:
        return (await handle.query(ServiceJobWorkflow.progress))["stage"] == "invoking"

    await wait_for(invoking, every=0.1, limit=60)
    await h.control.set_target(app, "test", "alphafold2", SetTargetRequest(state=ThermalState.COLD))
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.models_used == ["alphafold2"] and [c.model_id for c in result.calls] == [
        "alphafold2"
    ]
    received = [name for name, _ in await signals(h, app, "alphafold2")]
    assert "lease" in received and "release" in received


# ---------------------------------------------------------------------- D: start_async once
class _FakeAsyncBackend:
    """invoke_async accepts every request (a new inference each time) and counts them."""

    kind = "local"

    def __init__(self) -> None:
        self.submitted: list[AsyncInvocation] = []

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        return None  # its incarnation is unknown: polls check only that the name exists

    async def invoke_async(self, name: str, location: str, content_type: str) -> AsyncInvocation:
        inv = AsyncInvocation(inference_id=uuid.uuid4().hex, output_location=f"/out/{name}")
        self.submitted.append(inv)
        return inv


def _invoke_request(model_id: str = "alphafold2") -> InvokeRequest:
    return InvokeRequest(
        endpoint_name=endpoint_name("app", "test", model_id),
        model_id=model_id,
        input_location="/in/x.fasta",
        content_type="text/plain",
        step=f"step-0-{model_id}",
    )


async def test_a_retried_start_async_returns_the_inference_already_submitted(tmp_path: Path):
    backend = _FakeAsyncBackend()
    jobs = JobActivities(CATALOG, backend, None, None, tmp_path)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    first = await env.run(jobs.start_async, _invoke_request())  # its completion is "lost"
    env.info = dataclasses.replace(env.info, attempt=2)
    again = await env.run(jobs.start_async, _invoke_request())
    assert again == first and len(backend.submitted) == 1
    # A new start of the step (after a vanished endpoint) or another run submits anew.
    env.info = dataclasses.replace(env.info, attempt=1, activity_id="other")
    assert await env.run(jobs.start_async, _invoke_request()) != first
    env.info = dataclasses.replace(env.info, attempt=2, workflow_run_id="another-run")
    assert await env.run(jobs.start_async, _invoke_request()) != first
    assert len(backend.submitted) == 3


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


async def test_a_retried_start_async_on_sagemaker_reads_the_recorded_invocation(tmp_path: Path):
    kw = {"region_name": "us-east-1", "aws_access_key_id": "t", "aws_secret_access_key": "t"}
    clients = {n: boto3.client(n, **kw) for n in ("sagemaker", "sagemaker-runtime", "s3")}
    backend = SageMakerBackend(
        clients["sagemaker"], clients["sagemaker-runtime"],
        boto3.client("application-autoscaling", **kw), clients["s3"],
        "arn:aws:iam::123456789012:role/radiant", async_output_s3_uri="s3://radiant-async/prod",
    )  # fmt: skip
    jobs = JobActivities(
        CATALOG, backend, None, None, tmp_path,  # type: ignore[arg-type]
        request_s3_uri="s3://radiant-inputs/prod", s3_client=clients["s3"],
    )  # fmt: skip
    req = _invoke_request()
    out = "s3://radiant-async/prod/output/inf-1.out"
    recorded = AsyncInvocation(
        inference_id="inf-1", output_location=out, endpoint_name=req.endpoint_name
    )
    s3, runtime = Stubber(clients["s3"]), Stubber(clients["sagemaker-runtime"])
    sm = Stubber(clients["sagemaker"])
    sm.add_client_error(  # the endpoint's incarnation cannot be told: polls check the name only
        "describe_endpoint", service_error_code="ThrottlingException", service_message="Rate"
    )
    put = {"Bucket": "radiant-inputs", "Key": ANY, "Body": ANY, "ContentType": "application/json"}
    s3.add_response("put_object", {}, put)  # the request document
    runtime.add_response(
        "invoke_endpoint_async",
        {"InferenceId": "inf-1", "OutputLocation": out},
        {"EndpointName": req.endpoint_name, "InputLocation": ANY, "ContentType": ANY},
    )
    s3.add_response("put_object", {}, {**put, "Body": recorded.model_dump_json().encode()})
    # the retry: the record is read, nothing is submitted
    s3.add_response(
        "get_object",
        {"Body": _body(recorded.model_dump_json().encode())},
        {"Bucket": "radiant-inputs", "Key": ANY},
    )
    env = ActivityEnvironment()
    with s3, runtime, sm:
        assert await env.run(jobs.start_async, req) == recorded
        env.info = dataclasses.replace(env.info, attempt=2)
        assert await env.run(jobs.start_async, req) == recorded
        s3.assert_no_pending_responses()
        runtime.assert_no_pending_responses()
        sm.assert_no_pending_responses()


class _LoseFirstStartAsync(Interceptor):
    """The first start_async's completion never reaches the workflow: the endpoint accepted
    the inference, the activity then fails (a lost response, a worker gone)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Losing(next)


class _Losing(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        info = activity.info()
        if info.activity_type == "jobs.start_async" and info.attempt == 1:
            raise ApplicationError("connection reset before the completion was reported")
        return result


@pytest_asyncio.fixture
async def lossy(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ThermalHarness]:
    data_dir = tmp_path_factory.mktemp("lossy")
    async with running_harness(
        temporal_client, catalog_db, data_dir, interceptors=[_LoseFirstStartAsync()]
    ) as harness:
        yield harness


async def test_an_async_job_whose_start_is_retried_submits_one_inference(
    lossy: ThermalHarness, tenants, monkeypatch
):
    big, _ = tenants
    h = lossy
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])
    submitted: list[str] = []
    real = h.backend.invoke_async

    async def counting(name: str, *args: Any, **kw: Any) -> AsyncInvocation:
        inv = await real(name, *args, **kw)
        submitted.append(inv.inference_id)
        return inv

    monkeypatch.setattr(h.backend, "invoke_async", counting)
    handle = await start_job(h, app, big.name, "scientific/protein/fold")
    result = await asyncio.wait_for(handle.result(), timeout=120)
    assert [c.model_id for c in result.calls] == ["alphafold2"]
    assert len(submitted) == 1
    starts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(starts) >= 2  # the start was retried


# ---------------------------------------------------------------------- E: what ran
def _plan(steps: list[tuple[str, str]], degraded: bool = False) -> JobPlan:
    return JobPlan(
        tenant_id=str(uuid.uuid4()), tenant_name="t", tier=5, service="perception",
        operation="analyze", unit="image", unit_price=Decimal("0.01"), long_running=False,
        content_types=["image/png"], degraded=degraded,
        steps=[PlannedStep(role=r, model_id=m, endpoint_name=m) for r, m in steps],  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_charge_metadata_says_what_ran():
    plan = _plan([("primary", "yolov8m"), ("chained", "mobilesam"), ("extra", "clip-vit-l14")])
    ran = ["yolov8m", "mobilesam", "mobilesam", "clip-vit-l14"]
    assert _what_ran(plan, ran) == {
        "degraded": False,
        "models": ["yolov8m", "mobilesam", "clip-vit-l14"],
    }
    # the extra step was dropped (could not be held, or failed)
    assert _what_ran(plan, ["yolov8m", "mobilesam"]) == {
        "degraded": True,
        "models": ["yolov8m", "mobilesam"],
        "dropped": ["clip-vit-l14"],
    }
    # a chained step with nothing to do (no detections) drops nothing
    assert _what_ran(plan, ["yolov8m", "clip-vit-l14"])["degraded"] is False
    assert _what_ran(_plan([("primary", "yolov8m")], degraded=True), ["yolov8m"]) == {
        "degraded": True,
        "models": ["yolov8m"],
    }


async def test_the_charge_row_of_a_job_without_its_optional_model(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    await turned_off_behind_the_mirror(thermal, app, "clip-vit-l14")  # planned, then not held
    result = await submit(
        thermal, app, big.name, "perception/analyze", optional_models=["clip-vit-l14"]
    )
    assert result.degraded and result.models_used == ["yolov8m", "mobilesam"]
    rows = await usage_rows(thermal, big.id, result.workflow_id)
    [charge] = [r for r in rows if r["kind"] == "service_charge"]
    assert charge["metadata"] == {
        "degraded": True,
        "models": ["yolov8m", "mobilesam"],
        "dropped": ["clip-vit-l14"],
        "models_used": [c.model_id for c in result.calls],  # metering's: one per invocation
    }


_CREATED = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class _DrainingBackend:
    """An async endpoint in a given state whose result comes on a given fetch (or never)."""

    kind = "local"

    def __init__(self, status: str | None, result_on_fetch: int | None) -> None:
        self.status, self.result_on_fetch, self.fetches = status, result_on_fetch, 0

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        if self.status is None:
            return None
        return EndpointInfo(endpoint_name=name, status=self.status, created_at=_CREATED)  # type: ignore[arg-type]

    async def fetch_async_result(self, inv: AsyncInvocation) -> bytes | None:
        self.fetches += 1
        return b'{"ok": true}' if self.fetches == self.result_on_fetch else None


@pytest.mark.parametrize(
    ("status", "queued_on", "result_on_fetch", "outcome"),
    [
        ("Deleting", _CREATED, None, "AsyncResultNotReady"),  # draining: jobs may still finish
        ("InService", _CREATED, None, "AsyncResultNotReady"),
        ("InService", None, None, "AsyncResultNotReady"),  # incarnation unknown: name only
        (None, _CREATED, None, "EndpointNotFound"),  # gone, and nothing was written
        ("Failed", _CREATED, None, "EndpointNotFound"),
        ("InService", _CREATED - timedelta(hours=1), None, "EndpointNotFound"),  # another one
        (None, _CREATED, 2, "result"),  # written while the endpoint went: read once more
    ],
)
async def test_an_async_poll_reports_the_endpoint_gone_only_without_a_result(
    tmp_path: Path,
    status: str | None,
    queued_on: datetime | None,
    result_on_fetch: int | None,
    outcome: str,
):
    backend = _DrainingBackend(status, result_on_fetch)
    jobs = JobActivities(CATALOG, backend, None, None, tmp_path)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=job_activities.ENDPOINT_CHECK_POLLS)
    inv = AsyncInvocation(
        inference_id="i", output_location="/out/i", endpoint_name="e", endpoint_created_at=queued_on
    )
    if outcome == "result":
        assert (await env.run(jobs.fetch_async, inv)).output == {"ok": True}
        return
    with pytest.raises(ApplicationError) as err:
        await env.run(jobs.fetch_async, inv)
    assert err.value.type == outcome
    assert err.value.non_retryable == (outcome == "EndpointNotFound")
    env.info = dataclasses.replace(env.info, attempt=job_activities.ENDPOINT_CHECK_POLLS - 1)
    with pytest.raises(ApplicationError) as err:  # between checks: only the result is read
        await env.run(jobs.fetch_async, inv)
    assert err.value.type == "AsyncResultNotReady"
