"""The reconcile and the thermal workflows racing the backend: an endpoint still Deleting when
a resync reads it, records of an endpoint gone with no workflow left to correct them, a
workflow that ends between the reconcile's snapshot and its signal, and a first warm-up
between its create and its record. RADIANT_RECORD_HISTORIES=1 keeps the guard histories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.backends.base import EndpointInfo, EndpointSpec, endpoint_name
from activities.fleet_activities import (
    FleetActivities,
    FleetSnapshot,
    ReconcileInput,
    drift_reason,
)
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness, running_harness
from tests.thermal.test_capacity_and_leases import (
    ENV,
    MODEL,
    Faults,
    RecordingBackend,
    _keep_history,
    _reconcile,
    _set,
    _uptime,
)
from tests.thermal.test_reconcile_failed_transition import recorded_row
from tests.thermal.test_reconcile_scope import FakeBackend, FakeTemporal, record_rows
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import thermal_workflow_id


class LingeringBackend(RecordingBackend):
    """Like SageMaker, a deleted endpoint stays listed as Deleting, with its instances, until
    `gone()` (the local stand-in deletes at once)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.deleting: dict[str, EndpointInfo] = {}

    async def delete_endpoint(self, name: str) -> None:
        before = await super().describe_endpoint(name)
        await super().delete_endpoint(name)
        if before is not None:
            self.deleting[name] = before.model_copy(update={"status": "Deleting"})

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        if name in self.deleting:
            return self.deleting[name]
        return await super().describe_endpoint(name)

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        self.deleting.pop(spec.endpoint_name, None)  # the name is free again
        return await super().ensure_endpoint(spec)

    def gone(self) -> None:
        self.deleting.clear()


@pytest_asyncio.fixture
async def lingering(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ThermalHarness, LingeringBackend, Faults]]:
    faults = Faults()
    backend = LingeringBackend(tmp_path_factory.mktemp("races"), faults=faults)
    async with running_harness(
        temporal_client, catalog_db, backend.data_dir, backend, TIMINGS
    ) as h:
        yield h, backend, faults
        backend.gone()


async def _quiet_after_resync(handle: WorkflowHandle) -> bool:
    """The resync was read (a describe after the signal) and everything it led to is done:
    every activity scheduled since completed, and the last workflow task too."""
    events = list((await handle.fetch_history()).events)
    signals = [
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    after = events[signals[-1] + 1 :] if signals else []
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in after
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    completed = sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in after)
    tasks = [e.event_type for e in events if e.event_type in WORKFLOW_TASK_EVENTS]
    return (
        "thermal.describe_endpoint" in scheduled
        and completed == len(scheduled)
        and tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED  # none pending
    )


WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


async def _kinds(h: ThermalHarness, app: str) -> list[str]:
    rows = await h.rows("SELECT kind FROM notifications WHERE app_id = :a ORDER BY id", a=app)
    return [r["kind"] for r in rows]


async def test_a_resync_that_reads_the_endpoint_deleting_takes_it_as_gone(lingering):
    """The model scaled to zero; SageMaker is still deleting its endpoint when a resync (the
    reconcile saw drift a moment before) re-reads the backend: no second delete, no second
    notification, no uptime interval reopened for the departing instance."""
    h, backend, faults = lingering
    app = h.new_app()
    await _set(h, app, ThermalState.WARM)
    st = await _set(h, app, ThermalState.OFF)
    assert st.instance_count == 0 and faults.deletes == [st.endpoint_name]
    assert (await backend.describe_endpoint(st.endpoint_name)).status == "Deleting"  # type: ignore[union-attr]
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    handle = h.client.get_workflow_handle(wf_id)
    await handle.signal(ModelThermalWorkflow.resync)
    await wait_for(lambda: _quiet_after_resync(handle))
    st = await h.control.status(app, ENV, MODEL)
    assert (st.instance_count, st.current_state, st.transitioning) == (0, ThermalState.OFF, False)
    assert faults.deletes == [st.endpoint_name]
    assert await _kinds(h, app) == [
        "thermal.warmup_started",
        "thermal.ready",
        "thermal.turned_off",
    ]
    assert await _uptime(h, app) == [(1, False)]
    await _keep_history(h, wf_id, "thermal-refresh-deleting")


async def test_a_workflow_starting_while_its_endpoint_is_deleting_adopts_nothing(lingering):
    """A COLD model serving a caller; its workflow is terminated and its endpoint deleted by
    hand. The workflow started again finds the endpoint still Deleting: nothing to adopt, so
    no second delete and no went_cold for instances it never ran; the records close."""
    h, backend, faults = lingering
    app = h.new_app()
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL), 60)
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    await h.client.get_workflow_handle(wf_id).terminate("test")
    await backend.delete_endpoint(st.endpoint_name)  # by hand: Deleting for a while
    st = await _set(h, app, ThermalState.COLD)  # starts the workflow again
    assert (st.instance_count, st.endpoint_status) == (0, None)
    assert faults.deletes == [st.endpoint_name]  # the one by hand
    assert await _kinds(h, app) == ["thermal.warmup_started", "thermal.ready"]
    assert await _uptime(h, app) == [(1, False)]
    await _keep_history(h, wf_id, "thermal-start-deleting")


