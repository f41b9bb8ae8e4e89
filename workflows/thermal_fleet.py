"""Fleet-wide thermal work: the scheduled reconcile and bulk target changes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.fleet_activities import (
        BulkItemResult,
        BulkSetInput,
        FleetActivities,
        FleetSnapshot,
        OrphanReport,
        ReconcileInput,
        ReconcileReport,
        RecordedModel,
        autoscaler_moved,
        drift_reason,
        orphan_kind,
        owned_by,
    )
    from activities.service_states import ScopeInput, ServiceStateActivities
    from workflows.thermal import ModelThermalWorkflow
    from workflows.thermal_types import thermal_workflow_id

QUICK = timedelta(seconds=60)
# Runs from before this patch: drift was any count change, orphans every unowned listed endpoint.
OWNERSHIP_PATCH = "reconcile-exact-ownership"
# Two ids may share an endpoint name: the endpoint is drift only for the row its tags name.
SHARED_NAME_PATCH = "reconcile-shared-endpoint-name"
#: A model whose set_one activity itself failed (its retries exhausted: heartbeat timeouts,
#: a lost worker) is reported failed; it used to fail the whole bulk, losing every other
#: model's result (asked only when that happens).
BULK_ITEM_FAILURE_PATCH = "bulk-item-failure-reported"
#: Such a model keeps its concurrency slot until its workflow runs no transition (the change
#: set_one asked for may still run); before, the slot went to the next model at once, so more
#: than `max_concurrency` transitions could run (asked only when that happens).
BULK_SLOT_HELD_PATCH = "bulk-slot-held-until-settled"
#: A count the autoscaler moved within the bounds is told to the model's workflow, which
#: records it (before, the record kept the old count, and its uptime billed that; asked only
#: when that happens).
RECOUNT_PATCH = "reconcile-autoscaled-count"
#: Records that bill instances of an endpoint that is gone, with no running workflow to
#: correct them, are closed (no instances, uptime ended). Before, the drift was reported every
#: minute and the uptime interval billed on (asked only then).
CLOSE_VANISHED_PATCH = "reconcile-closes-vanished-records"
#: A model's workflow that ended between the snapshot and the signal (resync, recount) is
#: reported and skipped. Before, the failed signal failed the whole reconcile (asked only then).
SIGNAL_ENDED_PATCH = "reconcile-signal-of-an-ended-workflow"
#: What Temporal answers when the signalled workflow is not running.
NOT_FOUND = "ExternalWorkflowExecutionNotFound"
SNAPSHOT_TIMEOUT = timedelta(minutes=10)  # a big fleet; the heartbeat notices a dead worker
SNAPSHOT_HEARTBEAT = timedelta(seconds=30)


@workflow.defn
class ThermalReconcileWorkflow:
    """Compare recorded thermal states with what the backend really runs; fix drift; report
    endpoints that no thermal workflow owns (they are GPU cost leaks)."""

    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        exact = workflow.patched(OWNERSHIP_PATCH)
        snap = await workflow.execute_activity_method(
            FleetActivities.snapshot,
            inp,
            start_to_close_timeout=SNAPSHOT_TIMEOUT if exact else QUICK,
            heartbeat_timeout=SNAPSHOT_HEARTBEAT if exact else None,
        )
        if exact:
            report = await self._reconcile(inp, snap)
        else:
            report = await self._reconcile_legacy(inp, snap)
        if report.drift or report.orphans or report.unmanaged:
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

    async def _reconcile(self, inp: ReconcileInput, snap: FleetSnapshot) -> ReconcileReport:
        """Drift within autoscaling bounds is none; only tagged, unowned endpoints of this
        scope are deleted (re-checked by the activity right before)."""
        live = {e.endpoint_name: e for e in snap.endpoints}
        report = ReconcileReport(checked=len(snap.recorded), endpoints=len(snap.endpoints))
        owned: set[str] = set()
        owners = {o.endpoint_name: o for o in snap.owners or []}
        for row in snap.recorded:
            endpoint = live.get(row.endpoint_name)
            # Another owner's endpoint under the same name: neither this row's drift nor
            # owned by its workflow (the other owner's may have ended: then it is an orphan).
            shared = (
                endpoint is not None
                and not owned_by(row, owners.get(row.endpoint_name))
                and workflow.patched(SHARED_NAME_PATCH)
            )
            if row.workflow_running and not shared:
                owned.add(row.endpoint_name)
            if shared:
                endpoint = None
            reason = drift_reason(row, endpoint)
            if reason is not None:
                await self._drift(row, reason, report)
                if (
                    endpoint is None
                    and row.instance_count > 0
                    and not row.workflow_running
                    and row.endpoint_name
                    and workflow.patched(CLOSE_VANISHED_PATCH)
                ):
                    closed = await workflow.execute_activity_method(
                        FleetActivities.close_vanished,
                        row.endpoint_name,
                        start_to_close_timeout=QUICK,
                    )
                    if closed:
                        report.closed.append(row.endpoint_name)
            elif (
                row.workflow_running
                and autoscaler_moved(row, endpoint)
                and workflow.patched(RECOUNT_PATCH)
            ):
                wf_id = thermal_workflow_id(row.app_id, row.environment, row.model_id)
                if await self._signal(wf_id, ModelThermalWorkflow.recount, report):
                    report.recounted.append(wf_id)
        for info in snap.endpoints:
            if info.endpoint_name in owned:
                continue
            kind = orphan_kind(info, owners.get(info.endpoint_name), snap.started_at)
            if kind is None:
                continue
            orphan = OrphanReport(
                endpoint_name=info.endpoint_name,
                model_id=info.model_id,
                instance_count=info.instance_count,
            )
            if kind == "unmanaged":
                report.unmanaged.append(orphan)
                continue
            if inp.delete_orphans:
                orphan.deleted = await workflow.execute_activity_method(
                    FleetActivities.delete_orphan,
                    info.endpoint_name,
                    start_to_close_timeout=timedelta(minutes=5),
                )
            report.orphans.append(orphan)
        return report

    async def _drift(self, row: RecordedModel, reason: str, report: ReconcileReport) -> None:
        wf_id = thermal_workflow_id(row.app_id, row.environment, row.model_id)
        report.drift.append(f"{wf_id}: {reason}")
        if row.workflow_running:
            if await self._signal(wf_id, ModelThermalWorkflow.resync, report):
                report.resynced.append(wf_id)

    async def _signal(self, wf_id: str, signal: Any, report: ReconcileReport) -> bool:
        """Signal a model's workflow; False when it ended since the snapshot (its next run
        reads the backend when it starts)."""
        try:
            await workflow.get_external_workflow_handle(wf_id).signal(signal)
        except ApplicationError as err:
            if err.type != NOT_FOUND or not workflow.patched(SIGNAL_ENDED_PATCH):
                raise
            report.drift.append(f"{wf_id}: its workflow ended before it could be told")
            return False
        return True

    async def _reconcile_legacy(self, inp: ReconcileInput, snap: FleetSnapshot) -> ReconcileReport:
        """The pre-patch decisions, kept so runs started before it replay."""
        running = {e.endpoint_name: e for e in snap.endpoints}
        report = ReconcileReport(checked=len(snap.recorded), endpoints=len(snap.endpoints))
        owned: set[str] = set()
        for row in snap.recorded:
            if row.workflow_running:
                owned.add(row.endpoint_name)
            live = running.get(row.endpoint_name)
            live_count = live.instance_count if live else 0
            if live_count == row.instance_count and (live is not None) == (row.instance_count > 0):
                continue
            reason = f"recorded {row.instance_count} instance(s), backend has {live_count}"
            await self._drift(row, reason, report)
        for name, info in running.items():
            if name in owned:
                continue
            orphan = OrphanReport(
                endpoint_name=name, model_id=info.model_id, instance_count=info.instance_count
            )
            if inp.delete_orphans:
                result = await workflow.execute_activity(
                    "fleet.delete_orphan", name, start_to_close_timeout=timedelta(minutes=5)
                )  # by name: its result was None then, and is whether it deleted now
                orphan.deleted = result is None or bool(result)
            report.orphans.append(orphan)
        return report


@workflow.defn
class BulkThermalUpdateWorkflow:
    """Set many models to one state, at most `max_concurrency` transitions at a time."""

    @workflow.run
    async def run(self, inp: BulkSetInput) -> list[BulkItemResult]:
        gate = asyncio.Semaphore(max(1, inp.max_concurrency))

        async def one(model_id: str) -> BulkItemResult:
            async with gate:
                try:
                    return await workflow.execute_activity_method(
                        FleetActivities.set_one,
                        inp.item(model_id),
                        start_to_close_timeout=timedelta(hours=1),
                        heartbeat_timeout=timedelta(seconds=60),
                        retry_policy=RetryPolicy(maximum_attempts=3),
                    )
                except ActivityError as err:
                    if is_cancelled_exception(err) or not workflow.patched(BULK_ITEM_FAILURE_PATCH):
                        raise
                    cause = err.cause
                    why = cause.message if isinstance(cause, ApplicationError) else str(err)
                    if workflow.patched(BULK_SLOT_HELD_PATCH):
                        why += await self._settled(inp, model_id)
                    return BulkItemResult(model_id=model_id, ok=False, error=why)

        return list(await asyncio.gather(*(one(m) for m in inp.model_ids)))

    async def _settled(self, inp: BulkSetInput, model_id: str) -> str:
        """Wait (holding the slot) until the given-up model's workflow runs no transition;
        what to add to its error if that could not be told either."""
        try:
            await workflow.execute_activity_method(
                FleetActivities.wait_settled,
                inp.item(model_id),
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            return "; whether its transition still runs is unknown (its workflow did not answer)"
        return ""
