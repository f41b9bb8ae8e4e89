"""Intent that arrives while a transition runs (found by a review of the state machine):

- a target set during a transition that ends at a continue-as-new point is converged before the
  run continues as new (the run used to wait for that target's handler, which waited for it);
- a target set during a transition that then fails is still tried, and its caller is not
  failed with the earlier target's error;
- a warm-up without a lease (CLI, LLM pre-warm) never releases: AUTOMATIC's in-flight count is
  the leases held, so its statistics keep learning idle gaps after one.

RADIANT_RECORD_HISTORIES=1 keeps each run's history under tests/histories/ (guard histories of
the patches, see tests/thermal/test_replay.py)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.thermal_control import ThermalControl
from models_catalog.types import ThermalState
from tests.fixtures.worker import TIMINGS, ThermalHarness
from tests.thermal.test_capacity_and_leases import Faults, harness  # noqa: F401 - a fixture
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import (
    ReleaseRequest,
    SetTargetRequest,
    ThermalStatus,
    WarmUpRequest,
)

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
MODEL, ENV = "yolov8n", "test"


async def record_history(h: ThermalHarness, app: str, name: str) -> None:
    """The history of the model's first run (the one that continued as new, if any)."""
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        wid = h.control.handle(app, ENV, MODEL).id
        runs = [r async for r in h.client.list_workflows(f"WorkflowId = '{wid}'")]
        first = min(runs, key=lambda r: r.start_time)
        history = await h.client.get_workflow_handle(wid, run_id=first.run_id).fetch_history()
        (HISTORIES / f"{name}.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )


async def warm_before_continue_as_new(
    h: ThermalHarness, knobs: Faults, app: str
) -> tuple[ThermalControl, asyncio.Task[ThermalStatus]]:
    """A slow WARM create whose end is a continue-as-new point (a short history limit): the
    control, and the WARM change under way, 1.5 s into its 3 s create."""
    control = ThermalControl(
        h.client, h.task_queue, TIMINGS.model_copy(update={"max_history_events": 10})
    )
    knobs.create_delay = 3.0
    warm = asyncio.create_task(
        control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    )
    await asyncio.sleep(1.5)  # inside the WARM create
    return control, warm


async def test_a_target_set_during_the_last_transition_before_continue_as_new_is_applied(
    harness: tuple[ThermalHarness, Faults],  # noqa: F811 - the imported fixture
):
    h, knobs = harness
    app = h.new_app()
    control, warm = await warm_before_continue_as_new(h, knobs, app)
    hot = asyncio.create_task(
        control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT))
    )
    await asyncio.wait_for(warm, 60)
    try:
        status = await asyncio.wait_for(asyncio.shield(hot), 30)
    finally:
        await record_history(h, app, "thermal-target-set-before-continue-as-new")
        hot.cancel()
    assert (status.current_state, status.target_state) == (ThermalState.HOT, ThermalState.HOT)
    assert status.instance_count == 2 and not status.transitioning


async def test_a_target_set_during_a_failing_transition_is_still_tried(
    harness: tuple[ThermalHarness, Faults],  # noqa: F811 - the imported fixture
):
    h, knobs = harness
    app = h.new_app()
    knobs.create_delay, knobs.fail_create = 3.0, True
    hot = asyncio.create_task(
        h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT))
    )
    await asyncio.sleep(1.5)  # inside the HOT create, which will fail
    warm = asyncio.create_task(
        h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    )
    with pytest.raises(WorkflowUpdateFailedError):
        await asyncio.wait_for(hot, 60)
    knobs.fail_create = False  # the quota is back before WARM is tried
    try:
        status = await asyncio.wait_for(warm, 60)
    finally:
        await record_history(h, app, "thermal-target-set-during-failed-transition")
    assert (status.current_state, status.target_state) == (ThermalState.WARM, ThermalState.WARM)
    assert status.instance_count == 1 and status.last_error is None


async def test_a_warm_up_without_a_lease_does_not_stop_automatic_learning(thermal: ThermalHarness):
    app = thermal.new_app()
    await thermal.control.set_target(
        app, ENV, MODEL, SetTargetRequest(state=ThermalState.AUTOMATIC)
    )
    await thermal.control.warm_up(app, ENV, MODEL, WarmUpRequest(lease_id=""))  # `radiant warm`
    handle = thermal.control.handle(app, ENV, MODEL)
    for _ in range(4):  # four jobs, one after another
        lease = uuid.uuid4().hex
        await handle.signal(ModelThermalWorkflow.lease, WarmUpRequest(lease_id=lease))
        await asyncio.sleep(0.3)
        await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=lease))
        await asyncio.sleep(0.3)
    stats = await handle.query(ModelThermalWorkflow.traffic)
    await record_history(thermal, app, "thermal-warm-up-without-lease")
    assert stats is not None and stats.arrivals == 5
    assert stats.in_flight == 0
    assert len(stats.recent_gaps) == 4  # one idle gap before each job


