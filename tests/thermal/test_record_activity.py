"""thermal.record is idempotent under Temporal retries, yet a new run of the same workflow id
(which counts its transitions from 1 again) is not mistaken for a retry."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from temporalio.testing import ActivityEnvironment

from activities.thermal_activities import RecordInput, ThermalActivities
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workflows.thermal_types import ThermalStatus

MODEL = "yolov8n"


def ready_record(app: str, seq: int) -> RecordInput:
    status = ThermalStatus(
        app_id=app,
        environment="test",
        model_id=MODEL,
        endpoint_name=f"radiant-{app}-test-{MODEL}",
        target_state=ThermalState.COLD,
        current_state=ThermalState.COLD,
        instance_count=1,
        endpoint_status="InService",
        transitioning=False,
        ready=True,
        in_flight=0,
        last_activity_at=None,
        last_error=None,
        transitions=seq,
    )
    return RecordInput(
        app_id=app,
        environment="test",
        model_id=MODEL,
        workflow_id=f"thermal/{app}/test/{MODEL}",
        seq=seq,
        event="ready",
        status=status,
        instance_type="ml.g5.xlarge",
        billed_hourly=Decimal("1.30"),
    )


def in_run(run_id: str) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_run_id=run_id)
    return env


async def test_a_retried_record_writes_once_and_a_new_run_writes_again(thermal: ThermalHarness):
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    req = ready_record(app, seq=1)
    for _ in range(2):  # attempt 1 committed, attempt 2 is Temporal's retry: nothing new
        await in_run("run-1").run(acts.record, req)
    notes = "SELECT kind FROM notifications WHERE app_id = :a"
    uptime = "SELECT * FROM endpoint_uptime WHERE app_id = :a"
    assert len(await thermal.rows(notes, a=app)) == 1
    assert len(await thermal.rows(uptime, a=app)) == 1
    await in_run("run-2").run(acts.record, req)  # the workflow id started again: seq 1 again
    assert len(await thermal.rows(notes, a=app)) == 2
    [interval] = await thermal.rows(uptime, a=app)  # same instance count: the interval goes on
    assert interval["ended_at"] is None
