"""thermal.record is idempotent under Temporal retries, yet a new run of the same workflow id
(which counts its transitions from 1 again) is not mistaken for a retry; a late attempt of an
older record changes nothing; uptime intervals follow the count, the endpoint and the rate."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from activities.fleet_activities import GONE, FleetActivities, end_uptime_of_stopped
from activities.thermal_activities import RecordInput, ThermalActivities
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workflows.thermal_types import ThermalStatus

MODEL = "yolov8n"


T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def ready_record(
    app: str,
    seq: int,
    count: int = 1,
    event: str | None = "ready",
    at: datetime | None = None,
    rate: str = "1.30",
) -> RecordInput:
    """The record of transition `seq`, made at workflow time `at` (default T0 + seq s)."""
    status = ThermalStatus(
        app_id=app,
        environment="test",
        model_id=MODEL,
        endpoint_name=f"radiant-{app}-test-{MODEL}",
        target_state=ThermalState.COLD,
        current_state=ThermalState.COLD,
        instance_count=count,
        endpoint_status="InService" if count else None,
        transitioning=False,
        ready=True,
        in_flight=0,
        last_activity_at=None,
        last_error=None,
        transitions=seq,
    )
    return RecordInput(
        app_id=app,
        environment="test",
        model_id=MODEL,
        workflow_id=f"thermal/{app}/test/{MODEL}",
        seq=seq,
        event=event,
        status=status,
        instance_type="ml.g5.xlarge",
        billed_hourly=Decimal(rate),
        recorded_at=at or T0 + timedelta(seconds=seq),
    )


def in_run(run_id: str) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_run_id=run_id)
    return env


async def test_a_retried_record_writes_once_and_a_new_run_writes_again(thermal: ThermalHarness):
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    req = ready_record(app, seq=1)
    for _ in range(2):  # attempt 1 committed, attempt 2 is Temporal's retry: nothing new
        await in_run("run-1").run(acts.record, req)
    notes = "SELECT kind FROM notifications WHERE app_id = :a"
    uptime = "SELECT * FROM endpoint_uptime WHERE app_id = :a"
    assert len(await thermal.rows(notes, a=app)) == 1
    assert len(await thermal.rows(uptime, a=app)) == 1
    # the workflow id started again: seq 1 again, later on the workflow clock
    await in_run("run-2").run(acts.record, ready_record(app, 1, at=T0 + timedelta(hours=1)))
    assert len(await thermal.rows(notes, a=app)) == 2
    [interval] = await thermal.rows(uptime, a=app)  # same instance count: the interval goes on
    assert interval["ended_at"] is None


UPTIME = "SELECT * FROM endpoint_uptime WHERE app_id = :a ORDER BY id"
STATE = "SELECT instance_count, record_seq FROM thermal_states WHERE app_id = :a"


async def test_a_late_attempt_of_an_older_record_changes_nothing(thermal: ThermalHarness):
    """Attempt 1 of record 1 outlives its timeout; Temporal's retry commits it, the workflow
    scales to zero (record 2); then attempt 1 commits: neither the state nor an interval
    comes back."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    env = in_run("run-1")
    await env.run(acts.record, ready_record(app, 1, count=2))
    await env.run(acts.record, ready_record(app, 2, count=0, event="went_cold"))
    await env.run(acts.record, ready_record(app, 1, count=2))  # the late attempt
    [state] = await thermal.rows(STATE, a=app)
    assert (state["instance_count"], state["record_seq"]) == (0, 2)
    [interval] = await thermal.rows(UPTIME, a=app)
    assert interval["ended_at"] is not None
    kinds = await thermal.rows("SELECT kind FROM notifications WHERE app_id = :a", a=app)
    assert sorted(k["kind"] for k in kinds) == ["thermal.ready", "thermal.went_cold"]


