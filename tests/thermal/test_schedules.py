"""The schedules every worker brings up to date at start-up, on a real Temporal dev server: an
operator's pause (and its note) survives a worker start; a changed interval is still applied."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
)
from temporalio.service import RPCError

from workers.llm_registration import HEALTH_SCHEDULE_ID
from workers.schedules import RECONCILE_SCHEDULE_ID, ensure_schedules, schedules
from workers.settings import Settings


async def test_a_worker_start_keeps_a_paused_schedule_paused(
    temporal_client: Client, tmp_path: Path
):
    # A day-long interval (aligned to the epoch): nothing fires while the test runs, and its
    # task queue has no worker anyway. Deleted again below.
    daily = Settings(
        data_dir=tmp_path,
        task_queue=f"schedules-{uuid.uuid4().hex[:6]}",
        reconcile_interval_seconds=86400,
    )
    ids = list(schedules(daily))
    reconcile = temporal_client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    try:
        await ensure_schedules(temporal_client, daily)
        default_note = (await reconcile.describe()).schedule.state.note
        await reconcile.pause(note="maintenance")

        every_two_days = daily.model_copy(update={"reconcile_interval_seconds": 172800})
        await ensure_schedules(temporal_client, every_two_days)  # the next worker start

        desc = await reconcile.describe()
        assert desc.schedule.state.paused, "a worker start resumed the operator's pause"
        assert desc.schedule.state.note == "maintenance"
        assert desc.schedule.spec.intervals[0].every == timedelta(days=2)  # still up to date
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ThermalReconcileWorkflow"
        assert action.task_queue == daily.task_queue

        # A schedule nobody paused stays running, with its own note.
        health = await temporal_client.get_schedule_handle(HEALTH_SCHEDULE_ID).describe()
        assert not health.schedule.state.paused
        assert health.schedule.state.note == schedules(daily)[HEALTH_SCHEDULE_ID].state.note

        # Resumed by the operator: the next worker start leaves it running.
        await reconcile.unpause(note="done")
        await ensure_schedules(temporal_client, every_two_days)
        state = (await reconcile.describe()).schedule.state
        assert not state.paused and state.note == "done" and default_note != "done"
    finally:
        for schedule_id in ids:
            with contextlib.suppress(RPCError):  # not created (ensure_schedules failed early)
                await temporal_client.get_schedule_handle(schedule_id).delete()
