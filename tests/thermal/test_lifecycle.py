"""A COLD model's whole life: held request, real server, idle scale to zero, and the same story
in thermal_states, uptime intervals and notifications; continue-as-new; reconcile; bulk."""

from __future__ import annotations

import asyncio
import os
import uuid

from temporalio.client import WorkflowExecutionStatus

from activities.backends.base import TAG_MANAGED_BY, EndpointSpec, endpoint_name
from activities.fleet_activities import BulkSetInput, ReconcileInput
from activities.thermal_activities import MANAGED_BY, TAG_APP, TAG_ENVIRONMENT
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness
from workers.samples import SAMPLES
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_fleet import BulkThermalUpdateWorkflow, ThermalReconcileWorkflow
from workflows.thermal_types import ReleaseRequest, SetTargetRequest, WarmUpRequest

MODEL = "yolov8n"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cold_request_is_held_served_and_scaled_to_zero(thermal: ThermalHarness):
    app = thermal.new_app()
    lease = uuid.uuid4().hex
    status = await thermal.control.warm_up(app, "test", MODEL, WarmUpRequest(lease_id=lease))
    assert status.ready and status.instance_count == 1 and status.current_state == ThermalState.COLD
    # A real model server answers the SageMaker container contract.
    image = SAMPLES["perception/detect"].read_bytes()
    result = await thermal.backend.invoke(
        status.endpoint_name, image, "image/png", "application/json"
    )
    assert b"detections" in result.body
    pids = thermal.backend.endpoint_pids(status.endpoint_name)
    assert len(pids) == 1 and pid_alive(pids[0])

    await thermal.control.handle(app, "test", MODEL).signal(
        ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease)
    )

    async def cold():
        st = await thermal.control.status(app, "test", MODEL)
        return st if st.instance_count == 0 and not st.transitioning else None

    final = await wait_for(cold, limit=TIMINGS.idle_seconds + 30)
    assert final.current_state == ThermalState.COLD and final.endpoint_status is None
    await wait_for(lambda: asyncio.sleep(0, result=not pid_alive(pids[0])), limit=10)
    assert await thermal.backend.describe_endpoint(status.endpoint_name) is None

    [row] = await thermal.rows("SELECT * FROM thermal_states WHERE app_id = :a", a=app)
    assert row["current_state"] == "COLD" and row["instance_count"] == 0
    [interval] = await thermal.rows("SELECT * FROM endpoint_uptime WHERE app_id = :a", a=app)
    assert interval["instance_count"] == 1 and interval["ended_at"] is not None
    assert interval["ended_at"] > interval["started_at"]
    kinds = [
        r["kind"]
        for r in await thermal.rows(
            "SELECT kind FROM notifications WHERE app_id = :a ORDER BY id", a=app
        )
    ]
    assert kinds == ["thermal.warmup_started", "thermal.ready", "thermal.went_cold"]


async def test_a_recreated_thermal_workflow_keeps_notifying(thermal: ThermalHarness):
    """A thermal workflow that was ended (an admin in the Web UI, a fresh Temporal server on the
    same database) starts again from transition 1: its records and notifications must not be
    taken for the old run's retries and dropped."""
    app = thermal.new_app()
    handle = thermal.control.handle(app, "test", MODEL)
    for _ in range(2):
        lease = uuid.uuid4().hex
        await thermal.control.warm_up(app, "test", MODEL, WarmUpRequest(lease_id=lease))
        await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease))

        async def cold():
            st = await thermal.control.status(app, "test", MODEL)
            return st.instance_count == 0 and not st.transitioning

        await wait_for(cold, limit=TIMINGS.idle_seconds + 30)
        await handle.terminate("ended by an admin")
    kinds = [
        r["kind"]
        for r in await thermal.rows(
            "SELECT kind FROM notifications WHERE app_id = :a ORDER BY id", a=app
        )
    ]
    assert kinds.count("thermal.ready") == 2 and kinds.count("thermal.went_cold") == 2, kinds


