"""The reconcile keeps to the (app, environment) pairs this deployment serves (RADIANT_APPS):
two deployments sharing one account (and database) neither report nor delete each other's
endpoints, nor check each other's recorded states for drift. An endpoint of unknown owner is
this deployment's only under the unrestricted scope `*` (and even then only reported)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy import text
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.app_scope import AppScope
from activities.backends.base import TAG_MODEL, endpoint_name
from activities.fleet_activities import FleetActivities, ReconcileInput, ReconcileReport
from activities.service_states import ScopeInput
from tests.fixtures.worker import ThermalHarness
from tests.thermal.test_reconcile_scope import FakeBackend, FakeTemporal, record_rows
from workflows.thermal_fleet import ThermalReconcileWorkflow
from workflows.thermal_types import thermal_workflow_id


def control(apps: str, running: set[str] = frozenset()) -> FakeTemporal:
    """A control as the worker builds it: its `apps` is the deployment's RADIANT_APPS."""
    fake = FakeTemporal(running=running)
    fake.apps = AppScope.parse(apps.split(","))  # type: ignore[attr-defined]
    return fake


def two_deployments(thermal: ThermalHarness) -> tuple[str, str, FakeBackend, str, str]:
    """Our app with a live model (its workflow runs) and another deployment's app, in one
    account: the reviewer's radiant/thinktank case with fresh app ids."""
    mine, theirs = thermal.new_app(), thermal.new_app()
    backend = FakeBackend()
    ours = backend.add(mine, "prod", "yolov8n")
    foreign = backend.add(theirs, "prod", "yolov8n")  # tagged by the other deployment
    return mine, theirs, backend, ours, foreign


async def reconcile(
    client: Client, acts: FleetActivities, inp: ReconcileInput
) -> tuple[ReconcileReport, list[ScopeInput]]:
    """The real reconcile workflow with the real fleet activities (services.refresh mocked)."""
    refreshed: list[ScopeInput] = []

    @activity.defn(name="services.refresh")
    async def refresh(scope: ScopeInput) -> list[Any]:
        refreshed.append(scope)
        return []

    queue = f"reconcile-apps-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ThermalReconcileWorkflow],
        activities=[acts.snapshot, acts.delete_orphan, acts.close_vanished, acts.report, refresh],
    ):
        report = await client.execute_workflow(
            ThermalReconcileWorkflow.run, inp, id=queue, task_queue=queue
        )
    return report, refreshed


async def test_another_deployments_endpoint_is_no_orphan_and_not_deleted(
    thermal: ThermalHarness, temporal_client: Client
):
    """The review's reproduction: RADIANT_APPS=radiant/*, our model running, the thinktank
    deployment's endpoint beside it; `reconcile --delete-orphans` used to delete it."""
    mine, theirs, backend, ours, foreign = two_deployments(thermal)
    running = {thermal_workflow_id(mine, "prod", "yolov8n")}
    acts = FleetActivities(backend, thermal.engine, control(f"{mine}/*", running))  # type: ignore[arg-type]

    report, _ = await reconcile(temporal_client, acts, ReconcileInput(delete_orphans=True))
    assert report.orphans == [] and report.unmanaged == []
    assert backend.deleted == []
    assert foreign in backend.endpoints

    # the other deployment, reconciling its own scope, does find its orphan (nothing runs it)
    acts = FleetActivities(backend, thermal.engine, control(f"{theirs}/*", running))  # type: ignore[arg-type]
    report, _ = await reconcile(temporal_client, acts, ReconcileInput(delete_orphans=True))
    assert [(o.endpoint_name, o.deleted) for o in report.orphans] == [(foreign, True)]
    assert backend.deleted == [foreign] and ours in backend.endpoints


