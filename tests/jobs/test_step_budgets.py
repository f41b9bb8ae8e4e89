"""Steps that retry never hold a job (and its warm models) forever; a job's own error is the
one it reports (found by a review of the job orchestration):

- an endpoint that keeps answering a retryable error (no instance answers, throttled) fails
  the call once the invoke budget is spent: an optional model is dropped, a required one fails
  the job with the last reason;
- planning retried through an unexpected error gives up after its budget with a clear error,
  and so does reading the input through an S3 outage (it retried forever, the request claimed);
- a release signal to a model whose thermal workflow is gone (terminated; or never started,
  its warm-up cancelled before it ran) does not replace the job's outcome.

The budgets are lowered for these tests: the workflow module is passed through the sandbox so
that the test's monkeypatch reaches it (as tests/thermal/test_pending_intent.py does)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities.job_activities as job_activities
import workflows.service_job as service_job
from activities.backends.errors import ServiceUnavailable
from activities.inputs.activity import InputActivities
from activities.inputs.errors import TransientInputError
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness, running_harness
from tests.jobs.test_job_runtime import turned_off_behind_the_mirror
from tests.jobs.test_service_jobs import prepare, start_job
from workflows.thermal_types import SetTargetRequest

CATALOG = load_catalog()
BUDGET = timedelta(seconds=4)
ASYNC_DEADLINE = timedelta(seconds=3)


@pytest_asyncio.fixture
async def budgets(temporal_client, catalog_db, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(service_job, "INVOKE_BUDGET", BUDGET)
    monkeypatch.setattr(service_job, "PLAN_BUDGET", BUDGET)
    monkeypatch.setattr(service_job, "VALIDATE_BUDGET", BUDGET)
    monkeypatch.setattr(service_job, "ASYNC_DEADLINE", ASYNC_DEADLINE)
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.service_job")
    )
    data_dir = tmp_path_factory.mktemp("budgets")
    async with running_harness(temporal_client, catalog_db, data_dir, workflow_runner=runner) as h:
        yield h


def unavailable(h: ThermalHarness, monkeypatch, model: str) -> None:
    """The model's endpoint answers "no instance answered" to every invocation."""
    invoke = h.backend.invoke

    async def refusing(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.endswith(f"-{model}"):
            raise ServiceUnavailable(f"no instance of endpoint {name} answered (injected)")
        return await invoke(name, *args, **kwargs)

    monkeypatch.setattr(h.backend, "invoke", refusing)


async def test_an_optional_model_that_never_answers_is_dropped(budgets, tenants, monkeypatch):
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "geospatial", ["prithvi-100m"])
    unavailable(h, monkeypatch, "mobilesam")
    handle = await start_job(
        h, app, big.name, "geospatial/detect/floods", optional_models=["mobilesam"]
    )
    result = await asyncio.wait_for(handle.result(), 90)
    assert result.degraded and "mobilesam" not in result.models_used
    assert "gave up after" in (result.degraded_reason or "")
    assert "no instance of endpoint" in (result.degraded_reason or "")
    status = await h.control.status(app, "test", "mobilesam")
    assert status.in_flight == 0  # its lease went with the job


async def test_a_required_model_that_never_answers_fails_the_job(budgets, tenants, monkeypatch):
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "perception", [])
    unavailable(h, monkeypatch, "yolov8m")
    handle = await start_job(h, app, big.name, "perception/detect")
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 90)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvocationFailed"
    assert "gave up after" in cause.message and "no instance of endpoint" in cause.message
    status = await h.control.status(app, "test", "yolov8m")
    assert status.in_flight == 0


async def test_planning_gives_up_after_its_budget(budgets, tenants, monkeypatch):
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "perception", [])

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the tenants table answered nonsense (injected)")

    monkeypatch.setattr(job_activities, "get_tenant_async", broken)
    handle = await start_job(h, app, big.name, "perception/detect")
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 90)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "StepTimedOut"
    assert "could not be planned" in cause.message and "injected" in cause.message


async def test_a_release_that_cannot_be_sent_keeps_the_jobs_outcome(budgets, tenants, monkeypatch):
    """The optional model's hold is refused (OFF behind the mirror), and its thermal workflow
    is gone by the time the job releases its leases (terminated by an operator): the job still
    answers, degraded. The failed release signal used to fail the job."""
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "geospatial", ["prithvi-100m"])
    await turned_off_behind_the_mirror(h, app, "mobilesam")
    invoke, started = h.backend.invoke, asyncio.Event()

    async def slow(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(2)
        return await invoke(name, *args, **kwargs)

    monkeypatch.setattr(h.backend, "invoke", slow)
    handle = await start_job(
        h, app, big.name, "geospatial/detect/floods", optional_models=["mobilesam"]
    )
    await asyncio.wait_for(started.wait(), 60)
    await h.control.handle(app, "test", "mobilesam").terminate("operator cleanup")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.degraded and "mobilesam" not in result.models_used


async def test_reading_the_input_gives_up_after_its_budget(budgets, tenants, monkeypatch):
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "perception", [])

    def outage(self, req):  # type: ignore[no-untyped-def]
        raise TransientInputError("S3 answered 503 SlowDown (injected)")

    monkeypatch.setattr(InputActivities, "validate_sync", outage)
    handle = await start_job(h, app, big.name, "perception/detect")
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 90)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "StepTimedOut"
    assert "input could not be read" in cause.message and "SlowDown" in cause.message
    assert await h.backend.list_endpoints(f"radiant-{app}") == []  # nothing was warmed


async def test_an_async_result_that_never_comes_reports_the_async_deadline(
    budgets, tenants, monkeypatch
):
    """The message names the deadline the result was awaited for (12 h in production), not
    the invoke budget (it said "gave up after 30 minutes")."""
    h, (big, _) = budgets, tenants
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])

    async def never(invocation):  # type: ignore[no-untyped-def]
        return None  # not ready yet, every poll

    monkeypatch.setattr(h.backend, "fetch_async_result", never)
    handle = await start_job(h, app, big.name, "scientific/protein/fold")
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 90)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvocationFailed"
    assert "gave up after 0.05 minutes" in cause.message, cause.message


async def test_an_async_result_lost_with_its_endpoint_is_not_awaited_for_hours(
    budgets, tenants, monkeypatch
):
    """An admin turns the folding model OFF while the job awaits its async result: the endpoint
    is deleted and nothing will write that result. A poll finds the endpoint gone, and the job
    reports the model OFF at once instead of waiting out the async deadline (10 min here)."""
    h, (big, _) = budgets, tenants
    monkeypatch.setattr(service_job, "ASYNC_DEADLINE", timedelta(minutes=10))
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])
    awaited = asyncio.Event()

    async def lost(invocation):  # type: ignore[no-untyped-def]
        awaited.set()
        return None  # neither output nor failure: the endpoint went with the request

    monkeypatch.setattr(h.backend, "fetch_async_result", lost)
    handle = await start_job(h, app, big.name, "scientific/protein/fold")
    await asyncio.wait_for(awaited.wait(), 60)
    await h.control.set_target(app, "test", "alphafold2", SetTargetRequest(state=ThermalState.OFF))
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 60)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ModelOff", cause
