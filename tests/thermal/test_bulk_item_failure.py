"""A bulk change whose set_one activity fails for one model (retries exhausted: a worker lost
three times, heartbeat timeouts): that model is reported failed and the others' results are
kept; the bulk used to fail as a whole. RADIANT_RECORD_HISTORIES=1 keeps the history."""

from __future__ import annotations

import asyncio
import json
import os
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import fleet_activities
from activities.app_scope import AppScope
from activities.fleet_activities import (
    BulkItemResult,
    BulkSetInput,
    BulkSetItem,
    FleetActivities,
)
from activities.thermal_control import ThermalControl
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workflows.thermal_fleet import BulkThermalUpdateWorkflow
from workflows.thermal_types import SetTargetRequest, ThermalStatus

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@activity.defn(name="fleet.set_one")
async def set_one_losing_mobilesam(item: BulkSetItem) -> BulkItemResult:
    if item.model_id == "mobilesam":
        raise ApplicationError("the worker running it was lost (injected)", non_retryable=True)
    return BulkItemResult(model_id=item.model_id, ok=True)


@activity.defn(name="fleet.wait_settled")
async def wait_settled_at_once(item: BulkSetItem) -> None:
    pass


async def test_one_failed_item_does_not_fail_the_bulk(temporal_client: Client):
    queue = f"bulk-{uuid.uuid4().hex[:6]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[BulkThermalUpdateWorkflow],
        activities=[set_one_losing_mobilesam, wait_settled_at_once],
    ):  # fmt: skip
        handle = await temporal_client.start_workflow(
            BulkThermalUpdateWorkflow.run,
            BulkSetInput(
                app_id="bulk",
                environment="test",
                state=ThermalState.WARM,
                model_ids=["yolov8m", "mobilesam", "clip-vit-l14"],
            ),  # fmt: skip
            id=f"bulk-{queue}",
            task_queue=queue,
        )
        try:
            results = await handle.result()
        finally:
            if os.environ.get("RADIANT_RECORD_HISTORIES"):
                history = await handle.fetch_history()
                (HISTORIES / "bulk-item-failure.json").write_text(
                    json.dumps(
                        {"workflow_id": history.workflow_id, "history": history.to_json_dict()}
                    )
                )
    assert [(r.model_id, r.ok) for r in results] == [
        ("yolov8m", True), ("mobilesam", False), ("clip-vit-l14", True),
    ]  # fmt: skip
    assert "the worker running it was lost" in (results[1].error or "")


# ------------------------------------------------------------ the slot of a given-up model


class SlotLog:
    """Fake set_one / wait_settled that log when each starts and ends: mobilesam's set_one gives
    up (its worker lost) while its transition runs on for `settle_s` seconds."""

    def __init__(self, settle_s: float, settled: bool = True) -> None:
        self.settle_s, self.settled = settle_s, settled
        self.events: list[str] = []

    @activity.defn(name="fleet.set_one")
    async def set_one(self, item: BulkSetItem) -> BulkItemResult:
        self.events.append(f"set {item.model_id}")
        if item.model_id == "mobilesam":
            raise ApplicationError("the worker running it was lost (injected)", non_retryable=True)
        return BulkItemResult(model_id=item.model_id, ok=True)

    @activity.defn(name="fleet.wait_settled")
    async def wait_settled(self, item: BulkSetItem) -> None:
        await asyncio.sleep(self.settle_s)
        if not self.settled:
            raise ApplicationError("query timed out (injected)", non_retryable=True)
        self.events.append(f"settled {item.model_id}")


async def run_slot_bulk(client: Client, log: SlotLog, record: str | None = None):
    queue = f"bulk-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client, task_queue=queue, workflows=[BulkThermalUpdateWorkflow],
        activities=[log.set_one, log.wait_settled],
    ):  # fmt: skip
        handle = await client.start_workflow(
            BulkThermalUpdateWorkflow.run,
            BulkSetInput(
                app_id="bulk",
                environment="test",
                state=ThermalState.WARM,
                model_ids=["mobilesam", "yolov8m"],
                max_concurrency=1,
            ),  # fmt: skip
            id=f"bulk-{queue}",
            task_queue=queue,
        )
        results = await handle.result()
        if record and os.environ.get("RADIANT_RECORD_HISTORIES"):
            history = await handle.fetch_history()
            (HISTORIES / f"{record}.json").write_text(
                json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
            )
    return results