async def test_records_of_an_endpoint_gone_without_its_workflow_are_closed(lingering):
    """The workflow is gone (terminated) and so is its endpoint (deleted by hand): nobody is
    left to correct the record, so the reconcile closes it; its uptime stops billing and the
    next reconcile sees no drift."""
    h, backend, _ = lingering
    app = h.new_app()
    st = await _set(h, app, ThermalState.WARM)
    await h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL)).terminate("test")
    await backend.delete_endpoint(st.endpoint_name)  # Deleting: as good as gone
    report = await _reconcile(h, app, keep="reconcile-closes-vanished")
    assert len(report.drift) == 1 and report.resynced == []
    assert report.closed == [st.endpoint_name]
    [row] = await h.rows(
        "SELECT instance_count, current_state, last_error FROM thermal_states WHERE app_id = :a",
        a=app,
    )
    assert (row["instance_count"], row["current_state"]) == (0, "COLD")
    assert "no running thermal workflow" in row["last_error"]
    assert await _uptime(h, app) == [(1, False)]
    again = await _reconcile(h, app)
    assert (again.drift, again.closed) == ([], [])


async def test_a_workflow_that_ended_after_the_snapshot_is_reported_not_fatal(
    temporal_client: Client, catalog_db, tmp_path, monkeypatch
) -> None:
    """The model's workflow ends between the reconcile's snapshot and its resync signal: the
    reconcile reports it and goes on (it failed as a whole, reporting nothing)."""
    ended: list[str] = []
    original = FleetActivities.snapshot

    @activity.defn(name="fleet.snapshot")
    async def snapshot(self: FleetActivities, inp: ReconcileInput) -> FleetSnapshot:
        inp = ReconcileInput.model_validate(inp)  # a function patched in: hints not resolved
        snap = await original(self, inp)
        for wf_id in ended:  # ends right after the snapshot saw it running
            await self.control.client.get_workflow_handle(wf_id).terminate("test")
        return snap

    monkeypatch.setattr(FleetActivities, "snapshot", snapshot)
    backend = RecordingBackend(tmp_path, faults=Faults())
    async with running_harness(temporal_client, catalog_db, tmp_path, backend, TIMINGS) as h:
        app = h.new_app()
        st = await _set(h, app, ThermalState.WARM)
        await backend.delete_endpoint(st.endpoint_name)  # behind its back: drift
        wf_id = thermal_workflow_id(app, ENV, MODEL)
        ended.append(wf_id)
        report = await _reconcile(h, app, keep="reconcile-signal-ended")
        assert report.resynced == []
        assert any(wf_id in d and "ended before it could be told" in d for d in report.drift)


async def test_a_first_warm_up_between_its_create_and_its_record_is_no_drift(lingering):
    """A HOT model's endpoint is InService while the workflow registers its autoscaling (the
    row still says 0 instances, transitioning): the reconcile leaves it to the workflow."""
    h, _, faults = lingering
    faults.capacity_delay = 4.0
    app = h.new_app()
    setting = asyncio.ensure_future(_set(h, app, ThermalState.HOT))

    async def capacity_step_started() -> bool:
        return bool(faults.capacity_calls)

    await wait_for(capacity_step_started)
    [row] = await h.rows(
        "SELECT instance_count, transitioning FROM thermal_states WHERE app_id = :a", a=app
    )
    assert (row["instance_count"], row["transitioning"]) == (0, True)
    report = await _reconcile(h, app)
    assert (report.drift, report.resynced) == ([], [])
    assert (await setting).instance_count == 2


def test_drift_of_a_transitioning_row_is_left_to_its_running_workflow() -> None:
    row = recorded_row()
    for status in ("InService", "Updating", "Failed"):
        live = EndpointInfo(endpoint_name="ep", model_id=MODEL, status=status, instance_count=2)
        assert drift_reason(row, live) is None
        assert drift_reason(row.model_copy(update={"transitioning": False}), live) is not None
        # No workflow to finish it: the record is wrong, whatever it says.
        assert drift_reason(row.model_copy(update={"workflow_running": False}), live)


async def test_delete_orphan_closes_the_records_of_an_endpoint_already_gone(
    thermal: ThermalHarness,
) -> None:
    """The orphan vanished between the snapshot and the delete (someone else deleted it): its
    records are closed as if the reconcile had deleted it."""
    app = thermal.new_app()
    await record_rows(thermal, (app, "prod", "yolov8n", 1))
    acts = FleetActivities(FakeBackend(), thermal.engine, FakeTemporal())  # type: ignore[arg-type]
    name = endpoint_name(app, "prod", "yolov8n")
    assert await ActivityEnvironment().run(acts.delete_orphan, name) is True
    [row] = await thermal.rows("SELECT instance_count FROM thermal_states WHERE app_id = :a", a=app)
    assert row["instance_count"] == 0
