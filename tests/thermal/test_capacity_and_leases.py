"""Capacity changes that fail, autoscaling after a create, half-made cleanup, lease renewal.

The backend is the local stand-in wrapped to record (and, where a test says so, fail) calls, so
the thermal workflow runs for real against real model-server processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.backends.base import EndpointInfo, EndpointSpec
from activities.backends.errors import (
    AccessDenied,
    CapacityUnavailable,
    EndpointFailed,
    InvalidEndpointState,
    QuotaExceeded,
)
from activities.backends.local import LocalStandInBackend
from activities.fleet_activities import ReconcileInput, ReconcileReport
from activities.thermal_activities import EnsureEndpointInput, RecordKey, ThermalActivities
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness, running_harness
from tests.thermal.test_replay import HISTORIES, replayer
from workers.cli.common import failure_message
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_fleet import ThermalReconcileWorkflow
from workflows.thermal_types import (
    ModelThermalInput,
    ReleaseRequest,
    SetTargetRequest,
    ThermalSnapshot,
    ThermalStatus,
    WarmUpRequest,
    thermal_workflow_id,
)

MODEL = "yolov8n"  # COLD by default, 0-5 instances
ENV = "test"


@dataclass
class Faults:
    fail_scale_out: int = 0  # set_capacity calls that raise when asked for more instances
    fail_create: bool = False
    create_delay: float = 0.0  # seconds each ensure_endpoint takes before it does anything
    capacity_delay: float = 0.0  # seconds each set_capacity takes before it does anything
    deny_describe: bool = False  # DescribeEndpoint answers AccessDenied
    fail_scale_in: int = 0  # set_capacity calls that raise when asked for fewer instances
    busy: bool = False  # the endpoint is Updating (SageMaker's autoscaler at work)
    deny_delete: bool = False  # DeleteEndpoint answers AccessDenied
    # Creates that SageMaker accepts and then fails for want of instances (status Failed).
    no_capacity_creates: int = 0
    creates: list[str] = field(default_factory=list)  # ensure_endpoint calls, by endpoint
    capacity_calls: list[tuple[str, int, int, int]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


class RecordingBackend(LocalStandInBackend):
    """The local stand-in, recording capacity calls and deletes, with injectable failures."""

    def __init__(self, *args, faults: Faults, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.faults = faults
        self.failed: dict[str, EndpointInfo] = {}  # endpoints Failed for want of capacity

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        await asyncio.sleep(self.faults.create_delay)
        self.faults.creates.append(spec.endpoint_name)
        if self.faults.fail_create:
            raise QuotaExceeded("account-level service limit for ml.g5.xlarge is 0 (injected)")
        if self.faults.no_capacity_creates and spec.endpoint_name not in self.failed:
            # Like SageMaker: CreateEndpoint succeeds, the endpoint then goes Failed.
            self.faults.no_capacity_creates -= 1
            self.failed[spec.endpoint_name] = EndpointInfo(
                endpoint_name=spec.endpoint_name,
                model_id=spec.model_id,
                status="Failed",
                failure_reason="CapacityError: Unable to provision requested ML compute "
                "capacity. Please retry using a different ML instance type. (injected)",
            )
            return self.failed[spec.endpoint_name].model_copy(update={"status": "Creating"})
        return await super().ensure_endpoint(spec)

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        self.faults.capacity_calls.append((name, instance_count, min_instances, max_instances))
        await asyncio.sleep(self.faults.capacity_delay)
        current = await self.describe_endpoint(name)
        if (
            self.faults.fail_scale_out
            and current is not None
            and instance_count > current.instance_count
        ):
            self.faults.fail_scale_out -= 1
            raise CapacityUnavailable("insufficient capacity for ml.g5.xlarge (injected)")
        if self.faults.busy:
            raise InvalidEndpointState("endpoint is Updating: cannot update it now (injected)")
        if (
            self.faults.fail_scale_in
            and current is not None
            and instance_count < current.instance_count
        ):
            self.faults.fail_scale_in -= 1
            raise QuotaExceeded("scale-in refused (injected)")
        return await super().set_capacity(name, instance_count, min_instances, max_instances)

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        if self.faults.deny_describe:
            raise AccessDenied("not authorized to perform sagemaker:DescribeEndpoint (injected)")
        if name in self.failed:
            return self.failed[name]
        info = await super().describe_endpoint(name)
        if info is not None and self.faults.busy:
            return info.model_copy(update={"status": "Updating"})
        return info

    async def delete_endpoint(self, name: str) -> None:
        self.faults.deletes.append(name)
        if self.faults.deny_delete:
            raise AccessDenied("not authorized to perform sagemaker:DeleteEndpoint (injected)")
        self.failed.pop(name, None)
        await super().delete_endpoint(name)


@pytest_asyncio.fixture
async def harness(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ThermalHarness, Faults]]:
    data_dir = tmp_path_factory.mktemp("capacity")
    faults = Faults()
    backend = RecordingBackend(data_dir, faults=faults)
    timings = TIMINGS.model_copy(update={"capacity_retry_seconds": 1.0})
    async with running_harness(temporal_client, catalog_db, data_dir, backend, timings) as h:
        yield h, faults


def settled_at(h: ThermalHarness, app: str, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether the model runs `count` instances with no error and no change under way."""

    async def check() -> bool:
        s = await h.control.status(app, ENV, MODEL)
        return s.instance_count == count and s.last_error is None and not s.transitioning

    return check


