"""The reconcile decides ownership exactly and leaves autoscaling alone: drift is a count outside
the autoscaling bounds (not any change), orphans are only endpoints of the reconciled scope,
deleted only when radiant's tags say it made them; a Temporal hiccup or a racing warm-up never
turns a live endpoint into an orphan."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

import activities.fleet_activities as fleet
from activities.backends.base import (
    TAG_MANAGED_BY,
    TAG_MODEL,
    EndpointInfo,
    EndpointSpec,
    EndpointStatus,
    endpoint_name,
)
from activities.fleet_activities import (
    EndpointOwner,
    FleetActivities,
    FleetSnapshot,
    ReconcileInput,
    ReconcileReport,
    RecordedModel,
)
from activities.service_states import ScopeInput
from activities.thermal_activities import (
    MANAGED_BY,
    TAG_APP,
    TAG_ENVIRONMENT,
    EnsureEndpointInput,
    RecordKey,
    ThermalActivities,
)
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workflows.thermal_fleet import ThermalReconcileWorkflow
from workflows.thermal_types import thermal_workflow_id

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def tags(app: str, env: str, model: str) -> dict[str, str]:
    return {TAG_APP: app, TAG_ENVIRONMENT: env, TAG_MODEL: model, TAG_MANAGED_BY: MANAGED_BY}


class FakeBackend:
    """In-memory endpoints with tags, listed and described like the real backends."""

    kind = "fake"

    def __init__(self) -> None:
        self.endpoints: dict[str, tuple[EndpointInfo, dict[str, str]]] = {}
        self.deleted: list[str] = []

    def add(
        self,
        app: str,
        env: str,
        model: str,
        *,
        tagged: bool = True,
        status: EndpointStatus = "InService",
        count: int = 1,
    ) -> str:
        name = endpoint_name(app, env, model)
        info = EndpointInfo(
            endpoint_name=name, model_id=model, status=status, instance_count=count, created_at=T0
        )
        self.endpoints[name] = (info, tags(app, env, model) if tagged else {TAG_MODEL: model})
        return name

    async def list_endpoints(self, prefix: str) -> list[EndpointInfo]:
        return [i for n, (i, _) in sorted(self.endpoints.items()) if n.startswith(prefix)]

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        return self.endpoints[name][0] if name in self.endpoints else None

    async def endpoint_tags(self, name: str) -> dict[str, str] | None:
        return dict(self.endpoints[name][1]) if name in self.endpoints else None

    async def delete_endpoint(self, name: str) -> None:
        self.deleted.append(name)
        self.endpoints.pop(name, None)


class FakeTemporal:
    """`control.client.get_workflow_handle(id).describe()`: running ids, errors, concurrency."""

    def __init__(
        self, running: set[str] = frozenset(), error: RPCStatusCode | None = None, delay: float = 0
    ) -> None:
        self.running, self.error, self.delay = running, error, delay
        self.in_flight = self.max_in_flight = 0
        self.client = self

    def get_workflow_handle(self, workflow_id: str) -> Any:
        return SimpleNamespace(describe=lambda: self._describe(workflow_id))

    async def _describe(self, workflow_id: str) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.error is not None:
            raise RPCError("describe failed", self.error, b"")
        if workflow_id not in self.running:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        return SimpleNamespace(status=WorkflowExecutionStatus.RUNNING)


async def record_rows(thermal: ThermalHarness, *rows: tuple[str, str, str, int]) -> None:
    async with thermal.engine.begin() as conn:
        for app, env, model, count in rows:
            await conn.execute(
                text(
                    "INSERT INTO thermal_states (app_id, environment, model_id, target_state, "
                    "current_state, instance_count, endpoint_name) "
                    "VALUES (:a, :e, :m, 'WARM', 'WARM', :n, :ep)"
                ),
                {"a": app, "e": env, "m": model, "n": count, "ep": endpoint_name(app, env, model)},
            )


# --------------------------------------------------------------------------- scope (finding 2)


async def test_environment_scope_lists_only_its_own_environment(thermal: ThermalHarness):
    app, other = thermal.new_app(), thermal.new_app()
    backend = FakeBackend()
    mine = backend.add(app, "prod", "yolov8n")
    backend.add(app, "prod-eu", "yolov8n")  # "prod" is a prefix of it
    backend.add(other, "dev", "yolov8n")
    backend.add(app, "dev", "mobilesam", tagged=False)  # made by hand in another environment
    await record_rows(thermal, (app, "prod", "yolov8n", 1))
    acts = FleetActivities(backend, thermal.engine, FakeTemporal())  # type: ignore[arg-type]

    snap = await ActivityEnvironment().run(
        acts.snapshot, ReconcileInput(app_id=app, environment="prod")
    )
    assert [e.endpoint_name for e in snap.endpoints] == [mine]
    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput(environment="prod"))
    assert mine in [e.endpoint_name for e in snap.endpoints]
    assert len(snap.owners) == len(snap.endpoints)
    assert all(o.environment == "prod" for o in snap.owners)


async def test_app_scope_is_exact_for_prefix_apps_and_long_names(thermal: ThermalHarness):
    app = thermal.new_app()
    long_env = "x" * 60  # the name is cut and hash-suffixed
    backend = FakeBackend()
    mine = backend.add(app, "test", "yolov8n")
    long_mine = backend.add(app, long_env, "yolov8n")
    backend.add(f"{app}-bar", "test", "yolov8n")  # app "foo-bar" is not app "foo"
    acts = FleetActivities(backend, thermal.engine, FakeTemporal())  # type: ignore[arg-type]

    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput(app_id=app))
    assert sorted(e.endpoint_name for e in snap.endpoints) == sorted([mine, long_mine])
    assert len(snap.owners) == len(snap.endpoints) == 2
    assert all(o.managed and o.app_id == app for o in snap.owners)


async def test_untagged_endpoint_of_the_scope_is_reported_never_deleted(
    thermal: ThermalHarness, temporal_client: Client
):
    app = thermal.new_app()
    backend = FakeBackend()
    legacy = backend.add(app, "test", "mobilesam", tagged=False)  # an older version made it
    tagged = backend.add(app, "test", "yolov8n")
    acts = FleetActivities(backend, thermal.engine, FakeTemporal())  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(
        acts.snapshot, ReconcileInput(app_id=app, environment="test")
    )

    report, _ = await run_reconcile(
        temporal_client, snap, ReconcileInput(app_id=app, environment="test", delete_orphans=True)
    )
    assert [o.endpoint_name for o in report.unmanaged] == [legacy]
    assert [(o.endpoint_name, o.deleted) for o in report.orphans] == [(tagged, True)]
    assert await ActivityEnvironment().run(acts.delete_orphan, legacy) is False
    assert backend.deleted == [], "only the reconcile's delete_orphan (mocked there) deletes"


# --------------------------------------------------------------------------- races (finding 3)


async def test_temporal_unavailable_is_retried_not_called_not_running(thermal: ThermalHarness):
    app = thermal.new_app()
    backend = FakeBackend()
    backend.add(app, "test", "yolov8n")
    await record_rows(thermal, (app, "test", "yolov8n", 1))
    down = FakeTemporal(error=RPCStatusCode.UNAVAILABLE)
    acts = FleetActivities(backend, thermal.engine, down)  # type: ignore[arg-type]
    with pytest.raises(RPCError):
        await ActivityEnvironment().run(acts.snapshot, ReconcileInput(app_id=app))

    running = FakeTemporal(running={thermal_workflow_id(app, "test", "yolov8n")})
    acts = FleetActivities(backend, thermal.engine, running)  # type: ignore[arg-type]
    snap = await ActivityEnvironment().run(acts.snapshot, ReconcileInput(app_id=app))
    assert [r.workflow_running for r in snap.recorded] == [True]


async def test_delete_orphan_rechecks_ownership_right_before_deleting():
    backend = FakeBackend()
    name = backend.add("acme", "test", "yolov8n")
    creating = backend.add("acme", "test", "mobilesam", status="Creating")
    owner_started = FakeTemporal(running={thermal_workflow_id("acme", "test", "yolov8n")})
    acts = FleetActivities(backend, None, owner_started)  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, name) is False
    assert await ActivityEnvironment().run(acts.delete_orphan, creating) is False
    assert backend.deleted == []

    acts = FleetActivities(backend, None, FakeTemporal())  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, name) is True
    assert backend.deleted == [name]


async def test_a_retried_delete_orphan_finishes_what_its_first_attempt_began():
    """The first attempt reached DeleteEndpoint and then failed: the retry finds the endpoint
    Deleting (or gone) and still deletes the model and endpoint config behind it."""
    backend = FakeBackend()
    deleting = backend.add("acme", "test", "yolov8n", status="Deleting")
    acts = FleetActivities(backend, None, FakeTemporal())  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, deleting) is False  # 1st try
    assert backend.deleted == []
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    assert await retry.run(acts.delete_orphan, deleting) is True
    gone = endpoint_name("acme", "test", "mobilesam")
    assert await retry.run(acts.delete_orphan, gone) is True
    assert backend.deleted == [deleting, gone]


async def test_endpoint_creating_or_newer_than_the_snapshot_is_no_orphan(temporal_client: Client):
    creating = info("radiant-acme-test-a", "Creating", 0)
    newer = info("radiant-acme-test-b", "InService", 1, created_at=T0 + timedelta(seconds=1))
    snap = FleetSnapshot(
        recorded=[],
        endpoints=[creating, newer],
        owners=[managed(creating), managed(newer)],
        started_at=T0,
    )
    report, deleted = await run_reconcile(
        temporal_client, snap, ReconcileInput(app_id="acme", delete_orphans=True)
    )
    assert report.orphans == [] and report.unmanaged == [] and deleted == []


# --------------------------------------------------------------------------- drift (1, 4)


@pytest.mark.parametrize(
    ("state", "recorded", "live_count", "drift"),
    [
        (ThermalState.HOT, 2, 3, False),  # Application Auto Scaling scaled out under load
        (ThermalState.HOT, 2, 5, False),  # at maxInstances
        (ThermalState.WARM, 1, 4, False),
        (ThermalState.AUTOMATIC, 1, 2, False),
        (ThermalState.HOT, 2, 6, True),  # above maxInstances
        (ThermalState.HOT, 2, 1, True),  # below the HOT floor
    ],
)
async def test_autoscaled_count_within_bounds_is_in_sync(
    temporal_client: Client, state: ThermalState, recorded: int, live_count: int, drift: bool
):
    row = recorded_model(state, recorded)
    live = info(row.endpoint_name, "InService", live_count)
    snap = FleetSnapshot(recorded=[row], endpoints=[live], owners=[managed(live)], started_at=T0)
    report, _ = await run_reconcile(temporal_client, snap, ReconcileInput(app_id="acme"))
    assert bool(report.drift) == drift, report.drift


async def test_deleting_endpoint_of_a_model_at_zero_is_in_sync(temporal_client: Client):
    row = recorded_model(ThermalState.COLD, 0)
    going = info(row.endpoint_name, "Deleting", 1)
    snap = FleetSnapshot(recorded=[row], endpoints=[going], owners=[managed(going)], started_at=T0)
    report, deleted = await run_reconcile(
        temporal_client, snap, ReconcileInput(app_id="acme", delete_orphans=True)
    )
    assert report.drift == [] and report.orphans == [] and deleted == []


async def test_failed_endpoint_and_missing_endpoint_are_drift(temporal_client: Client):
    failed_row = recorded_model(ThermalState.WARM, 1, model="yolov8n")
    missing_row = recorded_model(ThermalState.WARM, 1, model="mobilesam")
    failed = info(failed_row.endpoint_name, "Failed", 0)
    snap = FleetSnapshot(
        recorded=[failed_row, missing_row], endpoints=[failed], owners=[managed(failed)]
    )
    report, _ = await run_reconcile(temporal_client, snap, ReconcileInput(app_id="acme"))
    assert len(report.drift) == 2 and "Failed" in report.drift[0], report.drift
    # Nothing runs the missing one's workflow: its records are closed (the Failed one's
    # endpoint is there: an orphan, deleted only when asked).
    assert report.closed == [missing_row.endpoint_name]


# --------------------------------------------------------------------------- big fleet (5)


async def test_snapshot_describes_concurrently_and_heartbeats(
    thermal: ThermalHarness, monkeypatch: pytest.MonkeyPatch
):
    app = thermal.new_app()
    envs = [f"e{i}" for i in range(24)]
    await record_rows(thermal, *((app, env, "yolov8n", 0) for env in envs))
    slow = FakeTemporal(delay=0.05)
    acts = FleetActivities(FakeBackend(), thermal.engine, slow)  # type: ignore[arg-type]
    monkeypatch.setattr(fleet, "SNAPSHOT_HEARTBEAT_EVERY", 0.02)
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    snap = await env.run(acts.snapshot, ReconcileInput(app_id=app))
    assert len(snap.recorded) == len(envs)
    assert 1 < slow.max_in_flight <= fleet.SNAPSHOT_CONCURRENCY
    assert beats, "a long snapshot must heartbeat"


async def test_snapshot_activity_has_a_heartbeat_timeout(temporal_client: Client):
    snap = FleetSnapshot(recorded=[], endpoints=[], owners=[], started_at=T0)
    _, _, history = await run_reconcile(
        temporal_client, snap, ReconcileInput(app_id="acme"), with_history=True
    )
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "fleet.snapshot"
    ]
    assert scheduled.heartbeat_timeout.ToSeconds() > 0


# --------------------------------------------------------------------------- tags at creation


@pytest.mark.parametrize(
    ("app", "env", "owned"),
    [("acme", "prod", True), ("acme/eu", "prod", False)],  # "acme/eu/prod": which split?
)
async def test_ensure_endpoint_tags_app_environment_and_manager(app: str, env: str, owned: bool):
    captured: list[EndpointSpec] = []

    class Capture:
        async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
            captured.append(spec)
            return info(spec.endpoint_name, "Creating", 0)

    acts = ThermalActivities(load_catalog(), Capture(), None)  # type: ignore[arg-type]
    activity_env = ActivityEnvironment()
    activity_env.info = replace(
        activity_env.info, workflow_id=thermal_workflow_id(app, env, "yolov8n")
    )
    spec = await activity_env.run(
        acts.describe_model, RecordKey(app_id=app, environment=env, model_id="yolov8n")
    )
    await activity_env.run(
        acts.ensure_endpoint,
        EnsureEndpointInput(spec=spec, instance_count=1, min_instances=0, max_instances=1),
    )
    expected = tags(app, env, "yolov8n")
    got = {k: captured[0].tags.get(k) for k in expected}
    # ambiguous ids get no ownership tags: such an endpoint is reported, never deleted
    assert got == (
        expected
        if owned
        else {**expected, TAG_APP: None, TAG_ENVIRONMENT: None, TAG_MANAGED_BY: None}
    )


# --------------------------------------------------------------------------- helpers


def info(name: str, status: EndpointStatus, count: int, created_at: datetime = T0) -> EndpointInfo:
    return EndpointInfo(
        endpoint_name=name,
        model_id="yolov8n",
        status=status,
        instance_count=count,
        created_at=created_at,
    )


def managed(live: EndpointInfo) -> EndpointOwner:
    return EndpointOwner(
        endpoint_name=live.endpoint_name,
        app_id="acme",
        environment="test",
        model_id=live.model_id,
        managed=True,
    )


def recorded_model(state: ThermalState, count: int, model: str = "yolov8n") -> RecordedModel:
    return RecordedModel(
        app_id="acme",
        environment="test",
        model_id=model,
        endpoint_name=endpoint_name("acme", "test", model),
        target_state=state,
        instance_count=count,
        workflow_running=False,  # no resync signal to a workflow that is not there
        min_instances=0,
        max_instances=5,
    )


async def run_reconcile(
    client: Client, snap: FleetSnapshot, inp: ReconcileInput, with_history: bool = False
) -> Any:
    """The real reconcile workflow against mocked activities that return `snap`."""
    deleted: list[str] = []
    closed: list[str] = []  # records of a vanished endpoint closed (see the report's `closed`)

    @activity.defn(name="fleet.snapshot")
    async def snapshot(_: ReconcileInput) -> FleetSnapshot:
        return snap

    @activity.defn(name="fleet.delete_orphan")
    async def delete_orphan(name: str) -> bool:
        deleted.append(name)
        return True

    @activity.defn(name="fleet.report")
    async def report(_: ReconcileReport) -> None:
        return None

    @activity.defn(name="fleet.close_vanished")
    async def close_vanished(name: str) -> bool:
        closed.append(name)
        return True

    @activity.defn(name="services.refresh")
    async def refresh(_: ScopeInput) -> list[Any]:
        return []

    queue = f"reconcile-scope-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ThermalReconcileWorkflow],
        activities=[snapshot, delete_orphan, report, refresh, close_vanished],
    ):
        handle = await client.start_workflow(
            ThermalReconcileWorkflow.run, inp, id=queue, task_queue=queue
        )
        result = await handle.result()
        if with_history:
            return result, deleted, await handle.fetch_history()
    return result, deleted


async def test_deleting_an_orphan_closes_its_recorded_state(thermal: ThermalHarness):
    """A row (WARM, 1 instance, an open uptime interval) whose workflow is gone: once the
    reconcile deletes the endpoint, the records say nothing runs and stop accruing cost."""
    app = thermal.new_app()
    backend = FakeBackend()
    name = backend.add(app, "test", "yolov8n")
    await record_rows(thermal, (app, "test", "yolov8n", 1))
    async with thermal.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO endpoint_uptime (app_id, environment, model_id, endpoint_name, "
                "instance_count, instance_type, billed_hourly, started_at) "
                "VALUES (:a, 'test', 'yolov8n', :ep, 1, 'ml.g5.xlarge', 1.5, now())"
            ),
            {"a": app, "ep": name},
        )
    acts = FleetActivities(backend, thermal.engine, FakeTemporal())  # type: ignore[arg-type]
    assert await ActivityEnvironment().run(acts.delete_orphan, name) is True
    [row] = await thermal.rows(
        "SELECT target_state, current_state, instance_count, last_error FROM thermal_states "
        "WHERE app_id = :a",
        a=app,
    )
    assert (row["target_state"], row["current_state"], row["instance_count"]) == (
        "WARM",
        "COLD",
        0,
    )
    assert "deleted by the reconcile" in row["last_error"]
    open_intervals = await thermal.rows(
        "SELECT id FROM endpoint_uptime WHERE app_id = :a AND ended_at IS NULL", a=app
    )
    assert open_intervals == []


async def test_a_retried_orphan_delete_leaves_a_running_workflows_records(
    thermal: ThermalHarness,
):
    """The retry finishing an earlier attempt's delete: a workflow started meanwhile for the
    same model records its own truth, so its row is not touched."""
    app = thermal.new_app()
    backend = FakeBackend()
    name = backend.add(app, "test", "yolov8n", status="Deleting")
    await record_rows(thermal, (app, "test", "yolov8n", 1))
    restarted = FakeTemporal(running={thermal_workflow_id(app, "test", "yolov8n")})
    acts = FleetActivities(backend, thermal.engine, restarted)  # type: ignore[arg-type]
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    assert await retry.run(acts.delete_orphan, name) is True
    [row] = await thermal.rows(
        "SELECT current_state, instance_count FROM thermal_states WHERE app_id = :a", a=app
    )
    assert (row["current_state"], row["instance_count"]) == ("WARM", 1)
