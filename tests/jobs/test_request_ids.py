"""Request ids of service jobs: one job (and one charge) per (tenant, service, operation, request
id), whoever starts it and however the tenant is spelled; other tenants' request ids are theirs;
malformed request ids are refused before any cost and can never leave a job stuck in metering."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.job_activities import (
    ERR_METERING_FAILED,
    JobActivities,
    JobPlan,
    MeterRequest,
    UnbilledCostsRequest,
)
from activities.metering import usage_key
from models_catalog.catalog import load_catalog
from tests.fixtures.metering_hold import cancelled_while_metering
from tests.fixtures.waiting import activity_types, failure_of, wait_for
from tests.fixtures.worker import ThermalHarness
from tests.jobs.test_service_jobs import prepare, usage_rows
from workers.cli.main import app as cli_app
from workers.job_client import JobClient
from workers.samples import SAMPLES
from workers.settings import get_settings
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import (
    ERR_ALREADY_CHARGED,
    ERR_ALREADY_RUNNING,
    ERR_INVALID_REQUEST_ID,
    InputRef,
    ServiceRequest,
    ServiceResult,
    job_billing_id,
    job_workflow_id,
)

CATALOG = load_catalog()
KEY = "perception/detect"
BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("r" * 129, id="too-long"),
    pytest.param("a/b", id="slash"),
    pytest.param("a#b", id="hash"),
    pytest.param("with space", id="space"),
]


def rid() -> str:
    return uuid.uuid4().hex[:10]


def job_client(h: ThermalHarness, app: str) -> JobClient:
    return JobClient(h.client, h.settings.model_copy(update={"app_id": app, "environment": "test"}))


async def submit(
    jobs: JobClient, tenant: str, request_id: str, input_uri: str = str(SAMPLES[KEY])
) -> WorkflowHandle:
    return await jobs.submit(
        "perception", "detect", tenant=tenant, input_uri=input_uri, request_id=request_id
    )


async def charges(h: ThermalHarness, tenant_id, request_id: str) -> list[dict]:
    key = usage_key(job_billing_id("perception", "detect", request_id), "charge")
    return [r for r in await usage_rows(h, tenant_id) if r["idempotency_key"] == key]


async def test_same_request_id_returns_the_existing_job(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    jobs = job_client(thermal, app)
    request_id = rid()
    first = await submit(jobs, big.name, request_id)
    while_running = await submit(jobs, big.name, request_id)  # joins (or reads) the same run
    result = await first.result()
    after = await submit(jobs, big.name, request_id)  # completed: its result, no new run

    runs = {(await h.describe()).run_id for h in (first, while_running, after)}
    assert runs == {first.result_run_id}
    assert (await after.result()).model_dump() == result.model_dump()
    assert len(await charges(thermal, big.id, request_id)) == 1


async def test_failed_job_may_run_again(thermal: ThermalHarness, tenants):
    """A failed job was never charged: the same request id runs again once the cause is fixed."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    jobs = job_client(thermal, app)
    request_id = rid()
    with pytest.raises(WorkflowFailureError):
        await (await submit(jobs, big.name, request_id, "/nonexistent/cat.png")).result()
    result = await (await submit(jobs, big.name, request_id)).result()
    assert result.billed > 0 and len(await charges(thermal, big.id, request_id)) == 1


async def test_tenants_do_not_share_request_ids(thermal: ThermalHarness, tenants):
    big, small = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    jobs = job_client(thermal, app)
    request_id = rid()
    a = await (await submit(jobs, big.name, request_id)).result()
    b = await (await submit(jobs, small.name, request_id)).result()
    assert a.workflow_id != b.workflow_id
    assert small.name in b.workflow_id and big.name in a.workflow_id
    assert (a.tenant_id, b.tenant_id) == (str(big.id), str(small.id))
    assert len(await charges(thermal, big.id, request_id)) == 1
    assert len(await charges(thermal, small.id, request_id)) == 1