async def test_continue_as_new_keeps_state(thermal: ThermalHarness):
    app = thermal.new_app()
    control = thermal.control.__class__(
        thermal.client, thermal.task_queue, TIMINGS.model_copy(update={"max_history_events": 30})
    )
    await control.set_target(app, "test", MODEL, SetTargetRequest(state=ThermalState.WARM))
    handle = control.handle(app, "test", MODEL)
    first_run = (await handle.describe()).run_id
    for _ in range(6):
        await control.warm_up(app, "test", MODEL, WarmUpRequest())
    await control.set_target(app, "test", MODEL, SetTargetRequest(state=ThermalState.HOT))
    await control.set_target(app, "test", MODEL, SetTargetRequest(state=ThermalState.WARM))

    async def new_run():
        desc = await thermal.client.get_workflow_handle(handle.id).describe()
        return (
            desc
            if desc.run_id != first_run and desc.status == WorkflowExecutionStatus.RUNNING
            else None
        )

    await wait_for(new_run)
    st = await control.status(app, "test", MODEL)
    assert st.current_state == ThermalState.WARM and st.instance_count == 1 and st.ready


async def test_reconcile_fixes_drift_and_reports_orphans(thermal: ThermalHarness):
    app = thermal.new_app()
    st = await thermal.control.set_target(
        app, "test", MODEL, SetTargetRequest(state=ThermalState.WARM)
    )
    # Drift: the model server dies behind the workflow's back.
    for pid in thermal.backend.endpoint_pids(st.endpoint_name):
        os.kill(pid, 9)
    # An orphan: an endpoint radiant made for this app (its tags say so) that no workflow owns
    # (a GPU cost leak), and an untagged one (made by hand): reported, never deleted.
    orphan = EndpointSpec(
        endpoint_name=endpoint_name(app, "test", "mobilesam"),
        model_id="mobilesam",
        image="local",
        instance_type="ml.g4dn.xlarge",
        instance_count=1,
        max_instances=1,
        category="vision_segmentation",
        specialty="segmentation",
        tags={
            TAG_APP: app,
            TAG_ENVIRONMENT: "test",
            TAG_MANAGED_BY: MANAGED_BY,
        },
    )
    by_hand = orphan.model_copy(
        update={"endpoint_name": endpoint_name(app, "test", "efficientnet-b0"), "tags": {}}
    )
    for spec in (orphan, by_hand):
        await thermal.backend.ensure_endpoint(spec)

    report = await thermal.client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(app_id=app, delete_orphans=True),
        id=f"reconcile-{app}",
        task_queue=thermal.task_queue,
    )
    assert [o.endpoint_name for o in report.orphans] == [orphan.endpoint_name]
    assert report.orphans[0].deleted
    assert await thermal.backend.describe_endpoint(orphan.endpoint_name) is None
    assert [o.endpoint_name for o in report.unmanaged] == [by_hand.endpoint_name]
    assert await thermal.backend.describe_endpoint(by_hand.endpoint_name) is not None
    await thermal.backend.delete_endpoint(by_hand.endpoint_name)
    assert any(app in line for line in report.drift) and report.resynced

    async def healed():
        info = await thermal.backend.describe_endpoint(st.endpoint_name)
        return info if info and info.status == "InService" and info.instance_count == 1 else None

    await wait_for(healed)
    # this test's reconcile reported this app's drift (other tests reconcile other apps)
    assert await thermal.rows(
        "SELECT 1 FROM notifications WHERE kind = 'thermal.reconcile' "
        "AND payload->>'drift' LIKE :pattern",
        pattern=f"%{app}%",
    )


async def test_bulk_update_with_bounded_concurrency(thermal: ThermalHarness):
    app = thermal.new_app()
    models = ["yolov8n", "mobilesam", "efficientnet-b0"]
    results = await thermal.client.execute_workflow(
        BulkThermalUpdateWorkflow.run,
        BulkSetInput(
            app_id=app,
            environment="test",
            model_ids=models,
            state=ThermalState.WARM,
            max_concurrency=2,
        ),
        id=f"bulk-{app}",
        task_queue=thermal.task_queue,
    )
    assert [r.model_id for r in results] == models and all(r.ok for r in results)
    for model in models:
        st = await thermal.control.status(app, "test", model)
        assert st.current_state == ThermalState.WARM and st.ready
