"""Two (app, environment) pairs whose endpoint names coincide ("a" + "x-test" and "a-x" + "test"
both give radiant-a-x-test-{model}): the second owner gets a clear error and never scales,
adopts or deletes the first one's endpoint; the reconcile calls neither of them drift."""

from __future__ import annotations

import json
import os

import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.backends.base import endpoint_name
from activities.backends.local import pid_alive
from activities.fleet_activities import ReconcileInput
from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from tests.thermal.test_replay import HISTORIES, replayer
from workers.cli.common import failure_message
from workflows.thermal_fleet import ThermalReconcileWorkflow
from workflows.thermal_types import SetTargetRequest, WarmUpRequest, thermal_workflow_id

MODEL = "yolov8n"


async def test_a_shared_endpoint_name_is_refused_and_left_to_its_owner(thermal: ThermalHarness):
    app = thermal.new_app()
    first, second = (app, "x-test"), (f"{app}-x", "test")
    name = endpoint_name(*first, MODEL)
    assert endpoint_name(*second, MODEL) == name  # the collision this test is about

    st = await thermal.control.set_target(*first, MODEL, SetTargetRequest(state=ThermalState.WARM))
    assert st.instance_count == 1
    pids = thermal.backend.endpoint_pids(name)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await thermal.control.warm_up(*second, MODEL, WarmUpRequest())
    message = failure_message(refused.value)
    assert f"{second[0]}/test/{MODEL} cannot use endpoint {name}" in message
    assert f"{app}/x-test/{MODEL} already owns that name" in message

    # The first owner's endpoint is untouched: same processes, still serving.
    info = await thermal.backend.describe_endpoint(name)
    assert info is not None and (info.status, info.instance_count) == ("InService", 1)
    assert thermal.backend.endpoint_pids(name) == pids and all(map(pid_alive, pids))
    other = await thermal.control.status(*second, MODEL)
    assert (other.instance_count, other.endpoint_status) == (0, None)
    assert other.last_error is not None and "already owns" in other.last_error
    rows = await thermal.rows(
        "SELECT app_id, instance_count FROM thermal_states WHERE endpoint_name = :n ORDER BY 1",
        n=name,
    )
    assert rows == [
        {"app_id": app, "instance_count": 1},
        {"app_id": f"{app}-x", "instance_count": 0},
    ]

    # Every app's reconcile (the schedule's): the endpoint is the first owner's, in sync with its
    # record; for the second owner there is no endpoint, also in sync. No orphan either.
    report = await thermal.client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(),
        id=f"reconcile-shared-{app}",
        task_queue=thermal.task_queue,
    )
    owners = [thermal_workflow_id(*pair, MODEL) for pair in (first, second)]
    assert not [line for line in report.drift if any(f"{o}:" in line for o in owners)]
    assert name not in [o.endpoint_name for o in report.orphans + report.unmanaged]
    assert thermal.backend.endpoint_pids(name) == pids
    history = await thermal.client.get_workflow_handle(f"reconcile-shared-{app}").fetch_history()
    await replayer().replay_workflow(history)  # the patched branch replays
    if os.environ.get("RADIANT_RECORD_HISTORIES"):  # its guard history, refreshed on purpose
        (HISTORIES / "reconcile-shared-endpoint-name.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )

    # New intent of the second owner (WARM) is refused the same way; the endpoint stays.
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await thermal.control.set_target(*second, MODEL, SetTargetRequest(state=ThermalState.WARM))
    assert "already owns that name" in failure_message(again.value)
    assert thermal.backend.endpoint_pids(name) == pids

    # The first owner's workflow goes away with its endpoint up: a GPU cost leak the reconcile
    # must report although the second owner's workflow (same name) still runs.
    await thermal.control.handle(*first, MODEL).terminate("test: owner gone")
    report = await thermal.client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(),
        id=f"reconcile-shared-orphan-{app}",
        task_queue=thermal.task_queue,
    )
    assert name in [o.endpoint_name for o in report.orphans]
    await thermal.backend.delete_endpoint(name)