async def _set(h: ThermalHarness, app: str, state: ThermalState):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(
        h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=state)), 60
    )


async def test_a_fresh_endpoint_registers_its_autoscaling_bounds(harness):
    h, faults = harness
    app = h.new_app()
    st = await _set(h, app, ThermalState.HOT)  # created with 2 instances, 2..5 autoscaling
    assert st.instance_count == 2
    # SageMaker can only register the scalable target once the endpoint exists: the capacity
    # step runs after the create even though the count is already right.
    assert (st.endpoint_name, 2, 2, 5) in faults.capacity_calls


async def test_a_failed_scale_out_keeps_serving_and_retries_with_backoff(harness):
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.WARM)  # 1 instance
    faults.fail_scale_out = 1_000  # no capacity for a second instance, for now
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await _set(h, app, ThermalState.HOT)
    assert "insufficient capacity" in failure_message(info.value)
    st = await h.control.status(app, ENV, MODEL)
    # The endpoint still serves with what runs; the error is kept; HOT is still pending.
    assert st.ready and st.instance_count == 1
    assert (st.current_state, st.target_state) == (ThermalState.WARM, ThermalState.HOT)
    assert st.last_error and "retrying in" in st.last_error
    [row] = await h.rows(
        "SELECT instance_count, last_error FROM thermal_states WHERE app_id = :a", a=app
    )
    assert row["instance_count"] == 1 and "insufficient capacity" in row["last_error"]
    calls_after_failure = len(faults.capacity_calls)
    await asyncio.sleep(0.5)  # inside the 1-s backoff: no tight loop of scale-out attempts
    assert len(faults.capacity_calls) == calls_after_failure

    faults.fail_scale_out = 0  # capacity is back: the backoff retry scales out by itself

    await wait_for(settled_at(h, app, 2))
    assert (await h.control.status(app, ENV, MODEL)).current_state == ThermalState.HOT


async def test_an_endpoint_busy_updating_is_waited_for_not_blocked(harness):
    """SageMaker refuses a capacity change while its autoscaler updates the endpoint: the
    model keeps serving and tries again; it is not blocked as failed."""
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.WARM)
    faults.busy = True
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.HOT)
    st = await h.control.status(app, ENV, MODEL)
    assert st.instance_count == 1 and st.last_error and "retrying in" in st.last_error
    faults.busy = False

    await wait_for(settled_at(h, app, 2))


async def test_a_failed_scale_in_backs_off_instead_of_spinning(harness):
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.HOT)  # 2 instances
    faults.fail_scale_in = 1_000
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.WARM)
    tries = len([c for c in faults.capacity_calls if c[1] == 1])
    await asyncio.sleep(2.0)  # backoff 1 s, then 2 s: one more try at most, not a busy loop
    assert len([c for c in faults.capacity_calls if c[1] == 1]) - tries <= 2
    faults.fail_scale_in = 0

    await wait_for(settled_at(h, app, 1))


