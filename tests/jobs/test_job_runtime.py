"""ServiceJobWorkflow at run time: leases renewed while a long job runs and released however it
ends, optional models that fail after planning, bounded invocation retries, per-call costs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities.job_activities as job_activities
import workflows.service_job as service_job
from activities.backends.base import BackendError, InvokeResult
from activities.backends.errors import ModelError, ModelServerError, Throttled
from activities.backends.local import LocalStandInBackend
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness, running_harness
from tests.jobs.test_service_jobs import prepare, start_job, submit, usage_rows
from workers.worker import WORKFLOWS
from workflows.service_job import ServiceJobWorkflow, _refusal, _split_cost
from workflows.thermal_types import SetTargetRequest, WarmUpRequest, thermal_workflow_id

CATALOG = load_catalog()
HISTORIES = Path(__file__).resolve().parent.parent / "histories"
FAST_RETRY = RetryPolicy(  # the job's invocation retries, shortened (no attempt cap)
    initial_interval=timedelta(seconds=0.1),
    maximum_interval=timedelta(seconds=0.2),
)

# The job's module shared with the test (not re-imported per run) so tests can shorten it.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.service_job")
)


@pytest_asyncio.fixture
async def slow_models(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ThermalHarness]:
    """A worker whose model servers take 2 s to load and 3 s per invocation, sharing the job
    workflow's module with the test (no sandbox re-import) so a test can shorten its durations
    (no time skipping)."""
    data_dir = tmp_path_factory.mktemp("job-runtime")
    backend = LocalStandInBackend(data_dir, warmup_seconds=2.0, invoke_seconds=3.0)
    async with running_harness(
        temporal_client, catalog_db, data_dir, backend, workflow_runner=RUNNER
    ) as harness:
        yield harness


async def signals(h: ThermalHarness, app: str, model: str) -> list[tuple[str, object]]:
    """(name, input) of every signal the model's thermal workflow received, in order."""
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, "test", model))
    found: list[tuple[str, object]] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            kind = WarmUpRequest if attrs.signal_name == "lease" else None
            [arg] = await h.client.data_converter.decode(attrs.input.payloads, [kind])
            found.append((attrs.signal_name, arg))
    return found


async def replays(handle: WorkflowHandle) -> None:
    """The job's new commands (renewal timers, cancellations, patches) replay deterministically."""
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=RUNNER
    )
    await replayer.replay_workflow(await handle.fetch_history())


def lease_gone(h: ThermalHarness, app: str, model: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await h.control.status(app, "test", model)).in_flight == 0

    return check


async def turned_off_behind_the_mirror(h: ThermalHarness, app: str, model: str) -> None:
    """The model is turned OFF after the job's plan read the Postgres mirror: the thermal
    workflow refuses to warm it while the mirror still says COLD."""
    await h.control.set_target(app, "test", model, SetTargetRequest(state=ThermalState.OFF))
    async with h.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE thermal_states SET target_state = 'COLD', current_state = 'COLD' "
                "WHERE app_id = :a AND environment = 'test' AND model_id = :m"
            ),
            {"a": app, "m": model},
        )


