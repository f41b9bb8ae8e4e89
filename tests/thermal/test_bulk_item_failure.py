"""A bulk change whose set_one activity fails for one model (retries exhausted: a worker lost
three times, heartbeat timeouts): that model is reported failed and the others' results are
kept; the bulk used to fail as a whole. RADIANT_RECORD_HISTORIES=1 keeps the history."""

from __future__ import annotations

import json
import os
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
from temporalio.worker import Worker

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


async def test_one_failed_item_does_not_fail_the_bulk(temporal_client: Client):
    queue = f"bulk-{uuid.uuid4().hex[:6]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[BulkThermalUpdateWorkflow],
        activities=[set_one_losing_mobilesam],
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