async def test_a_backoff_outlives_continue_as_new(harness):
    """A run that continues as new during a capacity backoff hands the backoff on: the next
    run waits for the retry time instead of trying (and failing) again at once."""
    h, faults = harness
    app = h.new_app()
    control = ThermalControl(
        h.client,
        h.task_queue,
        TIMINGS.model_copy(update={"capacity_retry_seconds": 30.0, "max_history_events": 10}),
    )
    await asyncio.wait_for(
        control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM)), 60
    )
    faults.fail_scale_out = 1_000
    with pytest.raises(WorkflowUpdateFailedError):
        await asyncio.wait_for(
            control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT)), 60
        )
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
    failed_run = (await handle.describe()).run_id

    async def continued() -> bool:
        return (await handle.describe()).run_id != failed_run

    await wait_for(continued)
    tries = len(faults.capacity_calls)
    await asyncio.sleep(1.5)
    assert len(faults.capacity_calls) == tries, "the new run retried inside the backoff"
    st = await control.status(app, ENV, MODEL)
    assert st.instance_count == 1 and st.last_error and "retrying in 30s" in st.last_error
    await asyncio.wait_for(
        control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.OFF)), 60
    )


async def test_new_intent_goes_ahead_while_a_scale_out_backs_off(harness):
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.WARM)
    faults.fail_scale_out = 1_000
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.HOT)
    st = await _set(h, app, ThermalState.OFF)  # an admin gives up: it turns off at once
    assert st.instance_count == 0 and st.current_state == ThermalState.OFF
    assert await h.backend.describe_endpoint(st.endpoint_name) is None


async def test_a_failed_create_cleans_up_what_it_may_have_left(harness):
    h, faults = harness
    app = h.new_app()
    faults.fail_create = True
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await _set(h, app, ThermalState.WARM)
    assert "service limit" in failure_message(info.value)
    st = await h.control.status(app, ENV, MODEL)
    assert st.instance_count == 0 and st.last_error
    # No endpoint exists, but a model and endpoint config may: delete removes them.
    assert st.endpoint_name in faults.deletes


async def test_a_create_that_found_no_capacity_is_retried_after_a_backoff(harness):
    """SageMaker accepts the create, then fails the endpoint for want of instances: it is
    deleted (nothing half-made), the admin hears why, and the create is tried again after a
    backoff, by itself, until the WARM target is met; not blocked until someone asks again."""
    h, faults = harness
    app = h.new_app()
    faults.no_capacity_creates = 2
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await _set(h, app, ThermalState.WARM)
    assert "Unable to provision" in failure_message(info.value)
    st = await h.control.status(app, ENV, MODEL)
    assert st.instance_count == 0 and st.last_error and "retrying in" in st.last_error
    assert st.endpoint_name in faults.deletes

    await wait_for(settled_at(h, app, 1))  # the 1-s backoff, a second failure, then 2 s
    st = await h.control.status(app, ENV, MODEL)
    assert (st.current_state, st.target_state) == (ThermalState.WARM, ThermalState.WARM)
    assert faults.creates.count(st.endpoint_name) == 3 and faults.no_capacity_creates == 0
    rows = await h.rows("SELECT kind FROM notifications WHERE app_id = :a ORDER BY id", a=app)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("thermal.failed") == 2 and kinds[-1] == "thermal.ready"
    await _keep_history(h, thermal_workflow_id(app, ENV, MODEL), "thermal-create-no-capacity")


async def test_a_create_without_capacity_backs_off_instead_of_spinning(harness):
    h, faults = harness
    app = h.new_app()
    faults.no_capacity_creates = 1_000
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.WARM)
    tries = len(faults.creates)
    await asyncio.sleep(2.0)  # backoff 1 s, then 2 s: one more create at most
    assert len(faults.creates) - tries <= 2
    # An admin who gives up turns it OFF at once; nothing is left behind.
    st = await _set(h, app, ThermalState.OFF)
    assert st.instance_count == 0 and st.current_state == ThermalState.OFF
    assert await h.backend.describe_endpoint(st.endpoint_name) is None


