"""The status query never runs ahead of Postgres: while a step's record is being written the
workflow still says "transitioning", so a caller that sees a settled state finds it in
thermal_states too (CI once saw instance_count 0 in the query and 1 in the row)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from temporalio import activity
from temporalio.worker import Worker

from activities.thermal_activities import RecordInput
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness
from workers.worker import WORKER_OPTIONS, WORKFLOWS, WorkerDeps, activities_for
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import ReleaseRequest, WarmUpRequest

MODEL = "yolov8n"


def gated_record(original: Any, entered: asyncio.Event, gate: asyncio.Event) -> Any:
    """thermal.record that holds the "went_cold" record until the test opens the gate."""

    @activity.defn(name="thermal.record")
    async def record(req: RecordInput) -> None:
        if req.event == "went_cold":
            entered.set()
            await gate.wait()
        await original(req)

    return record


async def test_query_reports_transitioning_until_the_record_is_written(thermal: ThermalHarness):
    entered, gate = asyncio.Event(), asyncio.Event()
    queue = f"gated-{uuid.uuid4().hex[:6]}"
    deps = WorkerDeps(
        settings=thermal.settings,
        catalog=load_catalog(),
        backend=thermal.backend,
        engine=thermal.engine,
    )
    acts = [
        gated_record(a, entered, gate)
        if getattr(a, "__temporal_activity_definition").name == "thermal.record"
        else a
        for a in activities_for(deps, thermal.client, queue)
    ]
    control = ThermalControl(thermal.client, queue, TIMINGS)
    app = thermal.new_app()
    lease = uuid.uuid4().hex
    async with Worker(
        thermal.client, task_queue=queue, workflows=WORKFLOWS, activities=acts, **WORKER_OPTIONS
    ):
        try:
            status = await control.warm_up(app, "test", MODEL, WarmUpRequest(lease_id=lease))
            assert status.ready and status.instance_count == 1
            await control.handle(app, "test", MODEL).signal(
                ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease)
            )
            await asyncio.wait_for(entered.wait(), timeout=TIMINGS.idle_seconds + 30)

            # The endpoint is gone but the row still says one instance: the query must not settle.
            mid = await control.status(app, "test", MODEL)
            [row] = await thermal.rows("SELECT * FROM thermal_states WHERE app_id = :a", a=app)
            assert mid.instance_count == 0 and row["instance_count"] == 1
            assert mid.transitioning

            gate.set()

            async def settled():
                st = await control.status(app, "test", MODEL)
                return st if not st.transitioning else None

            final = await wait_for(settled, limit=30)
            [row] = await thermal.rows("SELECT * FROM thermal_states WHERE app_id = :a", a=app)
            assert final.instance_count == 0 and row["instance_count"] == 0
            assert row["current_state"] == "COLD" and not row["transitioning"]
        finally:  # a failed assertion must not leave the activity gated or the workflow up
            gate.set()
            with contextlib.suppress(Exception):
                await control.handle(app, "test", MODEL).terminate("test over")
