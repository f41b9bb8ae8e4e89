"""AUTOMATIC's cold-start pricing is versioned with `workflow.patched`: a run recorded with the
unpriced policy replays on today's code, and a new run decides with prices.

The committed history tests/histories/thermal-automatic-unpriced.json was recorded at commit
36fd366 (the policy before prices) with the scenario below: llama-3-70b-instruct ($35.63/h)
with a 1-minute keep-alive, AUTOMATIC, nine warm-up/release cycles about 5 s apart. The unpriced
policy kept the instance up; the priced one releases it at once (its cold starts cost 13 times
less of its own time). Without the patch, replaying that history fails with a nondeterminism
error (checked when the patch was written), because today's policy would scale to zero there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Worker

from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from models_catalog.thermal_policy import DEFAULT_PARAMS
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness
from tests.thermal.test_replay import HISTORIES, replayer
from workers.worker import WORKER_OPTIONS, WORKFLOWS, WorkerDeps, activities_for
from workflows.thermal import (
    LEAD_WINDOW_POLICY_PARAMS,
    MULTIPLICITY_WITHIN_WARMUP_PATCH,
    PRICED_COLD_START_PATCH,
    UNPRICED_POLICY_PARAMS,
    ModelThermalWorkflow,
)
from workflows.thermal_types import ReleaseRequest, SetTargetRequest, WarmUpRequest

MODEL = "llama-3-70b-instruct"
RECORDED = HISTORIES / "thermal-automatic-unpriced.json"


def load_history(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(data["workflow_id"], data["history"])


def patch_markers(history: WorkflowHistory) -> list[str]:
    """Ids of the patch markers (``workflow.patched``) in a history."""
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    return [
        json.loads(m.details["patch-data"].payloads[0].data)["id"]
        for m in markers
        if m.marker_name == "core_patch"
    ]


_UPDATE_ACCEPTED = "workflow_execution_update_accepted_event_attributes"


def _scheduled(event) -> str | None:  # noqa: ANN001 - a history event protobuf
    if event.HasField("activity_task_scheduled_event_attributes"):
        return event.activity_task_scheduled_event_attributes.activity_type.name
    return None


async def test_unpriced_history_replays_on_the_priced_code():
    history = load_history(RECORDED)
    assert patch_markers(history) == []  # recorded before the patch existed
    events = list(history.events)
    deletes = [i for i, e in enumerate(events) if _scheduled(e) == "thermal.delete_endpoint"]
    updates = [i for i, e in enumerate(events) if e.HasField(_UPDATE_ACCEPTED)]
    # the unpriced policy kept the endpoint up: it went only with the final "set OFF" update
    assert deletes and min(deletes) > max(updates)
    await replayer().replay_workflow(history)


async def test_new_runs_use_the_priced_policy(thermal: ThermalHarness):
    base = load_catalog()
    model = base.models[MODEL]
    one_minute = model.thermal.model_copy(update={"scale_to_zero_after_minutes": 1})
    catalog = dataclasses.replace(
        base, models={**base.models, MODEL: model.model_copy(update={"thermal": one_minute})}
    )
    queue = f"priced-{uuid.uuid4().hex[:6]}"
    deps = WorkerDeps(
        settings=thermal.settings, catalog=catalog, backend=thermal.backend, engine=thermal.engine
    )
    control = ThermalControl(thermal.client, queue, TIMINGS)
    app = thermal.new_app()
    handle = control.handle(app, "test", MODEL)
    async with Worker(
        thermal.client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=activities_for(deps, thermal.client, queue),
        **WORKER_OPTIONS,
    ):
        try:
            await control.set_target(
                app, "test", MODEL, SetTargetRequest(state=ThermalState.AUTOMATIC)
            )
            for _ in range(9):  # the recording's traffic: 8 gaps, enough for the histogram
                lease = uuid.uuid4().hex
                status = await control.warm_up(app, "test", MODEL, WarmUpRequest(lease_id=lease))
                assert status.ready
                await asyncio.sleep(0.3)
                await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease))
                await asyncio.sleep(2.2)  # gaps of 2-30 s all separate the two policies

            async def released():
                st = await handle.query(ModelThermalWorkflow.status)
                return st.instance_count == 0 and not st.transitioning

            # Priced: gone long before the 1-minute keep-alive (unpriced kept it for hours).
            await wait_for(released, limit=40.0)
            history = await handle.fetch_history()
            assert PRICED_COLD_START_PATCH in patch_markers(history)
            assert MULTIPLICITY_WITHIN_WARMUP_PATCH in patch_markers(history)
            await replayer().replay_workflow(history)
        finally:
            await handle.terminate("test over")


def test_a_run_keeps_the_policy_version_it_started_on():
    """Unpriced (before prices), the first priced version (followers within warm-up + lead,
    penalty 0.9), today's (followers within the warm-up, 1.1)."""
    wf = object.__new__(ModelThermalWorkflow)  # the two flags are all _policy_params reads
    cases = [
        (False, False, UNPRICED_POLICY_PARAMS),
        (True, False, LEAD_WINDOW_POLICY_PARAMS),
        (True, True, DEFAULT_PARAMS),
    ]
    for priced, warmup_window, expected in cases:
        wf.priced, wf.warmup_window = priced, warmup_window
        assert wf._policy_params() == expected
    assert UNPRICED_POLICY_PARAMS.multiplicity_with_lead
    assert LEAD_WINDOW_POLICY_PARAMS.multiplicity_with_lead
    assert LEAD_WINDOW_POLICY_PARAMS.penalty_factor == 0.9
    assert not DEFAULT_PARAMS.multiplicity_with_lead