async def _superseded_while_failing(
    h: ThermalHarness, app: str, failing: ThermalState, expected: str
) -> ThermalStatus:
    """Ask for `failing` (a change that will fail for want of capacity, slowly) and, while it
    runs, turn the model OFF: OFF is applied at once and its caller is answered, not held
    until the failed change's retry (30 s here) nor told of the other change's error."""
    control = ThermalControl(
        h.client, h.task_queue, TIMINGS.model_copy(update={"capacity_retry_seconds": 30.0})
    )

    async def set_to(state: ThermalState) -> ThermalStatus:
        return await asyncio.wait_for(
            control.set_target(app, ENV, MODEL, SetTargetRequest(state=state)), 60
        )

    first = asyncio.create_task(set_to(failing))
    await asyncio.sleep(1.5)  # the change is under way
    st = await set_to(ThermalState.OFF)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await first
    assert expected in failure_message(info.value)
    return st


async def test_a_target_set_while_a_create_finds_no_capacity_goes_ahead_at_once(harness):
    h, faults = harness
    app = h.new_app()
    faults.no_capacity_creates, faults.create_delay = 1_000, 3.0
    st = await _superseded_while_failing(h, app, ThermalState.WARM, "Unable to provision")
    assert (st.current_state, st.instance_count, st.transitioning) == (ThermalState.OFF, 0, False)
    assert await h.backend.describe_endpoint(st.endpoint_name) is None
    tries = len(faults.creates)
    await asyncio.sleep(1.5)  # nothing retries the abandoned WARM
    assert len(faults.creates) == tries
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    await _keep_history(h, wf_id, "thermal-create-no-capacity-superseded")


async def test_a_target_set_while_a_scale_out_fails_goes_ahead_at_once(harness):
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.WARM)
    faults.fail_scale_out, faults.capacity_delay = 1_000, 1.0  # 4 tries: about 5 s
    st = await _superseded_while_failing(h, app, ThermalState.HOT, "insufficient capacity")
    assert (st.current_state, st.instance_count, st.transitioning) == (ThermalState.OFF, 0, False)
    assert st.last_error is None
    assert await h.backend.describe_endpoint(st.endpoint_name) is None
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    await _keep_history(h, wf_id, "thermal-scale-out-superseded")


async def test_a_lease_taken_again_is_renewed(harness):
    h, _ = harness
    app = h.new_app()
    short = WarmUpRequest(requester="job", lease_id="job-1/yolov8n", lease_seconds=2.0)
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, short), 60)
    assert st.in_flight == 1
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
    renewal = short.model_copy(update={"lease_seconds": 60.0})
    arrivals = (await handle.query(ModelThermalWorkflow.traffic)).arrivals
    await handle.signal(ModelThermalWorkflow.lease, renewal)
    await asyncio.sleep(3.0)  # past the first expiry
    st = await h.control.status(app, ENV, MODEL)
    assert st.in_flight == 1 and st.instance_count == 1
    # A renewal is the same caller still working, not a new arrival for AUTOMATIC's statistics.
    assert (await handle.query(ModelThermalWorkflow.traffic)).arrivals == arrivals == 1


async def test_a_release_of_a_lease_not_held_is_no_completion(harness):
    """A job whose hold never reached the model (refused, cancelled) still releases; so does a
    release sent twice. Neither finished a request: AUTOMATIC's statistics must not count one
    (it would end the busy period of the caller still holding its lease)."""
    h, _ = harness
    app = h.new_app()
    await _set(h, app, ThermalState.AUTOMATIC)
    hold = WarmUpRequest(requester="job", lease_id="job-1/yolov8n", lease_seconds=60.0)
    await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, hold), 60)
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
    await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id="job-2/yolov8n"))
    stats = await handle.query(ModelThermalWorkflow.traffic)
    assert (stats.completions, stats.in_flight, stats.idle_since) == (0, 1, None)
    for _ in range(2):  # the second one is a duplicate
        await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id=hold.lease_id))
    stats = await handle.query(ModelThermalWorkflow.traffic)
    assert (stats.completions, stats.in_flight) == (1, 0) and stats.idle_since is not None
    assert (await h.control.status(app, ENV, MODEL)).in_flight == 0
    await _keep_history(h, thermal_workflow_id(app, ENV, MODEL), "thermal-release-not-held")