async def test_charged_request_is_refused_before_any_cost(thermal: ThermalHarness, tenants):
    """The same request started another way (plain JSON, the tenant spelled by its id instead
    of its name, another workflow id): refused by the plan, no model runs, no second charge."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    request_id = rid()
    first = await (await submit(job_client(thermal, app), big.name, request_id)).result()
    assert first.billed > 0
    rows_before = await usage_rows(thermal, big.id)

    req = ServiceRequest(
        tenant=str(big.id), app_id=app, environment="test", request_id=request_id,
        service="perception", operation="detect", input=InputRef(uri=str(SAMPLES[KEY])),
    )  # fmt: skip
    handle = await thermal.client.start_workflow(
        ServiceJobWorkflow.run,
        req,
        id=job_workflow_id(str(big.id), "perception", "detect", request_id),
        task_queue=thermal.task_queue,
        result_type=ServiceResult,
    )
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert cause.type == ERR_ALREADY_CHARGED, cause.message
    assert f"request id {request_id} of tenant {big.name} was already charged" in cause.message
    assert first.workflow_id in cause.message
    assert await activity_types(handle) == ["jobs.plan"]  # no warm-up, no invocation
    assert await usage_rows(thermal, big.id) == rows_before


@pytest.mark.parametrize("request_id", BAD_IDS)
async def test_client_refuses_malformed_request_ids(thermal: ThermalHarness, tenants, request_id):
    big, _ = tenants
    with pytest.raises(ValueError, match="request id"):
        await submit(job_client(thermal, thermal.new_app()), big.name, request_id)


async def test_long_request_id_is_refused_by_the_plan(thermal: ThermalHarness, tenants):
    """Started without the client (plain JSON): a request id too long for the ledger's keys
    fails the job at once, before any cost, instead of leaving it stuck in metering."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    request_id = "r" * 600
    req = ServiceRequest(
        tenant=big.name, app_id=app, environment="test", request_id=request_id,
        service="perception", operation="detect", input=InputRef(uri=str(SAMPLES[KEY])),
    )  # fmt: skip
    before = await usage_rows(thermal, big.id)
    handle = await thermal.client.start_workflow(
        ServiceJobWorkflow.run,
        req,
        id=job_workflow_id(big.name, "perception", "detect", request_id),
        task_queue=thermal.task_queue,
    )

    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == ERR_INVALID_REQUEST_ID
    assert "600 characters" in cause.message
    assert await activity_types(handle) == ["jobs.plan"]
    assert await usage_rows(thermal, big.id) == before
    assert not await thermal.backend.list_endpoints(f"radiant-{app}-")


async def test_meter_never_retries_an_unmeterable_job(tmp_path: Path):
    """A key too long for the ledger (a plan recorded before request ids were checked) fails
    the job with a non-retryable error instead of retrying forever."""
    jobs = JobActivities(CATALOG, None, None, None, tmp_path)  # type: ignore[arg-type]
    op = CATALOG.operation("perception", "detect")
    plan = JobPlan(
        tenant_id=str(uuid.uuid4()), tenant_name="t", tier=5, service="perception",
        operation="detect", unit=op.unit, unit_price=Decimal(1), long_running=False,
        content_types=[], steps=[],
    )  # fmt: skip
    req = MeterRequest(
        plan=plan, workflow_id="job/perception/detect/" + "r" * 600, app_id="a",
        environment="e", units=Decimal(1), invocations=["yolov8m"],
    )  # fmt: skip
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(jobs.meter, req)
    assert info.value.non_retryable and info.value.type == ERR_METERING_FAILED


async def test_cli_submit_refuses_a_malformed_request_id(
    thermal: ThermalHarness, tenants, monkeypatch
):
    big, _ = tenants
    monkeypatch.setenv("RADIANT_TEMPORAL_ADDRESS", thermal.client.service_client.config.target_host)
    monkeypatch.setenv("RADIANT_TEMPORAL_NAMESPACE", thermal.client.namespace)
    monkeypatch.setenv("RADIANT_TASK_QUEUE", thermal.task_queue)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(thermal.settings.data_dir))
    get_settings.cache_clear()
    args = ["submit", "perception", "detect", "--tenant", big.name, "--input", str(SAMPLES[KEY])]
    try:
        res = await asyncio.to_thread(
            CliRunner().invoke, cli_app, [*args, "--request-id", "r" * 129]
        )
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "129 characters" in lines[0], res.stderr


def detect_plan(tenant, unit_price: Decimal, **over) -> JobPlan:
    """A perception/detect plan of `tenant` (tier 5) for a new request id, to meter directly."""
    fields = dict(
        tenant_id=str(tenant.id), tenant_name=tenant.name, tier=5, service="perception",
        operation="detect", unit=CATALOG.operation("perception", "detect").unit,
        unit_price=unit_price, long_running=False, content_types=[], steps=[], request_id=rid(),
    )  # fmt: skip
    return JobPlan(**{**fields, **over})


