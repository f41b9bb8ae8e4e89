"""A bulk change whose set_one activity fails for one model (retries exhausted: a worker lost
three times, heartbeat timeouts): that model is reported failed and the others' results are
kept; the bulk used to fail as a whole. RADIANT_RECORD_HISTORIES=1 keeps the history."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.fleet_activities import BulkItemResult, BulkSetInput, BulkSetItem
from models_catalog.types import ThermalState
from workflows.thermal_fleet import BulkThermalUpdateWorkflow

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