async def _reconcile(h: ThermalHarness, app: str, keep: str | None = None) -> ReconcileReport:
    """The reconcile of the app; `keep`: its history's guard name (see _keep_history)."""
    wf_id = f"reconcile-{app}-{uuid.uuid4().hex[:6]}"
    report = await h.client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(app_id=app, environment=ENV),
        id=wf_id,
        task_queue=h.task_queue,
    )
    if keep:
        await _keep_history(h, wf_id, keep)
    return report


async def _keep_history(h: ThermalHarness, workflow_id: str, name: str) -> None:
    """Replay the workflow's history; RADIANT_RECORD_HISTORIES=1 keeps it as a guard history."""
    history = await h.client.get_workflow_handle(workflow_id).fetch_history()
    await replayer().replay_workflow(history)
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )


async def _uptime(h: ThermalHarness, app: str) -> list[tuple[int, bool]]:
    rows = await h.rows(
        "SELECT instance_count, ended_at IS NULL AS open FROM endpoint_uptime "
        "WHERE app_id = :a ORDER BY started_at, id",
        a=app,
    )
    return [(r["instance_count"], r["open"]) for r in rows]


async def test_a_count_the_autoscaler_moved_is_recorded_and_kept(harness):
    """SageMaker's autoscaler scales a HOT endpoint out within its bounds (2..5): no drift,
    but the reconcile tells the workflow, which records the count (the uptime interval bills 3
    instances from then on) and keeps it instead of scaling it back to 2."""
    h, faults = harness
    app = h.new_app()
    st = await _set(h, app, ThermalState.HOT)
    assert st.instance_count == 2
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    await h.backend.set_capacity(st.endpoint_name, 3, 2, 5)  # the autoscaler, out of band
    calls = len(faults.capacity_calls)

    report = await _reconcile(h, app, keep="reconcile-autoscaled-count")
    assert report.drift == [] and report.recounted == [wf_id]
    await wait_for(settled_at(h, app, 3))
    [row] = await h.rows("SELECT instance_count FROM thermal_states WHERE app_id = :a", a=app)
    assert row["instance_count"] == 3
    assert await _uptime(h, app) == [(2, False), (3, True)]
    await asyncio.sleep(0.5)  # a scale back would have been decided by now
    assert len(faults.capacity_calls) == calls
    info = await h.backend.describe_endpoint(st.endpoint_name)
    assert info is not None and info.instance_count == 3

    # The autoscaler scales in again: recorded too; a reconcile with nothing moved sends nothing.
    await h.backend.set_capacity(st.endpoint_name, 2, 2, 5)
    assert (await _reconcile(h, app)).recounted == [wf_id]
    await wait_for(settled_at(h, app, 2))
    assert await _uptime(h, app) == [(2, False), (3, False), (2, True)]
    assert (await _reconcile(h, app)).recounted == []

    # An admin's new target sets its own count (the autoscaler's is no longer kept).
    await h.backend.set_capacity(st.endpoint_name, 4, 2, 5)
    await _reconcile(h, app)
    await wait_for(settled_at(h, app, 4))
    st = await _set(h, app, ThermalState.WARM)
    assert st.instance_count == 1
    info = await h.backend.describe_endpoint(st.endpoint_name)
    assert info is not None and info.instance_count == 1
    await _keep_history(h, wf_id, "thermal-autoscaled-count")


async def test_a_count_outside_the_bounds_is_drift_not_adopted(harness):
    """A count below the HOT floor is no autoscaler's doing: the reconcile resyncs it."""
    h, _ = harness
    app = h.new_app()
    st = await _set(h, app, ThermalState.HOT)
    await h.backend.set_capacity(st.endpoint_name, 1, 1, 5)
    report = await _reconcile(h, app)
    assert report.recounted == [] and report.resynced == [thermal_workflow_id(app, ENV, MODEL)]

    async def restored() -> bool:
        info = await h.backend.describe_endpoint(st.endpoint_name)
        return info is not None and info.instance_count == 2

    await wait_for(restored)
    await wait_for(settled_at(h, app, 2))