def metered(plan: JobPlan, workflow_id: str, units: int = 1) -> MeterRequest:
    """The meter request of `plan`'s job, one yolov8m invocation."""
    return MeterRequest(
        plan=plan, workflow_id=workflow_id, app_id="a", environment="test",
        units=Decimal(units), invocations=["yolov8m"],
    )  # fmt: skip


async def test_a_concurrent_duplicate_reports_nothing_billed(thermal: ThermalHarness, tenants):
    """Two jobs for one request that passed the plan together (the tenant spelled by name in
    one id and by uuid in the other): one charge; the job that did not write it reports 0."""
    big, _ = tenants
    jobs = JobActivities(CATALOG, None, thermal.engine, None, Path("."))  # type: ignore[arg-type]
    plan = detect_plan(big, Decimal(1))

    def meter(workflow_id: str) -> MeterRequest:
        return metered(plan, workflow_id)

    by_name = job_workflow_id(big.name, "perception", "detect", plan.request_id or "")
    by_id = job_workflow_id(str(big.id), "perception", "detect", plan.request_id or "")
    first = await ActivityEnvironment().run(jobs.meter, meter(by_name))
    assert first.billed > 0 and first.rows_inserted == 2
    retried = await ActivityEnvironment().run(jobs.meter, meter(by_name))  # its own retry
    assert retried.billed == first.billed and retried.rows_inserted == 0
    other = await ActivityEnvironment().run(jobs.meter, meter(by_id))
    assert other.billed == 0 and other.rows_inserted == 0


async def test_the_charge_is_the_price_the_plan_quoted(thermal: ThermalHarness, tenants):
    """Prices changed by a deploy while the job ran: the job is charged what its plan quoted,
    and a retry of a committed attempt reports the amount in the ledger."""
    big, _ = tenants
    jobs = JobActivities(CATALOG, None, thermal.engine, None, Path("."))  # type: ignore[arg-type]
    op = CATALOG.operation("perception", "detect")
    catalog_price = CATALOG.service("perception").pricing.price_for(op.unit)
    quoted = Decimal("0.0123")
    assert catalog_price != quoted
    plan = detect_plan(big, quoted)
    req = metered(plan, job_workflow_id(big.name, "perception", "detect", "x"), units=3)
    first = await ActivityEnvironment().run(jobs.meter, req)
    retried = await ActivityEnvironment().run(jobs.meter, req)
    assert first.billed == retried.billed == quoted * 3
    [row] = await charges(thermal, big.id, plan.request_id or "")
    assert row["billed_amount"] == quoted * 3


async def test_model_costs_are_the_prices_the_plan_quoted(thermal: ThermalHarness, tenants):
    """A deploy that reprices or removes a model while the job ran: the cost rows use the
    prices of the plan (before, the catalog's at metering, and a removed model failed the
    finished job unmetered)."""
    big, _ = tenants
    quoted = CATALOG.model("yolov8m").pricing.model_copy(update={"per_image": Decimal("0.0042")})
    assert quoted.per_image != CATALOG.model("yolov8m").pricing.per_image
    without_it = dataclasses.replace(
        CATALOG,
        models={k: v for k, v in CATALOG.models.items() if k != "yolov8m"},
        aliases={a: m for a, m in CATALOG.aliases.items() if m != "yolov8m"},
    )
    jobs = JobActivities(without_it, None, thermal.engine, None, Path("."))  # type: ignore[arg-type]
    plan = detect_plan(big, Decimal("0.01"), model_pricing={"yolov8m": quoted})
    req = metered(plan, job_workflow_id(big.name, "perception", "detect", "x"), units=3)
    result = await ActivityEnvironment().run(jobs.meter, req)
    assert result.costs == {"yolov8m": Decimal("0.0126")}
    assert result.internal_cost == Decimal("0.0126")


async def test_unbilled_costs_are_recorded_once_per_run(thermal: ThermalHarness, tenants):
    """A failed run's finished invocations: one cost row each, billed 0; a retried activity of
    the same run adds nothing, another run of the request (it may run again) records its own."""
    big, _ = tenants
    jobs = JobActivities(CATALOG, None, thermal.engine, None, Path("."))  # type: ignore[arg-type]
    plan = detect_plan(big, Decimal(1))
    wid = job_workflow_id(big.name, "perception", "detect", plan.request_id or "")
    req = UnbilledCostsRequest(
        plan=plan, workflow_id=wid, app_id="a", environment="test", units=Decimal(2),
        invocations=["yolov8m"], outcome="failed",
    )  # fmt: skip
    env = ActivityEnvironment()
    first = await env.run(jobs.record_unbilled_costs, req)
    again = await env.run(jobs.record_unbilled_costs, req)
    env.info = dataclasses.replace(env.info, workflow_run_id="another-run")
    other_run = await env.run(jobs.record_unbilled_costs, req)
    assert (first.rows_inserted, again.rows_inserted, other_run.rows_inserted) == (1, 0, 1)
    assert first.billed == 0 and first.internal_cost > 0
    rows = await usage_rows(thermal, big.id, wid)
    assert [(r["kind"], r["billed_amount"]) for r in rows] == [("model_invocation", 0)] * 2


