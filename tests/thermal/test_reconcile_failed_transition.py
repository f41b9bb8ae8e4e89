"""The reconcile and the bulk facing a failed transition: a row that carries the error of a
failed transition is no longer excused as "transitioning" once its workflow is idle (a leftover
endpoint is drift), a scale to zero between its delete and its record is no drift, and a bulk
slot held for a model whose transition failed is freed once its workflow is idle."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.testing import ActivityEnvironment

from activities import fleet_activities
from activities.app_scope import AppScope
from activities.backends.base import EndpointInfo
from activities.fleet_activities import (
    BulkSetItem,
    FleetActivities,
    ReconcileInput,
    RecordedModel,
    drift_reason,
)
from models_catalog.types import ThermalState
from tests.fixtures.worker import TIMINGS, ThermalHarness, running_harness
from tests.thermal.test_capacity_and_leases import ENV, MODEL, Faults, RecordingBackend
from workflows.thermal_types import SetTargetRequest, ThermalStatus

ERROR = "CapacityError (injected); cleaning up failed too: AccessDenied (injected)"


def recorded_row(**update: Any) -> RecordedModel:
    """A HOT model's row with 0 instances, transitioning, its workflow running."""
    row = RecordedModel(
        app_id="a",
        environment="e",
        model_id=MODEL,
        endpoint_name="ep",
        target_state=ThermalState.HOT,
        instance_count=0,
        workflow_running=True,
        transitioning=True,
    )
    return row.model_copy(update=update)


def _live(status: str, count: int = 2) -> EndpointInfo:
    return EndpointInfo(endpoint_name="ep", model_id=MODEL, status=status, instance_count=count)


# --------------------------------------------------------------------------- A: failed create


def test_the_endpoint_left_by_a_failed_transition_is_drift() -> None:
    """The create failed and its cleanup too: the row says 0 instances, transitioning (its
    target was never met), with the error, and the workflow is idle. The endpoint left behind
    may bill with no uptime row: drift, not a warm-up to leave alone."""
    failed = recorded_row(last_error=ERROR, workflow_busy=False)
    for status in ("InService", "Updating", "Failed"):
        reason = drift_reason(failed, _live(status))
        assert reason is not None and "backend has endpoint ep" in reason
        # A retry under way carries the earlier error until it succeeds: its workflow is busy
        # (an activity or a workflow task pending), and owns the outcome.
        assert (
            drift_reason(failed.model_copy(update={"workflow_busy": True}), _live(status)) is None
        )
        # No error: a first warm-up between its create and its record, whatever the workflow does.
        assert drift_reason(failed.model_copy(update={"last_error": None}), _live(status)) is None
        # A snapshot of an older version (neither asked): decided as it was.
        older = failed.model_copy(update={"last_error": None, "workflow_busy": None})
        assert drift_reason(older, _live(status)) is None
    # Creating: a create on its way records when ready, failed before or not.
    assert drift_reason(failed, _live("Creating")) is None
    assert drift_reason(failed, None) is None  # nothing left behind


# --------------------------------------------------------------------------- B: scale to zero


def test_a_scale_to_zero_between_its_delete_and_its_record_is_no_drift() -> None:
    """The workflow recorded "transitioning" with the old count and deleted the endpoint (left
    out of the snapshot while Deleting); the rows were read before its final record."""
    going = recorded_row(instance_count=2, target_state=ThermalState.COLD, workflow_busy=True)
    assert drift_reason(going, None) is None
    assert drift_reason(going, _live("Deleting")) is None
    # The record may be done by the time the workflow is asked: idle, still no drift.
    assert drift_reason(going.model_copy(update={"workflow_busy": False}), None) is None
    # Still drift: nothing under way, no workflow to record it, or a transition that failed.
    for update in (
        {"transitioning": False},
        {"workflow_running": False},
        {"last_error": ERROR, "workflow_busy": False},
        {"workflow_busy": None},  # a snapshot of an older version: decided as it was
    ):
        reason = drift_reason(going.model_copy(update=update), None)
        assert reason == "recorded 2 instance(s), backend has no endpoint", update
    # A retry (of a scale to zero) under way carries the earlier error: left to it.
    assert drift_reason(going.model_copy(update={"last_error": ERROR}), None) is None


# --------------------------------------------------------------------------- C: bulk slot