async def test_automatic_keeps_the_autoscalers_count_while_it_serves(harness):
    h, faults = harness
    app = h.new_app()
    await _set(h, app, ThermalState.AUTOMATIC)
    hold = WarmUpRequest(requester="job", lease_id="job-1/yolov8n", lease_seconds=60.0)
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, hold), 60)
    assert st.instance_count == 1
    await h.backend.set_capacity(st.endpoint_name, 2, 1, 5)
    calls = len(faults.capacity_calls)
    assert (await _reconcile(h, app)).recounted == [thermal_workflow_id(app, ENV, MODEL)]
    await wait_for(settled_at(h, app, 2))
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
    await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id="job-1/yolov8n"))
    await asyncio.sleep(1.0)  # idle now: the policy alone would keep 1 instance alive
    assert len(faults.capacity_calls) == calls
    assert (await h.control.status(app, ENV, MODEL)).instance_count == 2


async def _blocked_while_serving(h: ThermalHarness, faults: Faults, app: str) -> str:
    """A COLD model served one caller; its scale to zero failed (DeleteEndpoint denied): it is
    blocked with its endpoint (the name returned) serving 1 instance."""
    hold = WarmUpRequest(requester="job", lease_id="job-1/yolov8n", lease_seconds=60.0)
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, hold), 60)
    faults.deny_delete = True
    handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
    await handle.signal(ModelThermalWorkflow.release, ReleaseRequest(lease_id="job-1/yolov8n"))

    async def blocked() -> bool:
        status = await h.control.status(app, ENV, MODEL)
        return bool(status.last_error and "DeleteEndpoint" in status.last_error)

    await wait_for(blocked)
    return st.endpoint_name


async def test_a_blocked_model_records_the_autoscalers_count_without_retrying(harness):
    """A scale to zero failed (DeleteEndpoint denied): the model is blocked, still serving.
    The autoscaler moves the count: the recount records it (billed from then on) once, and
    neither retries the failed deletion nor makes the reconcile signal it again and again."""
    h, faults = harness
    app = h.new_app()
    endpoint = await _blocked_while_serving(h, faults, app)
    deletes = len(faults.deletes)
    await h.backend.set_capacity(endpoint, 2, 1, 5)  # the autoscaler, out of band
    assert (await _reconcile(h, app)).recounted == [thermal_workflow_id(app, ENV, MODEL)]

    async def recorded() -> bool:
        return await _uptime(h, app) == [(1, False), (2, True)]

    await wait_for(recorded)
    assert (await _reconcile(h, app)).recounted == []
    await asyncio.sleep(0.5)
    assert len(faults.deletes) == deletes, "the recount retried the failed transition"
    status = await h.control.status(app, ENV, MODEL)
    assert (
        status.instance_count == 2 and status.last_error and "DeleteEndpoint" in status.last_error
    )
    faults.deny_delete = False  # the teardown deletes the endpoint


async def test_a_recount_does_not_retry_a_failed_target_change(harness):
    """An admin's OFF failed (DeleteEndpoint denied; the endpoint still serves): the recount
    records the autoscaler's count but does not delete again; new intent does."""
    h, faults = harness
    app = h.new_app()
    st = await _set(h, app, ThermalState.WARM)
    faults.deny_delete = True
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.OFF)
    deletes = len(faults.deletes)
    await h.backend.set_capacity(st.endpoint_name, 2, 1, 5)
    assert (await _reconcile(h, app)).recounted == [thermal_workflow_id(app, ENV, MODEL)]

    async def recorded() -> bool:
        return (await _uptime(h, app))[-1] == (2, True)

    await wait_for(recorded)
    await asyncio.sleep(0.5)
    assert len(faults.deletes) == deletes, "the recount retried the failed transition"
    faults.deny_delete = False
    st = await _set(h, app, ThermalState.OFF)  # new intent: deleted now
    assert st.instance_count == 0 and await h.backend.describe_endpoint(st.endpoint_name) is None