def refuse_calls(h: ThermalHarness, monkeypatch, model: str) -> None:  # type: ignore[no-untyped-def]
    """The model's endpoint refuses every call (a 4xx of the model: not retried)."""
    invoke = h.backend.invoke

    async def refusing(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.endswith(f"-{model}"):
            raise ModelError("the model refused the input (HTTP 400, injected)")
        return await invoke(name, *args, **kwargs)

    monkeypatch.setattr(h.backend, "invoke", refusing)


def fast_renewals(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Leases of 7 s renewed every 0.3 s: a 3-s invocation spans several renewals."""
    monkeypatch.setattr(service_job, "LEASE_RENEW_EVERY", timedelta(seconds=0.3))
    monkeypatch.setattr(service_job, "LEASE_SECONDS", 7.0)


# ---------------------------------------------------------------------- lease renewal
async def test_long_job_renews_its_leases(slow_models: ThermalHarness, tenants, monkeypatch):
    fast_renewals(monkeypatch)
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    await prepare(h, app, "perception", [])
    handle = await start_job(h, app, big.name, "perception/detect")  # yolov8m is COLD
    result = await handle.result()
    assert result.models_used == ["yolov8m"]

    received = await signals(h, app, "yolov8m")
    renewals = [arg for name, arg in received if name == "lease"]
    # a 3 s invocation holds the model through several renewal periods
    assert len(renewals) >= 2, received
    assert {(r.lease_id, r.lease_seconds) for r in renewals} == {(f"{handle.id}/yolov8m", 7.0)}
    assert received[-1][0] == "release"  # renewing stopped before the release: none re-leases
    await wait_for(lease_gone(h, app, "yolov8m"), limit=10)
    await replays(handle)


async def test_a_lease_taken_during_the_calls_is_renewed_too(
    slow_models: ThermalHarness, tenants, monkeypatch
):
    """yolov8x (WARM, held without a lease) replaces yolov8m and its call fails: the job falls
    back to yolov8m (COLD), leased only then. That late lease is renewed like the others
    (before, no renewal ran: the job held nothing when its calls began)."""
    fast_renewals(monkeypatch)
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    await prepare(h, app, "perception", [])
    await h.control.set_target(app, "test", "yolov8x", SetTargetRequest(state=ThermalState.WARM))
    refuse_calls(h, monkeypatch, "yolov8x")
    handle = await start_job(h, app, big.name, "perception/detect", optional_models=["yolov8x"])
    result = await asyncio.wait_for(handle.result(), 90)
    await record_history(handle, "job-late-lease-renewed")
    assert result.models_used == ["yolov8m"] and "ran on yolov8m" in (result.degraded_reason or "")
    received = await signals(h, app, "yolov8m")
    renewals = [arg for name, arg in received if name == "lease"]
    assert len(renewals) >= 2, received  # a 3 s invocation: several renewal periods
    assert {(r.lease_id, r.lease_seconds) for r in renewals} == {(f"{handle.id}/yolov8m", 7.0)}
    assert received[-1][0] == "release"
    await wait_for(lease_gone(h, app, "yolov8m"), limit=10)
    await replays(handle)


# ---------------------------------------------------------------------- bounded retries
def unchecked_options(monkeypatch) -> None:
    """Let a malformed option reach the model server (whose stand-in then answers 500, as a
    model server with a bug would): the plan refuses them before any cost otherwise."""
    monkeypatch.setattr(job_activities, "option_problem", lambda *args: None)


async def test_model_server_that_keeps_failing_fails_the_job(
    slow_models: ThermalHarness, tenants, monkeypatch
):
    monkeypatch.setattr(service_job, "INVOKE_RETRY", FAST_RETRY)
    monkeypatch.setattr(job_activities, "MODEL_SERVER_ATTEMPTS", 2)
    unchecked_options(monkeypatch)
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    await prepare(h, app, "perception", [])
    # the detector's stand-in answers 500 for an unreadable threshold, on every try
    handle = await start_job(h, app, big.name, "perception/detect", options={"min_score": "x"})
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), timeout=60)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvocationFailed"
    assert "yolov8m failed" in cause.message and "500" in cause.message
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts[-1] == 2  # the invoke's last attempt
    assert await usage_rows(h, big.id, handle.id) == []


async def record_history(handle: WorkflowHandle, name: str) -> None:
    """RADIANT_RECORD_HISTORIES=1: keep the job's history under tests/histories/ (a guard)."""
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )


async def test_a_job_failing_after_an_invocation_records_its_cost_unbilled(
    slow_models: ThermalHarness, tenants, monkeypatch
):
    """perception/analyze: the detector ran, the segmenter then failed. The tenant pays
    nothing, but the detector's invocation is a real cost: one cost row, billed 0."""
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    await prepare(h, app, "perception", [])
    invoke = h.backend.invoke

    async def segmenter_refuses(name: str, *args, **kw):  # a 4xx of the model: not retried
        if name.endswith("-mobilesam"):
            raise ModelError("the model refused the prompt box (HTTP 400)")
        return await invoke(name, *args, **kw)

    monkeypatch.setattr(h.backend, "invoke", segmenter_refuses)
    handle = await start_job(h, app, big.name, "perception/analyze")
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), timeout=90)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and "mobilesam failed" in cause.message
    rows = await usage_rows(h, big.id, handle.id)
    await record_history(handle, "job-failed-after-an-invocation")
    assert [(r["kind"], r["model_id"], r["billed_amount"]) for r in rows] == [
        ("model_invocation", "yolov8m", Decimal(0))
    ]
    per_image = CATALOG.model("yolov8m").pricing.per_image
    assert per_image is not None and rows[0]["internal_cost"] == per_image
    assert rows[0]["metadata"]["outcome"] == "failed"
    assert "#unbilled/" in rows[0]["idempotency_key"]
    await replays(handle)