async def test_a_cleanup_that_fails_too_is_recorded_not_fatal(
    harness: tuple[ThermalHarness, Faults],  # noqa: F811 - the imported fixture
):
    """The create fails, and so does the DescribeEndpoint of the cleanup (a policy without
    it): the transition is recorded failed with both reasons, and the workflow lives on (it
    used to fail, and with it every later change of the model)."""
    h, faults = harness
    app = h.new_app()
    await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.COLD))
    faults.fail_create = faults.deny_describe = True
    try:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    finally:
        faults.fail_create = faults.deny_describe = False
        await record_history(h, app, "thermal-failed-cleanup")
    assert "cleaning up failed too" in str(err.value.cause)
    status = await h.control.status(app, ENV, MODEL)  # a query: the workflow still runs
    assert "sagemaker:DescribeEndpoint" in (status.last_error or "")
    again = await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    assert again.current_state == ThermalState.WARM and again.instance_count == 1


async def test_a_long_history_continues_as_new_without_a_configured_limit(
    temporal_client, catalog_db, tmp_path_factory: pytest.TempPathFactory, monkeypatch
):
    """No max_history_events configured: the workflow still continues as new past
    DEFAULT_MAX_HISTORY_EVENTS (lowered here; the workflow module is shared with the test), so
    a worker restart never replays months of history; the state carries over."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import workflows.thermal as thermal_module
    from tests.fixtures.worker import running_harness
    from workers.worker import WORKFLOWS

    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.thermal")
    )
    monkeypatch.setattr(thermal_module, "DEFAULT_MAX_HISTORY_EVENTS", 40)
    data_dir = tmp_path_factory.mktemp("long-history")
    async with running_harness(temporal_client, catalog_db, data_dir, workflow_runner=runner) as h:
        app = h.new_app()
        for state in (ThermalState.WARM, ThermalState.COLD, ThermalState.WARM, ThermalState.HOT):
            await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=state))
        status = await h.control.status(app, ENV, MODEL)
        wid = h.control.handle(app, ENV, MODEL).id
        runs = [r async for r in h.client.list_workflows(f"WorkflowId = '{wid}'")]
        first = min(runs, key=lambda r: r.start_time)
        history = await h.client.get_workflow_handle(wid, run_id=first.run_id).fetch_history()
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW and len(runs) >= 2
    assert (status.current_state, status.instance_count) == (ThermalState.HOT, 2)
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner
    )
    await replayer.replay_workflow(history)  # the patch marker and the continue-as-new


async def test_a_capacity_failure_after_an_earlier_failed_transition_answers_its_caller(
    harness: tuple[ThermalHarness, Faults],  # noqa: F811 - the imported fixture
):
    """A failed create (blocked), a successful retry, then a scale-out that fails on a serving
    endpoint: its caller hears of it at once (the old failure's generation no longer hides
    it), instead of waiting for a capacity retry that may never succeed."""
    h, faults = harness
    app = h.new_app()
    faults.fail_create = True
    with pytest.raises(WorkflowUpdateFailedError):
        await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    faults.fail_create = False
    await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
    faults.fail_scale_out = 1000
    try:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await asyncio.wait_for(
                h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT)),
                30,
            )
    finally:
        faults.fail_scale_out = 0
    assert "insufficient capacity" in str(err.value.cause)


async def test_a_resync_during_the_last_transition_before_continue_as_new_is_carried(
    harness: tuple[ThermalHarness, Faults],  # noqa: F811 - the imported fixture
):
    """The reconcile's resync (drift seen: re-read the backend) arrives while the transition
    before a continue-as-new runs: the next run re-reads the endpoint first. It used to
    start from the old snapshot, so the drift waited for the next reconcile."""
    h, knobs = harness
    app = h.new_app()
    control, warm = await warm_before_continue_as_new(h, knobs, app)
    handle = control.handle(app, ENV, MODEL)
    await handle.signal(ModelThermalWorkflow.resync)
    await asyncio.wait_for(warm, 60)
    wid = handle.id
    for _ in range(100):  # the next run's first converge
        runs = [r async for r in h.client.list_workflows(f"WorkflowId = '{wid}'")]
        status = await control.status(app, ENV, MODEL)
        if len(runs) >= 2 and not status.transitioning:
            break
        await asyncio.sleep(0.1)
    runs.sort(key=lambda r: r.start_time)
    assert len(runs) >= 2, "the first run did not continue as new"
    second = await h.client.get_workflow_handle(wid, run_id=runs[1].run_id).fetch_history()
    activities = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in second.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # every run first loads the model's spec; then the carried re-read
    assert activities[:2] == ["thermal.describe_model", "thermal.describe_endpoint"], activities
    assert (status.current_state, status.instance_count) == (ThermalState.WARM, 1)
