"""The worker process: every workflow and activity of the project on one task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.backends.base import HostingBackend
from activities.fleet_activities import FleetActivities
from activities.inputs import InputActivities
from activities.job_activities import JobActivities
from activities.metering import MeteringActivities
from activities.service_states import ServiceStateActivities
from activities.tenants import TenantActivities
from activities.thermal_activities import ThermalActivities
from activities.thermal_control import ThermalControl
from models_catalog.catalog import Catalog
from workers.bytecode import ensure_workflow_bytecode
from workers.llm_registration import LLM_WORKFLOWS, llm_activities
from workers.settings import Settings
from workflows.service_job import ServiceJobWorkflow
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_fleet import BulkThermalUpdateWorkflow, ThermalReconcileWorkflow

log = logging.getLogger("radiant.worker")

WORKFLOWS: list[type] = [
    ModelThermalWorkflow,
    ThermalReconcileWorkflow,
    BulkThermalUpdateWorkflow,
    ServiceJobWorkflow,
    *LLM_WORKFLOWS,
]


# Shared with `radiant bench throughput`, whose baseline must run on the same worker settings.
WORKER_OPTIONS: dict[str, Any] = {
    "max_concurrent_activities": 200,  # async activities: mostly waiting on I/O
}


@dataclass
class WorkerDeps:
    """What activities need, built once per worker process and injected."""

    settings: Settings
    catalog: Catalog
    backend: HostingBackend
    engine: AsyncEngine

    async def aclose(self) -> None:
        """Release pooled connections (database, and the local stand-in's HTTP client)."""
        try:
            await self.engine.dispose()
        finally:  # the HTTP client goes even if the database is already unreachable
            close = getattr(self.backend, "aclose", None)
            if close is not None:
                await close()


def activities_for(deps: WorkerDeps, client: Client, task_queue: str) -> Sequence[Any]:
    control = ThermalControl(
        client, task_queue, deps.settings.thermal_timings(), deps.settings.app_scope()
    )
    fleet = FleetActivities(deps.backend, deps.engine, control)
    thermal = ThermalActivities(
        deps.catalog,
        deps.backend,
        deps.engine,
        image_registry=deps.settings.sagemaker_image_registry.format(
            region=deps.settings.aws_region
        ),
    )
    settings = deps.settings
    jobs = JobActivities(
        deps.catalog, deps.backend, deps.engine, control, settings.data_dir,
        poll_seconds=settings.job_poll_seconds,
        request_s3_uri=settings.input_spool_s3_uri or settings.async_output_s3_uri,
        s3_client=getattr(deps.backend, "s3", None),
    )  # fmt: skip
    inputs = InputActivities(
        spool_dir=settings.data_dir / "spool",
        spool_s3_uri=settings.input_spool_s3_uri,
        allowed_roots=settings.input_roots,
        denied_roots=[settings.data_dir],  # spools, job outputs, endpoint records, PostgreSQL
        allowed_s3_prefixes=settings.input_s3_prefixes,
    )
    services = ServiceStateActivities(deps.engine, deps.catalog)
    return [
        jobs.plan,
        jobs.acquire_model,
        jobs.invoke,
        jobs.start_async,
        jobs.fetch_async,
        jobs.meter,
        jobs.record_unbilled_costs,
        inputs.validate,
        services.refresh,
        MeteringActivities(deps.engine).record,
        TenantActivities(deps.engine).get,
        thermal.describe_model,
        thermal.ensure_endpoint,
        thermal.wait_in_service,
        thermal.wait_in_service_on_config,
        thermal.set_capacity,
        thermal.delete_endpoint,
        thermal.describe_endpoint,
        thermal.load_recorded_target,
        thermal.record,
        fleet.snapshot,
        fleet.delete_orphan,
        fleet.close_vanished,
        fleet.report,
        fleet.set_one,
        fleet.wait_settled,
        *llm_activities(deps, client, task_queue),
    ]


def build_worker(
    client: Client, deps: WorkerDeps, task_queue: str | None = None, **options: Any
) -> Worker:
    """The worker of every process; `options` override Worker arguments (tests: the runner)."""
    queue = task_queue or deps.settings.task_queue
    ensure_workflow_bytecode()
    return Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=activities_for(deps, client, queue),
        **{**WORKER_OPTIONS, **options},
    )


async def run_worker(client: Client, deps: WorkerDeps, stop: asyncio.Event) -> None:
    worker = build_worker(client, deps)
    async with worker:
        log.info("worker polling task queue %s", deps.settings.task_queue)
        await stop.wait()