def by_uuid(tenant, app: str, request_id: str, input_uri: str = str(SAMPLES[KEY])):
    """The request as a caller spelling the tenant by its uuid starts it (plain JSON)."""
    return ServiceRequest(
        tenant=str(tenant.id), app_id=app, environment="test", request_id=request_id,
        service="perception", operation="detect", input=InputRef(uri=input_uri),
    )  # fmt: skip


async def test_a_running_request_is_not_run_twice_under_another_spelling(
    thermal: ThermalHarness, tenants
):
    """While a job runs a request (its model still warming up), the same request started with
    the tenant spelled by uuid is refused by the plan: no second warm-up, invocation or charge."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    request_id = rid()
    first = await submit(job_client(thermal, app), big.name, request_id)  # the model is COLD

    async def warming() -> bool:
        return (await first.query(ServiceJobWorkflow.progress))["stage"] == "waiting for warm-up"

    await wait_for(warming, every=0.05)

    second = await thermal.client.start_workflow(
        ServiceJobWorkflow.run,
        by_uuid(big, app, request_id),
        id=job_workflow_id(str(big.id), "perception", "detect", request_id),
        task_queue=thermal.task_queue,
    )
    cause = await failure_of(second)
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert cause.type == ERR_ALREADY_RUNNING, cause.message
    assert first.id in cause.message and "being run by job" in cause.message
    assert await activity_types(second) == ["jobs.plan"]

    result = await first.result()
    assert result.billed > 0 and len(await charges(thermal, big.id, request_id)) == 1


async def test_a_failed_job_leaves_its_request_to_another_spelling(
    thermal: ThermalHarness, tenants
):
    """A job that failed was never charged: the same request under another workflow id (the
    tenant by uuid) takes its claim over and runs, charged once."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    request_id = rid()
    with pytest.raises(WorkflowFailureError):
        failing = await submit(job_client(thermal, app), big.name, request_id, "/nonexistent")
        await failing.result()
    result = await thermal.client.execute_workflow(
        ServiceJobWorkflow.run,
        by_uuid(big, app, request_id),
        id=job_workflow_id(str(big.id), "perception", "detect", request_id),
        task_queue=thermal.task_queue,
        result_type=ServiceResult,
    )
    assert result.billed > 0 and len(await charges(thermal, big.id, request_id)) == 1


async def test_a_cancel_while_the_charge_is_recorded_comes_too_late(
    thermal: ThermalHarness, tenants
):
    """Once metering runs the charge lands (the activity cannot hear a cancel): the job must
    then complete with its result, never end CANCELLED with the tenant charged and no output."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    request_id = rid()
    charge = usage_key(job_billing_id("perception", "detect", request_id), "charge")
    result = await cancelled_while_metering(
        thermal.engine, big.id, charge, "jobs.meter",
        lambda: submit(job_client(thermal, app), big.name, request_id),
    )  # fmt: skip
    assert result.billed > 0 and result.output is not None
    assert len(await charges(thermal, big.id, request_id)) == 1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"input": {}}, "exactly one of input.uri or input.inline_base64"),
        ({"service": None}, "service"),
    ],
    ids=["empty-input", "no-service"],
)
async def test_undecodable_plain_json_fails_the_job(
    thermal: ThermalHarness, tenants, change, words
):
    """Plain JSON that is not a ServiceRequest fails the job at once with pydantic's reason,
    instead of leaving it RUNNING with its first workflow task retried forever."""
    big, _ = tenants
    raw = {
        "tenant": big.name, "request_id": rid(), "service": "perception", "operation": "detect",
        "input": {"uri": str(SAMPLES[KEY])},
    }  # fmt: skip
    raw = {k: v for k, v in {**raw, **change}.items() if v is not None}
    handle = await thermal.client.start_workflow(
        "ServiceJobWorkflow", raw, id=f"job/plain/{rid()}", task_queue=thermal.task_queue
    )
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "ValidationError"
    assert words in cause.message
    assert await activity_types(handle) == []
