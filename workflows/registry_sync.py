"""RegistrySyncWorkflow: one run of the registry sync (seed 001 section 36.4), started by its
Temporal Schedule (health every 5 minutes, pricing weekly, full daily) or by
`radiant registry sync --type ...` (the seed's 5-minute thermal sync is the reconcile
schedule, every minute).

- health: probe every configured provider, smoothed results into provider_health;
- pricing: catalog prices against LiteLLM's cost map, differences logged for review;
- thermal: the thermal reconcile (ThermalReconcileWorkflow) as a child workflow;
- full: provider model lists + health + thermal (as the seed's full sync).

Every run writes one `registry_sync_log` row: running, then completed or failed with details.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.fleet_activities import ReconcileInput
    from activities.llm.registry_sync import (
        ERR_INVALID_SYNC_TYPE,
        SYNC_TYPES,
        FinishLogInput,
        RegistrySyncActivities,
        RegistrySyncInput,
        RegistrySyncResult,
        StartLogInput,
    )
    from workflows.thermal_fleet import ThermalReconcileWorkflow

LOG_TIMEOUT = timedelta(seconds=30)
CHECK_TIMEOUT = timedelta(minutes=2)  # every provider probed concurrently, 5 s timeout each
RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=30))


@workflow.defn
class RegistrySyncWorkflow:
    @workflow.run
    async def run(self, inp: RegistrySyncInput) -> RegistrySyncResult:
        kind = inp.sync_type.strip().lower()
        if kind not in SYNC_TYPES:
            raise ApplicationError(
                f"unknown sync type {inp.sync_type!r}; choose one of {', '.join(SYNC_TYPES)}",
                type=ERR_INVALID_SYNC_TYPE,
                non_retryable=True,
            )
        wf_id = workflow.info().workflow_id
        log_id: int = await workflow.execute_activity_method(
            RegistrySyncActivities.start_log,
            StartLogInput(sync_type=kind, workflow_id=wf_id),
            start_to_close_timeout=LOG_TIMEOUT,
            retry_policy=RETRY,
        )
        result = RegistrySyncResult(log_id=log_id, sync_type=kind, status="running")
        try:
            await self._steps(kind, wf_id, result)
        except FailureError as err:  # an activity or the child failed: log it, then fail
            result.errors.append(f"{type(err).__name__}: {err}")
            await self._finish(result, "failed")
            raise
        await self._finish(result, "completed")
        result.status = "completed"
        return result

    async def _steps(self, kind: str, wf_id: str, result: RegistrySyncResult) -> None:
        details: dict[str, Any] = result.details
        if kind == "full":
            models = await workflow.execute_activity_method(
                RegistrySyncActivities.list_provider_models,
                start_to_close_timeout=CHECK_TIMEOUT,
                retry_policy=RETRY,
            )
            result.models_added = models.discovered
            details["provider_models"] = [x.model_dump() for x in models.listings]
            review = [
                f"{'/'.join(x.provider_ids)}: new model {m}"
                for x in models.listings
                for m in x.unknown
            ]
            review += [
                f"{'/'.join(x.provider_ids)}: {m} not listed by the provider"
                for x in models.listings
                for m in x.missing
            ]
            details["review"] = review
            result.errors += [
                f"{'/'.join(x.provider_ids)}: {x.status}"
                for x in models.listings
                if x.status.startswith("error")
            ]
        if kind in ("full", "health"):
            report = await workflow.execute_activity_method(
                RegistrySyncActivities.check_health,
                start_to_close_timeout=CHECK_TIMEOUT,
                retry_policy=RETRY,
            )
            result.providers_checked = report.checked
            details["health"] = {
                r.provider_id: {
                    "status": r.status,
                    "latency_ms": r.latency_ms,
                    "http_status": r.http_status,
                    "error": r.error,
                }
                for r in report.results
            }
            if report.not_in_database:
                result.errors.append(
                    "providers missing from the database (run `radiant catalog sync`): "
                    + ", ".join(report.not_in_database)
                )
        if kind == "pricing":
            pricing = await workflow.execute_activity_method(
                RegistrySyncActivities.check_pricing,
                start_to_close_timeout=CHECK_TIMEOUT,
                retry_policy=RETRY,
            )
            details["pricing"] = pricing.model_dump(mode="json")
            details["review"] = [
                f"{d.model_id} {d.field}: catalog {d.catalog} vs LiteLLM {d.litellm} USD {d.unit}"
                for d in pricing.differences
            ]
        if kind in ("full", "thermal"):
            reconcile = await workflow.execute_child_workflow(
                ThermalReconcileWorkflow.run,
                ReconcileInput(),
                id=f"{wf_id}/thermal-reconcile",
            )
            details["thermal"] = reconcile.model_dump(mode="json")

    async def _finish(self, result: RegistrySyncResult, status: str) -> None:
        details = dict(result.details)
        if result.errors:
            details["errors"] = result.errors
        await workflow.execute_activity_method(
            RegistrySyncActivities.finish_log,
            FinishLogInput(
                log_id=result.log_id,
                status=status,  # type: ignore[arg-type]
                models_added=result.models_added,
                models_updated=result.models_updated,
                models_deprecated=result.models_deprecated,
                details=details,
            ),
            start_to_close_timeout=LOG_TIMEOUT,
            retry_policy=RETRY,
        )
