"""A tiny workflow that records one service call through `metering.record` with retries.

Only imports at module level (the Temporal sandbox re-imports workflow modules and rejects side
effects); everything non-stdlib is passed through the sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.metering import (
        MeteringActivities,
        RecordUsageRequest,
        RecordUsageResult,
        service_call_entries,
    )
    from tests.metering.meter_types import MeterInput

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=1.0,
    maximum_attempts=5,
    non_retryable_error_types=["InvalidUsage"],
)


@workflow.defn(name="tests.metering.MeterWorkflow")
class MeterWorkflow:
    @workflow.run
    async def run(self, inp: MeterInput) -> RecordUsageResult:
        entries = service_call_entries(
            tenant_id=inp.tenant_id,
            workflow_id=workflow.info().workflow_id,  # the business key, not the run or attempt
            app_id=inp.app_id,
            environment=inp.environment,
            service_id=inp.service_id,
            operation_id=inp.operation_id,
            unit=inp.unit,
            units=inp.units,
            unit_price=inp.unit_price,
            billed_amount=inp.billed_amount,
            model_costs=inp.model_costs,
            occurred_at=workflow.now(),
        )
        return await workflow.execute_activity_method(
            MeteringActivities.record,
            RecordUsageRequest(tenant_id=inp.tenant_id, entries=entries),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
