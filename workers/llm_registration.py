"""What the LLM and registry part adds to a worker: workflows, activities and schedules.

The worker (`workers/worker.py`) and `ensure_schedules` (`workers/schedules.py`) include these:

    workflows=[*WORKFLOWS, *LLM_WORKFLOWS]
    activities=[*activities_for(deps, client, queue), *llm_activities(deps, client, queue)]
    {**schedules(settings), **registry_schedules(settings)}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)

from activities.llm.activities import LLMActivities
from activities.llm.registry_sync import (
    RegistrySyncActivities,
    RegistrySyncInput,
    registry_sync_workflow_id,
)
from activities.thermal_control import ThermalControl
from workers.settings import Settings
from workflows.llm import ChatCompletionWorkflow, EmbeddingWorkflow, TextCompletionWorkflow
from workflows.registry_sync import RegistrySyncWorkflow

if TYPE_CHECKING:
    from workers.worker import WorkerDeps

LLM_WORKFLOWS: list[type] = [
    ChatCompletionWorkflow,
    TextCompletionWorkflow,
    EmbeddingWorkflow,
    RegistrySyncWorkflow,
]

HEALTH_SCHEDULE_ID = "radiant-registry-health"
#: The seed's 5-minute "thermal" sync is the thermal reconcile, which has its own schedule
#: (every minute, workers/schedules.py): a second schedule ran it twice, concurrently. Worker
#: start-up deletes it where an earlier version created it; `registry sync --type thermal`
#: and the daily full sync still run the reconcile.
RETIRED_SCHEDULE_IDS = ("radiant-registry-thermal",)
PRICING_SCHEDULE_ID = "radiant-registry-pricing"
FULL_SCHEDULE_ID = "radiant-registry-full"


def llm_activities(
    deps: WorkerDeps,
    client: Client,
    task_queue: str,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    base_overrides: Mapping[str, str] | None = None,
) -> list[Any]:
    """Activities of the LLM workflows and the registry sync. The keyword arguments exist for
    tests (provider keys, LiteLLM mock responses, local fake URLs); a worker passes none."""
    import litellm  # noqa: F401 - import it (seconds) at start-up, not in the first request

    settings = deps.settings
    timings = settings.thermal_timings()
    llm = LLMActivities(
        deps.catalog,
        deps.engine,
        ThermalControl(client, task_queue, timings, settings.app_scope()),
        backend_kind=deps.backend.kind,
        # The local stand-in keeps its endpoint records under its own data dir.
        data_dir=Path(getattr(deps.backend, "data_dir", settings.data_dir)),
        aws_region=settings.aws_region,
        environ=environ,
        overrides=overrides,
    )
    registry = RegistrySyncActivities(
        deps.catalog, deps.engine, environ=environ, base_overrides=base_overrides
    )
    return [
        llm.prepare,
        llm.hold_warm,
        llm.start_warm_up,
        llm.call,
        llm.meter,
        llm.record_unbilled_call,
        registry.start_log,
        registry.finish_log,
        registry.check_health,
        registry.check_pricing,
        registry.list_provider_models,
    ]


def _at(hour: int = 0, minute: int = 0, weekday: int | None = None) -> ScheduleCalendarSpec:
    """A UTC calendar time (weekday 0 = Sunday), as the seed's EventBridge cron rules."""
    return ScheduleCalendarSpec(
        hour=[ScheduleRange(hour)],
        minute=[ScheduleRange(minute)],
        second=[ScheduleRange(0)],
        day_of_week=[ScheduleRange(weekday)] if weekday is not None else [ScheduleRange(0, 6)],
    )


def registry_schedules(settings: Settings) -> dict[str, Schedule]:
    """The seed's registry-sync rules as Temporal Schedules (overlap: skip); its thermal rule
    is the reconcile schedule (RETIRED_SCHEDULE_IDS)."""
    every_5_min = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=5))])
    plan = {
        HEALTH_SCHEDULE_ID: ("health", every_5_min, "provider health: latency, error rate, status"),
        PRICING_SCHEDULE_ID: (
            "pricing",
            ScheduleSpec(calendars=[_at(weekday=0)]),
            "weekly: catalog prices vs LiteLLM's cost map, for review",
        ),
        FULL_SCHEDULE_ID: (
            "full",
            ScheduleSpec(calendars=[_at()]),
            "daily: provider model lists, health and thermal",
        ),
    }
    return {
        schedule_id: Schedule(
            action=ScheduleActionStartWorkflow(
                RegistrySyncWorkflow.run,
                RegistrySyncInput(sync_type=sync_type),
                id=registry_sync_workflow_id(sync_type, "scheduled"),
                task_queue=settings.task_queue,
            ),
            spec=spec,
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note=note),
        )
        for schedule_id, (sync_type, spec, note) in plan.items()
    }