class Described:
    """A thermal workflow's handle answering the status query from a script, and Temporal's
    describe of it (its pending activities)."""

    def __init__(self, script: list[bool], error: str | None, pending: bool) -> None:
        self.id = "thermal/bulk/test/yolov8n"
        self.script, self.error, self.pending = list(script), error, pending
        self.asked = 0
        self.client = self

    def get_workflow_handle(self, workflow_id: str) -> Any:
        assert workflow_id == self.id
        return types.SimpleNamespace(describe=self.describe)

    async def describe(self) -> Any:
        raw = DescribeWorkflowExecutionResponse(
            pending_activities=[PendingActivityInfo(activity_id="7")] if self.pending else []
        )
        return types.SimpleNamespace(status=WorkflowExecutionStatus.RUNNING, raw_description=raw)

    async def query(self, *_: Any, **__: Any) -> ThermalStatus:
        self.asked += 1
        return ThermalStatus(
            app_id="bulk",
            environment="test",
            model_id="yolov8n",
            endpoint_name="ep",
            target_state=ThermalState.WARM,
            current_state=ThermalState.COLD,
            instance_count=0,
            endpoint_status=None,
            transitioning=self.script.pop(0),
            ready=False,
            in_flight=0,
            last_activity_at=None,
            last_error=self.error,
            transitions=1,
        )


@pytest.mark.parametrize(
    ("error", "pending", "asked"),
    [(ERROR, False, 1), (ERROR, True, 3), (None, False, 3)],
    ids=["failed-and-idle", "retry-under-way", "no-error"],
)
async def test_wait_settled_frees_the_slot_of_a_failed_idle_model(
    monkeypatch, error: str | None, pending: bool, asked: int
) -> None:
    described = Described([True, True, False], error, pending)
    control = types.SimpleNamespace(client=described, handle=lambda *_: described, apps=AppScope())

    async def workflow_running(client: Any, wf_id: str) -> bool:
        return True

    monkeypatch.setattr(fleet_activities, "workflow_running", workflow_running)
    acts = FleetActivities(None, None, control)  # type: ignore[arg-type]
    acts.settle_poll_seconds = 0.01
    item = BulkSetItem(
        app_id="bulk", environment="test", model_id="yolov8n", state=ThermalState.WARM
    )
    await ActivityEnvironment().run(acts.wait_settled, item)
    assert described.asked == asked


# --------------------------------------------------------------------------- real workflows


@pytest_asyncio.fixture
async def backing_off(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ThermalHarness, Faults]]:
    """Creates that find no capacity, retried after 30 s: long enough to look at the model
    while its workflow waits."""
    data_dir = tmp_path_factory.mktemp("review")
    faults = Faults(no_capacity_creates=1_000)
    backend = RecordingBackend(data_dir, faults=faults)
    timings = TIMINGS.model_copy(update={"capacity_retry_seconds": 30.0})
    async with running_harness(temporal_client, catalog_db, data_dir, backend, timings) as h:
        yield h, faults


async def test_a_failed_model_is_settled_while_a_retry_under_way_is_not(backing_off) -> None:
    """The real describe and query: a create that failed (backing off, its error recorded, its
    workflow idle) frees a bulk's slot at once, and the snapshot says its workflow is idle; a
    new create under way still carries that error, and holds the slot."""
    h, faults = backing_off
    app = h.new_app()
    with pytest.raises(WorkflowUpdateFailedError):
        await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    status = await h.control.status(app, ENV, MODEL)
    assert status.transitioning and status.last_error and status.instance_count == 0
    acts = FleetActivities(h.backend, h.engine, h.control)
    item = BulkSetItem(app_id=app, environment=ENV, model_id=MODEL, state=ThermalState.WARM)
    await asyncio.wait_for(ActivityEnvironment().run(acts.wait_settled, item), 10)

    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput(app_id=app))
    [row] = snap.recorded
    assert row.transitioning and row.workflow_running and row.last_error == status.last_error
    assert row.workflow_busy is False

    faults.create_delay = 4.0  # the next create takes a while before it does anything
    creating = asyncio.ensure_future(
        h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT))
    )
    try:
        await asyncio.sleep(0.5)  # the create is under way (its activity waits 4 s)
        st = await h.control.status(app, ENV, MODEL)
        assert st.transitioning and st.last_error == status.last_error  # the stale error
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ActivityEnvironment().run(acts.wait_settled, item), 1.5)
        snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput(app_id=app))
        assert [r.workflow_busy for r in snap.recorded] == [True]
    finally:
        with pytest.raises(WorkflowUpdateFailedError):
            await asyncio.wait_for(creating, 30)
        await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.OFF))
