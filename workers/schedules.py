"""Periodic work as Temporal Schedules (not cron workflows), created idempotently at start-up."""

from __future__ import annotations

import dataclasses
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
from temporalio.service import RPCError, RPCStatusCode

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


def _brought_up_to_date(current: Schedule, wanted: Schedule) -> Schedule:
    """`wanted`'s spec, action and policy with `current`'s state: an update replaces the whole
    schedule, and the state is the operator's (paused or not, the pause's note)."""
    return dataclasses.replace(wanted, state=current.state)


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create every schedule, or bring an existing one up to date (running it twice: no-op).
    An existing schedule keeps its state: a worker start never resumes a paused schedule."""
    for schedule_id, schedule in schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:

            def _update(inp: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=_brought_up_to_date(inp.description.schedule, s))

            await client.get_schedule_handle(schedule_id).update(_update)
    await _delete_retired(client)
    return list(schedules(settings))


async def _delete_retired(client: Client) -> None:
    """Schedules an earlier version created and this one replaced (gone already: fine)."""
    from workers.llm_registration import RETIRED_SCHEDULE_IDS

    for schedule_id in RETIRED_SCHEDULE_IDS:
        try:
            await client.get_schedule_handle(schedule_id).delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