@pytest.mark.parametrize(
    ("state", "limits", "kept"),
    [
        (ThermalState.WARM, (1, 5), 4),  # within 1..5: kept
        (ThermalState.WARM, (1, 3), None),  # the catalog lowered the maximum: scaled back
        (ThermalState.HOT, (5, 8), None),  # raised the floor above it (HOT: 6..8)
        (ThermalState.AUTOMATIC, (0, 5), 4),
        (ThermalState.AUTOMATIC, (0, 2), None),
    ],
)
async def test_an_adopted_count_is_kept_only_within_the_current_limits(
    state: ThermalState, limits: tuple[int, int], kept: int | None, tmp_path: Path
):
    """The limits come from the catalog on every run: a count adopted under older limits
    that the new ones exclude is no longer kept, so the next converge sets the new bounds."""
    wf = ModelThermalWorkflow(
        ModelThermalInput(
            app_id="app",
            environment=ENV,
            model_id=MODEL,
            snapshot=ThermalSnapshot(
                target_state=state,
                current_state=state,
                instance_count=4,
                generation=3,
                applied_generation=3,
                autoscaled_count=4,
                autoscaled_generation=3,
            ),
        )
    )
    spec = await ActivityEnvironment().run(
        ThermalActivities(load_catalog(), LocalStandInBackend(tmp_path), None).describe_model,
        RecordKey(app_id="app", environment=ENV, model_id=MODEL),
    )
    wf.spec = spec.model_copy(update={"min_instances": limits[0], "max_instances": limits[1]})
    assert wf._autoscaled() == kept


async def test_a_re_read_that_finds_another_count_is_recorded(harness):
    """A caller that found the endpoint changed asks for a re-read (verify_endpoint) of a
    blocked model whose autoscaler moved the count: the new count is recorded, not only
    known to the workflow (before, Postgres kept billing the old one)."""
    h, faults = harness
    app = h.new_app()
    endpoint = await _blocked_while_serving(h, faults, app)
    wf_id = thermal_workflow_id(app, ENV, MODEL)
    await h.backend.set_capacity(endpoint, 2, 1, 5)  # the autoscaler, out of band
    again = WarmUpRequest(requester="job", verify_endpoint=True)
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, again), 60)
    await _keep_history(h, wf_id, "thermal-refresh-recorded")
    assert st.instance_count == 2
    assert await _uptime(h, app) == [(1, False), (2, True)]
    faults.deny_delete = False  # the teardown deletes the endpoint


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("CapacityError: Unable to provision requested ML compute capacity.", "NoCapacity"),
        ("Insufficient capacity for ml.g5.12xlarge in us-east-1a", "NoCapacity"),
        (
            "The primary container for production variant AllTraffic did not pass the ping "
            "health check.",
            "",
        ),
        (None, ""),
    ],
)
async def test_a_failed_endpoint_is_told_apart_by_its_reason(
    tmp_path: Path, reason: str | None, kind: str
) -> None:
    """Only a want of capacity is worth creating again later; a model that fails its health
    check fails again. Both the poll and a create that finds the endpoint Failed say which."""
    failed = EndpointInfo(endpoint_name="e", status="Failed", failure_reason=reason, model_id=MODEL)

    class FailedBackend(LocalStandInBackend):
        async def describe_endpoint(self, name: str) -> EndpointInfo | None:
            return failed

        async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
            # What both backends raise for an endpoint found Failed (see test_sagemaker).
            raise EndpointFailed(f"endpoint e is Failed: {reason}", failure_reason=reason)

    acts = ThermalActivities(load_catalog(), FailedBackend(tmp_path), None)
    with pytest.raises(ApplicationError) as polled:
        await ActivityEnvironment().run(acts.wait_in_service, "e")
    assert polled.value.type == f"EndpointFailed{kind}" and polled.value.non_retryable
    assert (reason or "no reason given") in polled.value.message
    spec = await ActivityEnvironment().run(
        acts.describe_model, RecordKey(app_id="app", environment=ENV, model_id=MODEL)
    )
    with pytest.raises(ApplicationError) as created:
        await ActivityEnvironment().run(
            acts.ensure_endpoint,
            EnsureEndpointInput(spec=spec, instance_count=1, min_instances=0, max_instances=1),
        )
    assert created.value.type == f"EndpointFailed{kind}" and created.value.non_retryable