async def test_a_record_of_before_the_ordering_is_written_as_then(thermal: ThermalHarness):
    """A record without a workflow time (scheduled before the field existed) always applies."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    await in_run("run-1").run(acts.record, ready_record(app, 5, count=2))
    legacy = ready_record(app, 1, count=3).model_copy(update={"recorded_at": None})
    await in_run("run-1").run(acts.record, legacy)
    [state] = await thermal.rows(STATE, a=app)
    assert state["instance_count"] == 3


async def test_an_interval_ended_by_a_stop_is_not_reopened_by_a_stale_count(
    thermal: ThermalHarness,
):
    """`radiant up` stopped the local servers and ended their interval; the workflow, not
    knowing yet, records its old count (a touch): no interval. A warm-up ready opens one."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    env = in_run("run-1")
    await env.run(acts.record, ready_record(app, 1))
    assert await end_uptime_of_stopped(thermal.engine, [f"radiant-{app}-test-{MODEL}"]) == 1
    await env.run(acts.record, ready_record(app, 2, event=None))
    [ended] = await thermal.rows(UPTIME, a=app)
    assert ended["ended_at"] is not None
    await env.run(acts.record, ready_record(app, 3))  # created again: ready
    first, again = await thermal.rows(UPTIME, a=app)
    assert first["id"] == ended["id"] and again["ended_at"] is None


async def test_a_new_rate_at_the_same_count_starts_a_new_interval(thermal: ThermalHarness):
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    env = in_run("run-1")
    await env.run(acts.record, ready_record(app, 1))
    await env.run(acts.record, ready_record(app, 2, event=None, rate="2.00"))
    old, new = await thermal.rows(UPTIME, a=app)
    assert old["ended_at"] is not None and old["billed_hourly"] == Decimal("1.30")
    assert new["ended_at"] is None and new["billed_hourly"] == Decimal("2.00")
    assert new["instance_count"] == old["instance_count"] == 1


async def test_an_interval_is_never_closed_before_it_started(thermal: ThermalHarness):
    """The worker's clock behind the one that opened the interval (another host): it closes
    at its start, not before (which the table refuses)."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    env = in_run("run-1")
    await env.run(acts.record, ready_record(app, 1))
    ahead = datetime.now(UTC) + timedelta(minutes=5)
    async with thermal.engine.begin() as conn:
        await conn.execute(
            text("UPDATE endpoint_uptime SET started_at = :t WHERE app_id = :a"),
            {"t": ahead, "a": app},
        )
    await env.run(acts.record, ready_record(app, 2, count=0, event="went_cold"))
    [interval] = await thermal.rows(UPTIME, a=app)
    assert interval["ended_at"] == interval["started_at"] == ahead


async def test_a_count_read_from_the_backend_opens_an_interval_after_a_stop(
    thermal: ThermalHarness,
):
    """After `radiant up` stopped the servers, the workflow recreated the endpoint without a
    warm-up ready (its capacity step failed): the count it read is news, the interval opens."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    app = thermal.new_app()
    env = in_run("run-1")
    await env.run(acts.record, ready_record(app, 1))
    assert await end_uptime_of_stopped(thermal.engine, [f"radiant-{app}-test-{MODEL}"]) == 1
    failed = ready_record(app, 2, event="failed").model_copy(update={"observed": True})
    await env.run(acts.record, failed)
    ended, serving = await thermal.rows(UPTIME, a=app)
    assert ended["ended_at"] is not None and serving["ended_at"] is None


async def test_a_record_of_a_closed_run_comes_after_the_reconcile_closed_it(
    thermal: ThermalHarness, monkeypatch
):
    """The run ended (terminated) while an attempt of its record 2 hung; the reconcile closed
    its record (the endpoint is gone). The attempt then commits: nothing comes back. A new
    run's record (later on the server's clock) is written."""
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    fleet = FleetActivities(thermal.backend, thermal.engine, thermal.control)
    closed_at = T0 + timedelta(seconds=2)

    async def ended(_workflow_id: str) -> tuple[bool, datetime]:
        return True, closed_at

    monkeypatch.setattr(fleet, "_run_end", ended)
    app = thermal.new_app()
    await in_run("run-1").run(acts.record, ready_record(app, 1))
    assert await fleet._close_records(f"radiant-{app}-test-{MODEL}", GONE) == 1
    await in_run("run-1").run(acts.record, ready_record(app, 2, event=None, at=closed_at))
    [state] = await thermal.rows(STATE, a=app)
    assert state["instance_count"] == 0
    assert all(r["ended_at"] is not None for r in await thermal.rows(UPTIME, a=app))
    await in_run("run-2").run(acts.record, ready_record(app, 1, at=T0 + timedelta(hours=1)))
    [state] = await thermal.rows(STATE, a=app)
    assert (state["instance_count"], state["record_seq"]) == (1, 1)
