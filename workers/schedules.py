"""Periodic work as Temporal Schedules (not cron workflows), created idempotently at start-up."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from activities.fleet_activities import ReconcileInput
from workers.settings import Settings
from workflows.thermal_fleet import ThermalReconcileWorkflow

RECONCILE_SCHEDULE_ID = "radiant-thermal-reconcile"


def schedules(settings: Settings) -> dict[str, Schedule]:
    """Every schedule of the project: the thermal reconcile and the registry syncs."""
    from workers.llm_registration import registry_schedules

    return {**_thermal_schedules(settings), **registry_schedules(settings)}


def _thermal_schedules(settings: Settings) -> dict[str, Schedule]:
    every = timedelta(seconds=settings.reconcile_interval_seconds)
    return {
        RECONCILE_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                ThermalReconcileWorkflow.run,
                ReconcileInput(),
                id="thermal-reconcile",
                task_queue=settings.task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(
                note="compare recorded thermal states with the backend; find orphans"
            ),
        ),
    }


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create every schedule, or bring an existing one up to date (running it twice: no-op)."""
    for schedule_id, schedule in schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:

            def _replace(_: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=s)

            await client.get_schedule_handle(schedule_id).update(_replace)
    return list(schedules(settings))