# ---------------------------------------------------------------------- optional models
async def test_optional_model_that_cannot_be_held_degrades(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    await turned_off_behind_the_mirror(thermal, app, "clip-vit-l14")
    # clip-vit-l14 classifies: an extra step of perception/analyze
    result = await submit(
        thermal, app, big.name, "perception/analyze", optional_models=["clip-vit-l14"]
    )
    assert result.degraded and "clip-vit-l14 could not be held" in result.degraded_reason
    assert "is OFF" in result.degraded_reason
    assert result.models_used == ["yolov8m", "mobilesam"]
    assert "clip-vit-l14" not in {c.model_id for c in result.calls}
    rows = await usage_rows(thermal, big.id, result.workflow_id)
    assert len(rows) == 1 + len(result.calls)  # the charge and the calls that ran
    await replays(thermal.client.get_workflow_handle(result.workflow_id))


async def test_optional_model_that_fails_degrades(
    slow_models: ThermalHarness, tenants, monkeypatch
):
    monkeypatch.setattr(service_job, "INVOKE_RETRY", FAST_RETRY)
    monkeypatch.setattr(job_activities, "MODEL_SERVER_ATTEMPTS", 2)
    unchecked_options(monkeypatch)
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    service = CATALOG.service("geospatial")
    await prepare(h, app, "geospatial", service.required_models + ["prithvi-100m"])
    # mobilesam, an extra step of detect/floods, fails: its stand-in reads no GeoTIFF (400),
    # and one that did would answer 500 on the unreadable mask limit (retries are bounded)
    result = await submit(
        h,
        app,
        big.name,
        "geospatial/detect/floods",
        optional_models=["mobilesam"],
        options={"max_masks": "x"},
    )
    assert result.degraded and "mobilesam failed" in result.degraded_reason
    assert result.models_used == ["prithvi-100m"]
    assert [c.model_id for c in result.calls] == ["prithvi-100m"]
    await replays(h.client.get_workflow_handle(result.workflow_id))


async def test_job_cancelled_during_an_optional_step_ends_cancelled(
    slow_models: ThermalHarness, tenants
):
    """A cancel arriving while an optional model runs is the job's cancel, not that model's
    failure: the job does not drop the model, go on and charge."""
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    service = CATALOG.service("geospatial")
    await prepare(h, app, "geospatial", service.required_models + ["prithvi-100m"])
    handle = await start_job(
        h, app, big.name, "geospatial/detect/floods", optional_models=["mobilesam"]
    )

    async def invoking_the_optional_model() -> bool:
        progress = await handle.query(ServiceJobWorkflow.progress)
        return progress["stage"] == "invoking" and (progress["detail"] or "").startswith(
            "mobilesam"
        )

    await wait_for(invoking_the_optional_model, every=0.05, limit=60)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    await record_history(handle, "job-cancelled-after-an-invocation")
    # Not charged; prithvi-100m, which ran before the cancel, is recorded as a cost.
    rows = await usage_rows(h, big.id, handle.id)
    assert [(r["kind"], r["model_id"], r["billed_amount"]) for r in rows] == [
        ("model_invocation", "prithvi-100m", Decimal(0))
    ]
    assert rows[0]["metadata"]["outcome"] == "cancelled"
    await replays(handle)


def test_a_refusal_is_reported_not_the_warm_up_it_cancelled():
    """yolov8m (first in plan order) was still warming when mobilesam was refused: its
    cancelled warm-up is not what the job reports."""
    cancelled = ActivityError(
        "activity cancelled", scheduled_event_id=5, started_event_id=6, identity="w",
        activity_type="jobs.acquire_model", activity_id="1", retry_state=None,
    )  # fmt: skip
    cancelled.__cause__ = CancelledError("cancelled")
    refused = ApplicationError("mobilesam is OFF", type="ModelOff", non_retryable=True)
    assert _refusal([cancelled, refused]) is refused
    assert _refusal([refused, cancelled]) is refused
    assert _refusal([cancelled]) is cancelled
    # yolov8x (an optional replacement of yolov8m, first in plan order) failed too: it would
    # have fallen back; the job reports the required model's refusal.
    quota = ApplicationError("yolov8x: service limit is 0", type="QuotaExceeded")
    assert _refusal([quota, refused], [refused]) is refused
    assert _refusal([quota, cancelled], [cancelled]) is quota


def test_only_model_server_errors_exhaust_their_tries():
    """A 5xx of the model server fails the call on its last try; throttling never does."""
    env = ActivityEnvironment()

    def raised(err: BackendError, attempt: int) -> ApplicationError:
        env.info = dataclasses.replace(env.info, attempt=attempt)
        return env.run(lambda: job_activities._invoke_error(err))

    five_hundred = ModelServerError("the model server answered 500")
    assert not raised(five_hundred, 4).non_retryable
    last = raised(five_hundred, 5)
    assert last.non_retryable and last.type == "ModelServerError" and "on 5 tries" in last.message
    assert not raised(Throttled("rate exceeded"), 50).non_retryable


async def test_required_model_failure_still_fails_the_job(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    await turned_off_behind_the_mirror(thermal, app, "mobilesam")
    with pytest.raises(WorkflowFailureError) as info:
        await submit(thermal, app, big.name, "perception/analyze")
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ModelOff"


# ---------------------------------------------------------------------- per-call costs
async def test_per_call_costs_sum_to_the_model_cost(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    result = await submit(thermal, app, big.name, "perception/analyze")
    segments = [c for c in result.calls if c.model_id == "mobilesam"]
    assert len(segments) >= 2  # the sample street scene has several detections
    assert sum(c.internal_cost for c in result.calls) == result.internal_cost
    rows = await usage_rows(thermal, big.id, result.workflow_id)
    mobilesam = [
        r for r in rows if r["kind"] == "model_invocation" and r["model_id"] == "mobilesam"
    ]
    assert sum(c.internal_cost for c in segments) == sum(r["internal_cost"] for r in mobilesam)


def test_split_cost_is_exact_with_a_remainder():
    shares = _split_cost(Decimal("1.00"), 3)
    assert sum(shares) == Decimal("1.00")
    assert shares == [Decimal("0.33333334"), Decimal("0.33333333"), Decimal("0.33333333")]
    assert _split_cost(Decimal("0.0075"), 5) == [Decimal("0.0015")] * 5


# ---------------------------------------------------------------------- lease leaks
async def test_lease_taken_after_a_vanished_endpoint_is_released(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    st = await thermal.control.set_target(
        app, "test", "yolov8m", SetTargetRequest(state=ThermalState.WARM)
    )
    await thermal.backend.delete_endpoint(st.endpoint_name)  # the mirror still says ready
    result = await submit(thermal, app, big.name, "perception/detect")
    assert result.models_used == ["yolov8m"]
    # the lease the hold took (WARM models are held too), taken again by the re-acquire after
    # the vanished endpoint: the job releases it
    received = await signals(thermal, app, "yolov8m")
    assert "release" in [name for name, _ in received]
    await wait_for(lease_gone(thermal, app, "yolov8m"), limit=10)
    await replays(thermal.client.get_workflow_handle(result.workflow_id))


async def test_failed_hold_cancels_the_other_warm_ups(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    await turned_off_behind_the_mirror(thermal, app, "mobilesam")
    handle = await start_job(thermal, app, big.name, "perception/analyze")
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "ModelOff"
    # yolov8m's warm-up (still going when mobilesam was refused) was cancelled, and its
    # lease released only once the cancellation completed: none can be taken afterwards.
    await released_after_cancelled_warm_ups(handle, thermal_workflow_id(app, "test", "yolov8m"))
    await replays(handle)
    await wait_for(lease_gone(thermal, app, "yolov8m"), limit=10)


async def test_cancelled_job_cancels_its_warm_ups(slow_models: ThermalHarness, tenants):
    big, _ = tenants
    h = slow_models
    app = h.new_app()
    await prepare(h, app, "perception", [])
    handle = await start_job(h, app, big.name, "perception/analyze")

    async def warming() -> bool:
        return (await handle.query(ServiceJobWorkflow.progress))["stage"] == "waiting for warm-up"

    await wait_for(warming, every=0.05)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    for model in ("yolov8m", "mobilesam"):
        await released_after_cancelled_warm_ups(handle, thermal_workflow_id(app, "test", model))
        await wait_for(lease_gone(h, app, model), limit=10)
    await replays(handle)


async def released_after_cancelled_warm_ups(handle: WorkflowHandle, thermal_id: str) -> None:
    """The job cancelled warm-ups, and released the model's lease only after they ended."""
    events = [e async for e in handle.fetch_history_events()]
    cancelled = [
        e.activity_task_cancel_requested_event_attributes.scheduled_event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
    ]
    assert cancelled
    ended = {  # scheduled event id -> where the activity ended
        getattr(e, field).scheduled_event_id: i
        for i, e in enumerate(events)
        for kind, field in ACTIVITY_ENDS.items()
        if e.event_type == kind
    }
    signalled = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    releases = [
        i
        for i, e in enumerate(events)
        if e.event_type == signalled
        and e.signal_external_workflow_execution_initiated_event_attributes.workflow_execution
        == WorkflowExecution(workflow_id=thermal_id)
    ]
    assert releases
    assert all(ended.get(s, len(events)) < min(releases) for s in cancelled), (ended, releases)


ACTIVITY_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "no list of detection objects in list output"),
        (b'{"detections": null}', "no list of detection objects in dict output"),
        (b'{"detections": [3]}', "no list of detection objects in dict output"),
        (b'{"boxes": []}', "no list of detection objects in dict output"),
        (b'{"detections": "' + b"x" * (200 * 1024) + b'"}', "bytes, too large to pass on"),
    ],
    ids=["list", "null", "not-objects", "no-detections", "stored-output"],
)
async def test_a_detector_output_that_cannot_be_segmented_fails_the_job(
    thermal: ThermalHarness, tenants, monkeypatch, body: bytes, reason: str
):
    """analyze reads the detector's detections in workflow code: an output of another shape
    fails the job with the reason, unbilled (before, some shapes failed the workflow task,
    retried forever with the request claimed; others segmented nothing, charged in full)."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    invoke = h.backend.invoke

    async def odd_detector(name: str, *args, **kw):  # type: ignore[no-untyped-def]
        if name.endswith("-yolov8m"):
            return InvokeResult(body=body, content_type="application/json")
        return await invoke(name, *args, **kw)

    monkeypatch.setattr(h.backend, "invoke", odd_detector)
    handle = await start_job(h, app, big.name, "perception/analyze")
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), timeout=90)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvocationFailed"
    assert "the detector's output cannot be segmented" in cause.message and reason in cause.message
    rows = await usage_rows(h, big.id, handle.id)
    assert [(r["model_id"], r["billed_amount"]) for r in rows] == [("yolov8m", Decimal(0))]
    if reason.startswith("no list") and b"boxes" in body:
        await record_history(handle, "job-detector-output-without-detections")


async def test_a_charge_the_ledger_refuses_fails_the_job_with_the_reason(
    thermal: ThermalHarness, tenants, monkeypatch
):
    """Metering refuses (an amount it cannot price): the job fails with the activity's own
    reason and type, not Temporal's "activity task failed"."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])

    def unpriceable(self, req):  # type: ignore[no-untyped-def]
        raise ValueError("1E+30 does not fit NUMERIC(20,10) (injected)")

    monkeypatch.setattr(job_activities.JobActivities, "_usage", unpriceable)
    handle = await start_job(h, app, big.name, "perception/detect")
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), 90)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "MeteringFailed", cause
    assert "cannot be metered" in cause.message and "injected" in cause.message
    # The model ran all the same: its cost is recorded, unbilled, as for any uncharged job.
    rows = await usage_rows(h, big.id, handle.id)
    assert [(r["model_id"], r["billed_amount"]) for r in rows] == [("yolov8m", Decimal(0))]
    assert rows[0]["internal_cost"] > 0 and rows[0]["metadata"]["outcome"] == "failed"
    await record_history(handle, "job-metering-refused")


async def test_a_ready_model_whose_thermal_workflow_was_terminated_is_held_again(
    thermal: ThermalHarness, tenants
):
    """An operator terminated the model's thermal workflow; Postgres still shows the model WARM
    and ready, so a long job takes the fast path to hold it (a lease by signal), which finds
    no workflow. The job warms it through a new workflow (that adopts the running endpoint)
    instead of retrying the signal until the reconcile repairs the record."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "scientific", ["esm2-3b", "alphafold2"])
    warm = SetTargetRequest(state=ThermalState.WARM)
    await h.control.set_target(app, "test", "alphafold2", warm)
    await h.control.handle(app, "test", "alphafold2").terminate("an operator's mistake")
    handle = await start_job(h, app, big.name, "scientific/protein/fold")
    result = await asyncio.wait_for(handle.result(), 60)
    assert "alphafold2" in result.models_used
    st = await h.control.status(app, "test", "alphafold2")
    assert (st.current_state, st.instance_count, st.in_flight) == (ThermalState.WARM, 1, 0)
