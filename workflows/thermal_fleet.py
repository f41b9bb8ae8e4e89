"""Fleet-wide thermal work: the scheduled reconcile and bulk target changes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.fleet_activities import (
        BulkItemResult,
        BulkSetInput,
        FleetActivities,
        OrphanReport,
        ReconcileInput,
        ReconcileReport,
    )
    from activities.service_states import ScopeInput, ServiceStateActivities
    from workflows.thermal import ModelThermalWorkflow
    from workflows.thermal_types import thermal_workflow_id

QUICK = timedelta(seconds=60)


@workflow.defn
class ThermalReconcileWorkflow:
    """Compare recorded thermal states with what the backend really runs; fix drift; report
    endpoints that no thermal workflow owns (they are GPU cost leaks)."""

    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        snap = await workflow.execute_activity_method(
            FleetActivities.snapshot, inp, start_to_close_timeout=QUICK
        )
        running = {e.endpoint_name: e for e in snap.endpoints}
        report = ReconcileReport(checked=len(snap.recorded), endpoints=len(snap.endpoints))
        owned: set[str] = set()
        for row in snap.recorded:
            wf_id = thermal_workflow_id(row.app_id, row.environment, row.model_id)
            if row.workflow_running:
                owned.add(row.endpoint_name)
            live = running.get(row.endpoint_name)
            live_count = live.instance_count if live else 0
            if live_count == row.instance_count and (live is not None) == (row.instance_count > 0):
                continue
            report.drift.append(
                f"{wf_id}: recorded {row.instance_count} instance(s), backend has {live_count}"
            )
            if row.workflow_running:
                await workflow.get_external_workflow_handle(wf_id).signal(
                    ModelThermalWorkflow.resync
                )
                report.resynced.append(wf_id)
        for name, info in running.items():
            if name in owned:
                continue
            orphan = OrphanReport(
                endpoint_name=name, model_id=info.model_id, instance_count=info.instance_count
            )
            if inp.delete_orphans:
                await workflow.execute_activity_method(
                    FleetActivities.delete_orphan, name, start_to_close_timeout=timedelta(minutes=5)
                )
                orphan.deleted = True
            report.orphans.append(orphan)
        if report.drift or report.orphans:
            await workflow.execute_activity_method(
                FleetActivities.report, report, start_to_close_timeout=QUICK
            )
        # Service states follow the models' states (DESIGN 5): recompute them per scope.
        scopes = {(r.app_id, r.environment) for r in snap.recorded}
        if inp.app_id and inp.environment:
            scopes.add((inp.app_id, inp.environment))
        for app_id, env in sorted(scopes):
            await workflow.execute_activity_method(
                ServiceStateActivities.refresh,
                ScopeInput(app_id=app_id, environment=env),
                start_to_close_timeout=QUICK,
            )
        return report


@workflow.defn
class BulkThermalUpdateWorkflow:
    """Set many models to one state, at most `max_concurrency` transitions at a time."""

    @workflow.run
    async def run(self, inp: BulkSetInput) -> list[BulkItemResult]:
        gate = asyncio.Semaphore(max(1, inp.max_concurrency))

        async def one(model_id: str) -> BulkItemResult:
            async with gate:
                return await workflow.execute_activity_method(
                    FleetActivities.set_one,
                    inp.item(model_id),
                    start_to_close_timeout=timedelta(hours=1),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )

        return list(await asyncio.gather(*(one(m) for m in inp.model_ids)))