async def test_a_given_up_model_holds_its_slot_until_its_transition_settles(
    temporal_client: Client,
):
    """max_concurrency=1: the next model's change starts only once mobilesam's transition no
    longer runs (it used to start at once: two transitions at a time)."""
    log = SlotLog(settle_s=1.0)
    results = await run_slot_bulk(temporal_client, log, record="bulk-slot-held")
    assert log.events == ["set mobilesam", "settled mobilesam", "set yolov8m"]
    assert [(r.model_id, r.ok) for r in results] == [("mobilesam", False), ("yolov8m", True)]
    assert results[0].error == "the worker running it was lost (injected)"


async def test_a_model_whose_workflow_does_not_answer_frees_its_slot_and_says_so(
    temporal_client: Client,
):
    log = SlotLog(settle_s=0.0, settled=False)
    results = await run_slot_bulk(temporal_client, log)
    assert log.events == ["set mobilesam", "set yolov8m"]
    assert [(r.model_id, r.ok) for r in results] == [("mobilesam", False), ("yolov8m", True)]
    assert "whether its transition still runs is unknown" in (results[0].error or "")


class StatusHandle:
    """A thermal workflow's handle answering queries from a script of `transitioning` values."""

    def __init__(self, script: list[bool]) -> None:
        self.id, self.script, self.asked = "thermal/bulk/test/yolov8n", list(script), 0

    async def query(self, *_: Any, **__: Any) -> Any:
        self.asked += 1
        return types.SimpleNamespace(transitioning=self.script.pop(0))


@pytest.mark.parametrize(
    ("running", "script", "asked"),
    [(True, [True, True, False], 3), (True, [False], 1), (False, [], 0)],
    ids=["transitioning-then-settled", "settled", "not-running"],
)
async def test_wait_settled_returns_when_no_transition_runs(
    monkeypatch, running: bool, script: list[bool], asked: int
):
    handle = StatusHandle(script)
    control = types.SimpleNamespace(client=None, handle=lambda *_: handle, apps=AppScope())

    async def workflow_running(client: Any, wf_id: str) -> bool:
        assert wf_id == handle.id
        return running

    monkeypatch.setattr(fleet_activities, "workflow_running", workflow_running)
    acts = FleetActivities(None, None, control)  # type: ignore[arg-type]
    acts.settle_poll_seconds = 0.01
    env = ActivityEnvironment()
    heartbeats: list[Any] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    item = BulkSetItem(
        app_id="bulk", environment="test", model_id="yolov8n", state=ThermalState.WARM
    )
    await env.run(acts.wait_settled, item)
    assert handle.asked == asked and len(heartbeats) == max(0, asked - 1)


# --------------------------------------------------------------------------- transient errors


class FlakyControl:
    """The harness's real control whose set_target fails once per listed model: `before` the
    call reaches the thermal workflow, or `after` it (the change made, its answer lost)."""

    def __init__(self, real: ThermalControl, fail: dict[str, tuple[str, BaseException]]) -> None:
        self.real, self.fail = real, dict(fail)
        self.client, self.apps = real.client, real.apps
        self.calls: list[str] = []
        self.answers: dict[str, list[ThermalStatus]] = {}  # also the ones lost

    async def set_target(
        self, app_id: str, env: str, model_id: str, req: SetTargetRequest
    ) -> ThermalStatus:
        self.calls.append(model_id)
        when, error = self.fail.pop(model_id, ("", None))
        if when == "before" and error is not None:
            raise error
        status = await self.real.set_target(app_id, env, model_id, req)
        self.answers.setdefault(model_id, []).append(status)
        if when == "after" and error is not None:
            raise error
        return status


async def run_bulk(
    client: Client, control: Any, app: str, models: list[str], state: ThermalState
) -> list[BulkItemResult]:
    """The real bulk workflow and set_one activity (its RetryPolicy: 3 attempts)."""
    acts = FleetActivities(None, None, control)  # type: ignore[arg-type]
    queue = f"bulk-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client, task_queue=queue, workflows=[BulkThermalUpdateWorkflow], activities=[acts.set_one]
    ):
        return await client.execute_workflow(
            BulkThermalUpdateWorkflow.run,
            BulkSetInput(app_id=app, environment="test", state=state, model_ids=models),
            id=f"bulk-{queue}",
            task_queue=queue,
        )