async def test_snapshot_lists_only_served_pairs_and_unknown_owners_only_under_any(
    thermal: ThermalHarness,
):
    mine, theirs, backend, ours, foreign = two_deployments(thermal)
    staging = backend.add(mine, "staging", "yolov8n")  # same app, environment not served
    hand_made = "radiant-made-by-hand"  # our prefix, no tags, no name a served pair computes
    info = backend.endpoints[ours][0].model_copy(update={"endpoint_name": hand_made})
    backend.endpoints[hand_made] = (info, {TAG_MODEL: "yolov8n"})

    acts = FleetActivities(backend, thermal.engine, control(f"{mine}/prod"))  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput())
    assert [e.endpoint_name for e in snap.endpoints] == [ours]
    assert [(o.app_id, o.environment) for o in snap.owners or []] == [(mine, "prod")]

    unrestricted = FleetActivities(backend, thermal.engine, control("*"))  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(unrestricted.snapshot, ReconcileInput())
    assert {ours, foreign, staging, hand_made} <= {e.endpoint_name for e in snap.endpoints}


async def test_recorded_states_of_pairs_not_served_are_not_checked_for_drift(
    thermal: ThermalHarness, temporal_client: Client
):
    """Rows of both deployments in one database, neither endpoint there: only ours is drift."""
    mine, theirs = thermal.new_app(), thermal.new_app()
    await record_rows(thermal, (mine, "prod", "yolov8n", 1), (theirs, "prod", "yolov8n", 1))
    acts = FleetActivities(FakeBackend(), thermal.engine, control(f"{mine}/*"))  # type: ignore[arg-type]

    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput())
    assert {(r.app_id, r.environment) for r in snap.recorded} == {(mine, "prod")}
    report, refreshed = await reconcile(temporal_client, acts, ReconcileInput())
    assert [d.split(":")[0] for d in report.drift] == [thermal_workflow_id(mine, "prod", "yolov8n")]
    assert [(s.app_id, s.environment) for s in refreshed] == [(mine, "prod")]
    # No workflow runs to correct our record: it is closed; theirs is not touched.
    assert report.closed == [endpoint_name(mine, "prod", "yolov8n")]
    rows = await thermal.rows(
        "SELECT app_id, instance_count FROM thermal_states WHERE app_id IN (:a, :b)",
        a=mine,
        b=theirs,
    )
    assert {(r["app_id"], r["instance_count"]) for r in rows} == {(mine, 0), (theirs, 1)}


async def test_delete_orphan_refuses_an_endpoint_of_a_pair_not_served(thermal: ThermalHarness):
    """The last check right before deleting, also for a retry finishing an earlier attempt."""
    mine, theirs, backend, ours, foreign = two_deployments(thermal)
    acts = FleetActivities(backend, None, control(f"{mine}/*"))  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, foreign) is False

    going = backend.add(theirs, "prod", "mobilesam", status="Deleting")
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    assert await retry.run(acts.delete_orphan, going) is False
    assert backend.deleted == []

    assert await ActivityEnvironment().run(acts.delete_orphan, ours) is True  # ours, unowned
    assert backend.deleted == [ours]


async def test_deleting_an_orphan_leaves_records_of_a_pair_not_served(thermal: ThermalHarness):
    """Two pairs recorded under one endpoint name (as a shared database may hold): only the
    served pair's row is closed."""
    mine, theirs = thermal.new_app(), thermal.new_app()
    backend = FakeBackend()
    name = backend.add(mine, "prod", "yolov8n")
    await record_rows(thermal, (mine, "prod", "yolov8n", 1), (theirs, "prod", "yolov8n", 1))
    async with thermal.engine.begin() as conn:
        await conn.execute(
            text("UPDATE thermal_states SET endpoint_name = :ep WHERE app_id = :a"),
            {"ep": name, "a": theirs},
        )
    acts = FleetActivities(backend, thermal.engine, control(f"{mine}/*"))  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, name) is True
    rows = await thermal.rows(
        "SELECT app_id, instance_count FROM thermal_states WHERE app_id IN (:a, :b)",
        a=mine,
        b=theirs,
    )
    assert {(r["app_id"], r["instance_count"]) for r in rows} == {(mine, 0), (theirs, 1)}
    assert endpoint_name(theirs, "prod", "yolov8n") != name
