"""Registry sync runs (health, pricing, thermal, full) as workflows, their log rows, and the four
registry schedules on a real Temporal dev server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    WorkflowFailureError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.db.engine import libpq_conninfo
from activities.llm.registry_sync import RegistrySyncInput, RegistrySyncResult
from tests.llm.conftest import LLMHarness
from tests.llm.fakes import FakeBehaviour, fake_server
from workers.llm_registration import (
    FULL_SCHEDULE_ID,
    HEALTH_SCHEDULE_ID,
    PRICING_SCHEDULE_ID,
    RETIRED_SCHEDULE_IDS,
    registry_schedules,
)
from workers.schedules import RECONCILE_SCHEDULE_ID, ensure_schedules
from workflows.registry_sync import RegistrySyncWorkflow

pytestmark = pytest.mark.slow


@pytest.fixture
def reset_health(llm: LLMHarness, migrated_db):
    """provider_health is shared with the workflow tests' selection: leave it empty."""
    yield
    llm.base_overrides.clear()
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url), autocommit=True) as conn:
        conn.execute("DELETE FROM provider_health")


async def run_sync(llm: LLMHarness, sync_type: str) -> RegistrySyncResult:
    return await llm.client.execute_workflow(
        RegistrySyncWorkflow.run,
        RegistrySyncInput(sync_type=sync_type),
        id=f"registry-sync/{sync_type}/test-{uuid.uuid4().hex[:8]}",
        task_queue=llm.task_queue,
    )


async def log_row(llm: LLMHarness, log_id: int) -> dict:
    async with llm.engine.connect() as conn:
        res = await conn.execute(
            text("SELECT * FROM registry_sync_log WHERE id = :i"), {"i": log_id}
        )
        return dict(res.mappings().one())


async def health_rows(llm: LLMHarness) -> dict[str, dict]:
    async with llm.engine.connect() as conn:
        res = await conn.execute(text("SELECT * FROM provider_health"))
        return {r["provider_id"]: dict(r) for r in res.mappings()}


async def test_health_sync(llm: LLMHarness, reset_health):
    with fake_server(FakeBehaviour(head_status=503)) as down:
        llm.base_overrides.update({"openai": llm.openai.v1, "anthropic": down.v1})
        result = await run_sync(llm, "health")
    assert result.status == "completed" and result.sync_type == "health"
    rows = await health_rows(llm)
    assert rows["openai"]["status"] == "healthy" and rows["openai"]["avg_latency_ms"] is not None
    assert rows["anthropic"]["status"] == "unhealthy"
    assert rows["anthropic"]["last_error"] == "HTTP 503"
    assert rows["google"]["status"] == "unknown"  # no key: not probed
    assert rows["google"]["last_error"] == "unconfigured: GOOGLE_API_KEY unset"
    log = await log_row(llm, result.log_id)
    assert log["status"] == "completed" and log["finished_at"] is not None
    assert log["details"]["health"]["anthropic"]["status"] == "unhealthy"
    assert log["details"]["workflow_id"].startswith("registry-sync/health/")
    # selection now avoids the unhealthy provider
    from activities.llm.state import health_views

    assert (await health_views(llm.engine))["anthropic"].status == "unhealthy"


async def test_pricing_sync_reports_and_applies_nothing(llm: LLMHarness):
    async with llm.engine.connect() as conn:
        before = (
            await conn.execute(
                text("SELECT id, input_cost_per_1k, output_cost_per_1k FROM models ORDER BY id")
            )
        ).all()
    result = await run_sync(llm, "pricing")
    pricing = result.details["pricing"]
    assert pricing["compared_models"] >= 20 and pricing["compared_prices"] >= 30
    assert len(result.details["review"]) == len(pricing["differences"])
    log = await log_row(llm, result.log_id)
    assert log["status"] == "completed" and log["details"]["pricing"] == pricing
    assert log["models_updated"] == 0 and log["models_deprecated"] == 0
    async with llm.engine.connect() as conn:
        after = (
            await conn.execute(
                text("SELECT id, input_cost_per_1k, output_cost_per_1k FROM models ORDER BY id")
            )
        ).all()
    assert after == before