@pytest.mark.parametrize(
    "error",
    [
        RPCError("temporal frontend unavailable", RPCStatusCode.UNAVAILABLE, b""),
        WorkflowUpdateRPCTimeoutOrCancelledError(),
        ConnectionResetError("connection reset by peer"),
    ],
    ids=["unavailable", "update-rpc-timeout", "connection-reset"],
)
async def test_transient_error_is_retried_and_the_model_ends_ok(
    thermal: ThermalHarness, temporal_client: Client, error: BaseException
):
    app = thermal.new_app()
    flaky = FlakyControl(thermal.control, {"mobilesam": ("before", error)})
    results = await run_bulk(
        temporal_client, flaky, app, ["yolov8n", "mobilesam"], ThermalState.COLD
    )
    assert [(r.model_id, r.ok) for r in results] == [("yolov8n", True), ("mobilesam", True)]
    assert sorted(flaky.calls) == ["mobilesam", "mobilesam", "yolov8n"]  # retried once


async def test_a_retry_after_a_lost_answer_changes_nothing(
    thermal: ThermalHarness, temporal_client: Client
):
    """The first attempt's update reached the thermal workflow and warmed the model, its answer
    was lost: the retry sets the same target again, which is a no-op (no second transition)."""
    app = thermal.new_app()
    lost = RPCError("answer lost", RPCStatusCode.UNAVAILABLE, b"")
    flaky = FlakyControl(thermal.control, {"mobilesam": ("after", lost)})
    try:
        results = await run_bulk(
            temporal_client, flaky, app, ["yolov8n", "mobilesam"], ThermalState.WARM
        )
        assert [(r.model_id, r.ok) for r in results] == [("yolov8n", True), ("mobilesam", True)]
        assert flaky.calls.count("mobilesam") == 2
        first, retried = flaky.answers["mobilesam"]
        assert first.ready and first.target_state == ThermalState.WARM
        assert results[1].status == retried
        # the repeat made no transition of its own: the same state, the same count
        assert retried.model_dump(exclude={"last_activity_at", "idle_deadline"}) == (
            first.model_dump(exclude={"last_activity_at", "idle_deadline"})
        )
    finally:
        for model in ("yolov8n", "mobilesam"):
            await thermal.control.set_target(
                app, "test", model, SetTargetRequest(state=ThermalState.OFF)
            )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            WorkflowUpdateFailedError(ApplicationError("could not set mobilesam to WARM: boom")),
            "could not set mobilesam to WARM: boom",
        ),
        (RPCError("bad workflow id", RPCStatusCode.INVALID_ARGUMENT, b""), "bad workflow id"),
    ],
    ids=["update-failed", "invalid-argument"],
)
async def test_the_models_own_failure_is_reported_without_retry(
    thermal: ThermalHarness, temporal_client: Client, error: BaseException, message: str
):
    app = thermal.new_app()
    flaky = FlakyControl(thermal.control, {"mobilesam": ("before", error)})
    results = await run_bulk(
        temporal_client, flaky, app, ["yolov8n", "mobilesam"], ThermalState.COLD
    )
    assert [(r.model_id, r.ok) for r in results] == [("yolov8n", True), ("mobilesam", False)]
    assert message in (results[1].error or "")
    assert sorted(flaky.calls) == ["mobilesam", "yolov8n"]  # no retry


async def test_a_pair_not_served_is_reported_without_retry(temporal_client: Client):
    control = ThermalControl(temporal_client, "unused", apps=AppScope(("served/*",)))
    flaky = FlakyControl(control, {})
    results = await run_bulk(temporal_client, flaky, "other", ["yolov8n"], ThermalState.WARM)
    assert [(r.model_id, r.ok) for r in results] == [("yolov8n", False)]
    assert "not served" in (results[0].error or "") and flaky.calls == ["yolov8n"]


async def test_wait_settled_on_a_real_thermal_workflow(thermal: ThermalHarness):
    """The real query path (Temporal's describe and the status query with its RPC timeout)."""
    app = thermal.new_app()
    item = BulkSetItem(app_id=app, environment="test", model_id="yolov8n", state=ThermalState.COLD)
    acts = FleetActivities(None, None, thermal.control)  # type: ignore[arg-type]
    await ActivityEnvironment().run(acts.wait_settled, item)  # no workflow yet: returns
    await thermal.control.set_target(app, "test", "yolov8n", SetTargetRequest(state=item.state))
    await ActivityEnvironment().run(acts.wait_settled, item)  # running, not transitioning
    status = await thermal.control.status(app, "test", "yolov8n")
    assert status.current_state == ThermalState.COLD and not status.transitioning
