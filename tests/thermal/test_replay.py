"""Determinism: thermal workflow histories replay without nondeterminism errors — fresh ones
recorded in this run and the ones committed under tests/histories/ (older code's histories)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.fleet_activities import BulkSetInput, ReconcileInput
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workers.worker import WORKFLOWS
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_fleet import BulkThermalUpdateWorkflow, ThermalReconcileWorkflow
from workflows.thermal_types import ReleaseRequest, SetTargetRequest, WarmUpRequest

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


def replayer() -> Replayer:
    return Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)


async def test_fresh_thermal_histories_replay(thermal: ThermalHarness):
    app = thermal.new_app()
    lease = uuid.uuid4().hex
    await thermal.control.warm_up(app, "test", "yolov8n", WarmUpRequest(lease_id=lease))
    handle = thermal.control.handle(app, "test", "yolov8n")
    await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease))
    for state in (ThermalState.WARM, ThermalState.HOT, ThermalState.AUTOMATIC, ThermalState.OFF):
        await thermal.control.set_target(app, "test", "yolov8n", SetTargetRequest(state=state))
    await thermal.client.execute_workflow(
        BulkThermalUpdateWorkflow.run,
        BulkSetInput(
            app_id=app, environment="test", model_ids=["mobilesam"], state=ThermalState.WARM
        ),
        id=f"bulk-replay-{app}",
        task_queue=thermal.task_queue,
    )
    await thermal.client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(app_id=app),
        id=f"reconcile-replay-{app}",
        task_queue=thermal.task_queue,
    )
    histories = [
        await thermal.client.get_workflow_handle(wid).fetch_history()
        for wid in (handle.id, f"bulk-replay-{app}", f"reconcile-replay-{app}")
    ]
    for history in histories:
        await replayer().replay_workflow(history)
    if os.environ.get("RADIANT_RECORD_HISTORIES"):  # refresh the committed histories on purpose
        for name, history in zip(("thermal", "bulk", "reconcile"), histories, strict=True):
            (HISTORIES / f"{name}.json").write_text(
                json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
            )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_histories_replay(path: Path):
    data = json.loads(path.read_text())  # noqa: ASYNC240 - a small test fixture
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    await replayer().replay_workflow(history)


# Histories of older code, each guarding a `workflow.patched` branch (or its absence): named
# here so that losing one fails instead of silently dropping its replay case.
GUARD_HISTORIES = {
    "bulk-item-failure",
    "bulk-slot-held",
    "old-bulk-item-failure",
    "job-cancelled-after-an-invocation",
    "job-failed-after-an-invocation",
    "old-job-cancelled-after-an-invocation",
    "old-job-failed-after-an-invocation",
    "old-job-cancelled-warm-up",
    "old-job-cancelled-while-metering",
    "old-job-failed-hold",
    "old-job-optional-not-held",
    "old-job-vanished-endpoint",
    "job-chained-replacement-call-failed",
    "job-detector-output-without-detections",
    "job-late-lease-renewed",
    "job-replacement-not-held",
    "job-replacement-call-failed",
    "old-job-chained-replacement-call-failed",
    "old-job-detector-output-without-detections",
    "old-job-late-lease-not-renewed",
    "job-metering-refused",
    "old-job-metering-refused",
    "old-job-replacement-not-held",
    "old-job-replacement-call-failed",
    "old-reconcile-autoscaled-count",
    "old-reconcile-shared-endpoint-name",
    "old-reconcile-closes-vanished",
    "old-reconcile-signal-ended",
    "old-thermal-refresh-deleting",
    "reconcile-closes-vanished",
    "reconcile-signal-ended",
    "thermal-refresh-deleting",
    "old-thermal-start-deleting",
    "thermal-start-deleting",
    "old-thermal-update-rolled-back",
    "thermal-update-rolled-back",
    "thermal-update-rolled-back-capacity-failed",
    "patched-job-cancelled-while-metering",
    "reconcile-autoscaled-count",
    "reconcile-shared-endpoint-name",
    "old-thermal-failed-cleanup",
    "old-thermal-target-set-before-continue-as-new",
    "old-thermal-target-set-during-failed-transition",
    "old-thermal-warm-up-without-lease",
    "old-thermal-refresh-unrecorded",
    "old-thermal-release-not-held",
    "old-thermal-scale-out-superseded",
    "thermal-automatic-unpriced",
    "thermal-autoscaled-count",
    "thermal-create-no-capacity",
    "thermal-create-no-capacity-superseded",
    "thermal-failed-scale-out",
    "thermal-failed-cleanup",
    "thermal-failed-warm-up",
    "thermal-refresh-recorded",
    "thermal-release-not-held",
    "thermal-scale-out-superseded",
    "thermal-spec-read-before-create",
    "thermal-target-set-before-continue-as-new",
    "thermal-target-set-during-failed-transition",
    "thermal-warm-up-without-lease",
    "old-thermal-idle-from-arrival",
    "thermal-idle-from-ready",
    "old-thermal-autoscaling-not-owed-after-create",
    "thermal-autoscaling-owed-after-create",
    "old-thermal-no-timers-before-continue-as-new",
    "thermal-timers-before-continue-as-new",
    # no patch: a run started from an input carrying a recount re-reads the count at once
    # (only inputs of new code carry one; older inputs decode with it off)
    "thermal-recount-carried",
    # no patch: only the recorded `transitioning` / an update's error changed (no command)
    "old-thermal-blocked-transitioning",
    "old-thermal-warm-up-turned-off",
    "old-thermal-held-during-capacity-change",
    "thermal-served-during-capacity-change",
}


def test_recorded_histories_exist():
    names = {p.stem for p in HISTORIES.glob("*.json")}
    # fresh: RADIANT_RECORD_HISTORIES=1 pytest tests/thermal/test_replay.py
    # one job history per operation: RADIANT_RECORD_HISTORIES=1 pytest tests/jobs -k end_to_end
    jobs = {
        f"job-{s.id}-{op.id.replace('/', '-')}"
        for s in load_catalog().services.values()
        for op in s.operations
    }
    assert len(jobs) == 16
    assert names == {"thermal", "bulk", "reconcile"} | jobs | GUARD_HISTORIES