async def test_full_sync_lists_models_for_review_and_never_deprecates(
    llm: LLMHarness, reset_health
):
    with fake_server(FakeBehaviour(head_status=503)) as down:
        llm.base_overrides.update(
            {
                "openai": llm.openai.v1,
                "openai-images": llm.openai.v1,
                "openai-audio": llm.openai.v1,
                "openai-embeddings": llm.openai.v1,
                "anthropic": down.v1,
            }
        )
        result = await run_sync(llm, "full")
    listings = {tuple(x["provider_ids"]): x for x in result.details["provider_models"]}
    openai = listings[("openai", "openai-images", "openai-audio", "openai-embeddings")]
    assert openai["status"] == "listed" and openai["unknown"] == ["fake-model"]
    assert "gpt-4o-2024-08-06" in openai["missing"]
    assert listings[("anthropic",)]["status"].startswith("error: HTTPStatusError")
    assert listings[("google", "veo")]["status"] == "skipped: unconfigured"
    assert result.models_added == 1 and result.models_deprecated == 0
    assert (
        "openai/openai-images/openai-audio/openai-embeddings: new model fake-model"
        in result.details["review"]
    )
    assert "thermal" in result.details and result.providers_checked >= 2
    log = await log_row(llm, result.log_id)
    assert (log["status"], log["models_added"], log["models_deprecated"]) == ("completed", 1, 0)
    async with llm.engine.connect() as conn:
        statuses = {
            r[0]
            for r in await conn.execute(
                text("SELECT DISTINCT status FROM models WHERE provider_id = 'anthropic'")
            )
        }
    assert statuses == {"active"}  # Claude 4.5 and 3.5 Haiku are not deprecated


async def test_thermal_sync_runs_the_reconcile(llm: LLMHarness):
    result = await run_sync(llm, "thermal")
    assert result.status == "completed"
    assert {"checked", "endpoints", "drift", "orphans"} <= set(result.details["thermal"])


async def test_invalid_sync_type(llm: LLMHarness):
    with pytest.raises(WorkflowFailureError) as err:
        await run_sync(llm, "everything")
    assert isinstance(err.value.cause, ApplicationError)
    assert err.value.cause.type == "InvalidSyncType"


async def test_registry_schedules_are_created_idempotently_and_run(llm: LLMHarness, reset_health):
    schedules = registry_schedules(llm.settings)
    # The seed's 5-minute thermal sync is the reconcile schedule: not a second one.
    assert set(schedules) == {HEALTH_SCHEDULE_ID, PRICING_SCHEDULE_ID, FULL_SCHEDULE_ID}
    every = schedules[HEALTH_SCHEDULE_ID].spec.intervals[0].every
    assert every.total_seconds() == 300
    weekly = schedules[PRICING_SCHEDULE_ID].spec.calendars[0]
    assert [r.start for r in weekly.day_of_week] == [0] and [r.start for r in weekly.hour] == [0]
    # The product's start-up path (every worker runs it): create, then bring up to date. A
    # day-long reconcile interval (aligned to the epoch, so it could fire only at 00:00 UTC,
    # and then only report: no --delete-orphans), deleted again below.
    daily = llm.settings.model_copy(update={"reconcile_interval_seconds": 86400})
    # A retired schedule an earlier version created (it ran the reconcile a second time).
    retired = RETIRED_SCHEDULE_IDS[0]
    await llm.client.create_schedule(retired, schedules[HEALTH_SCHEDULE_ID])
    try:
        assert sorted(await ensure_schedules(llm.client, daily)) == sorted(
            [*schedules, RECONCILE_SCHEDULE_ID]
        )
        every_two_days = daily.model_copy(update={"reconcile_interval_seconds": 172800})
        await ensure_schedules(llm.client, every_two_days)  # exists: updated, no error
        reconcile = await llm.client.get_schedule_handle(RECONCILE_SCHEDULE_ID).describe()
        assert reconcile.schedule.spec.intervals[0].every == timedelta(days=2)
        with pytest.raises(RPCError) as gone:  # deleted at start-up
            await llm.client.get_schedule_handle(retired).describe()
        assert gone.value.status == RPCStatusCode.NOT_FOUND
        for schedule_id in schedules:  # what the Web UI lists
            desc = await llm.client.get_schedule_handle(schedule_id).describe()
            action_spec = desc.schedule.action
            assert isinstance(action_spec, ScheduleActionStartWorkflow)
            assert action_spec.workflow == "RegistrySyncWorkflow"
            assert action_spec.task_queue == llm.task_queue
        handle = llm.client.get_schedule_handle(HEALTH_SCHEDULE_ID)
        await handle.trigger()
        for _ in range(100):
            desc = await handle.describe()
            if desc.info.recent_actions:
                break
            await asyncio.sleep(0.1)
        action = desc.info.recent_actions[0].action
        assert isinstance(action, ScheduleActionExecutionStartWorkflow)
        result = await llm.client.get_workflow_handle(
            action.workflow_id, result_type=RegistrySyncResult
        ).result()
        assert action.workflow_id.startswith("registry-sync/health/scheduled")
        assert result.status == "completed"
    finally:
        for schedule_id in [*schedules, RECONCILE_SCHEDULE_ID, retired]:
            with contextlib.suppress(RPCError):  # not created (ensure_schedules failed early)
                await llm.client.get_schedule_handle(schedule_id).delete()
