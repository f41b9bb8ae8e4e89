"""A warm-up that finds its endpoint on an older config updates it (a catalog change); SageMaker
may fail that update and roll it back, leaving the endpoint InService on the old config with a
FailureReason. The warm-up tells it (a `failed` notification with that reason) and the old
config serves, instead of counting it as ready silently.
RADIANT_RECORD_HISTORIES=1 keeps the guard history of WAIT_FOR_ASKED_CONFIG_PATCH."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.backends.base import EndpointInfo, EndpointSpec
from activities.backends.errors import QuotaExceeded
from activities.backends.local import LocalStandInBackend
from activities.thermal_activities import (
    ERR_NOT_READY,
    ERR_UPDATE_ROLLED_BACK,
    STALE_REASON_POLLS,
    ThermalActivities,
    WaitInServiceInput,
)
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, running_harness
from tests.thermal.test_capacity_and_leases import ENV, MODEL, _keep_history
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import (
    ModelThermalInput,
    SetTargetRequest,
    ThermalSnapshot,
    thermal_workflow_id,
)

REASON = (
    "The primary container for production variant AllTraffic did not pass the ping health check."
)


class RollingBackBackend(LocalStandInBackend):
    """The local stand-in, where every ensure asks for config `asked` and the endpoint then
    serves its own (older) config with SageMaker's FailureReason: an update rolled back."""

    asked = "radiant-new-config"

    def __init__(self, *args, refuse_capacity: int = 0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.capacity_calls: list[tuple[str, int]] = []
        self.refuse_capacity = refuse_capacity  # capacity changes refused (for good) first

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        self.capacity_calls.append((name, instance_count))
        if self.refuse_capacity:
            self.refuse_capacity -= 1
            raise QuotaExceeded("autoscaling target refused (injected)")
        return await super().set_capacity(name, instance_count, min_instances, max_instances)

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        info = await super().ensure_endpoint(spec)
        return info.model_copy(update={"status": "Updating", "config_name": self.asked})

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        info = await super().describe_endpoint(name)
        if info is None or info.status != "InService":
            return info
        return info.model_copy(update={"failure_reason": REASON})


def _serving(config: str | None, reason: str | None) -> LocalStandInBackend:
    class Serving(LocalStandInBackend):
        async def describe_endpoint(self, name: str) -> EndpointInfo | None:
            return EndpointInfo(
                endpoint_name=name,
                model_id=MODEL,
                status="InService",
                instance_count=1,
                config_name=config,
                failure_reason=reason,
            )

    return Serving


async def test_the_poll_tells_a_rolled_back_update_from_one_not_visible_yet(
    tmp_path: Path,
) -> None:
    req = WaitInServiceInput(endpoint_name="e", config_name="new")

    async def poll(config: str | None, reason: str | None) -> EndpointInfo:
        backend = _serving(config, reason)(tmp_path)
        acts = ThermalActivities(load_catalog(), backend, None)
        return await ActivityEnvironment().run(acts.wait_in_service_on_config, req)

    assert (await poll("new", None)).config_name == "new"
    assert (await poll(None, None)).status == "InService"  # a backend without config names
    with pytest.raises(ApplicationError) as pending:
        await poll("old", None)  # UpdateEndpoint accepted, not visible yet
    assert pending.value.type == ERR_NOT_READY and not pending.value.non_retryable
    with pytest.raises(ApplicationError) as rolled:
        await poll("old", REASON)
    assert rolled.value.type == ERR_UPDATE_ROLLED_BACK and rolled.value.non_retryable
    assert REASON in rolled.value.message and "rolled back" in rolled.value.message
    assert "serves old" in rolled.value.message


async def test_the_reason_of_an_earlier_failure_gets_the_first_polls(tmp_path: Path) -> None:
    """SageMaker keeps an earlier failed update's FailureReason until the next update shows:
    seen again in the first polls, it is not yet this update's end; after them it is (the
    same failure twice). Another reason is this update's at once."""
    acts = ThermalActivities(load_catalog(), _serving("old", REASON)(tmp_path), None)
    req = WaitInServiceInput(endpoint_name="e", config_name="new", stale_reason=REASON)

    async def poll(req: WaitInServiceInput, attempt: int) -> ApplicationError:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=attempt)
        with pytest.raises(ApplicationError) as err:
            await env.run(acts.wait_in_service_on_config, req)
        return err.value

    for attempt in range(1, STALE_REASON_POLLS + 1):
        assert (await poll(req, attempt)).type == ERR_NOT_READY
    assert (await poll(req, STALE_REASON_POLLS + 1)).type == ERR_UPDATE_ROLLED_BACK
    other = req.model_copy(update={"stale_reason": "an earlier, different failure"})
    assert (await poll(other, 1)).type == ERR_UPDATE_ROLLED_BACK


async def test_a_rolled_back_update_is_told_and_the_old_config_serves(
    temporal_client: Client, catalog_db, tmp_path: Path
) -> None:
    """The warm-up's update rolled back: operators hear of it (a `failed` record and
    notification with SageMaker's reason), then the old config serves and callers are served;
    the capacity step gives the old fleet its autoscaling back (the update deregistered it)."""
    backend = RollingBackBackend(tmp_path)
    async with running_harness(temporal_client, catalog_db, tmp_path, backend, TIMINGS) as h:
        app = h.new_app()
        st = await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
        assert st.ready and st.instance_count == 1 and st.current_state == ThermalState.WARM
        assert backend.capacity_calls == [(st.endpoint_name, 1)]
        rows = await h.rows(
            "SELECT kind, payload->>'error' AS error FROM notifications "
            "WHERE app_id = :a ORDER BY id",
            a=app,
        )
        assert [r["kind"] for r in rows] == [
            "thermal.warmup_started",
            "thermal.failed",
            "thermal.ready",
        ]
        told = rows[1]["error"]
        assert REASON in told and "rolled back" in told and "the next create" in told, told
        # Kept where `thermal show` and the record say why the old config serves.
        assert (await h.control.status(app, ENV, MODEL)).last_error == told
        [row] = await h.rows("SELECT last_error FROM thermal_states WHERE app_id = :a", a=app)
        assert row["last_error"] == told
        await _keep_history(h, thermal_workflow_id(app, ENV, MODEL), "thermal-update-rolled-back")


async def test_autoscaling_owed_after_a_rollback_is_registered_after_the_backoff(
    temporal_client: Client, catalog_db, tmp_path: Path
) -> None:
    """The capacity step after the rollback fails too: the model serves on with the error and
    backs off; the retry makes the capacity call although the count is right (the rolled-back
    update deregistered the old fleet's autoscaling, and nothing else would register it)."""
    backend = RollingBackBackend(tmp_path, refuse_capacity=1)
    timings = TIMINGS.model_copy(update={"capacity_retry_seconds": 1.0})
    async with running_harness(temporal_client, catalog_db, tmp_path, backend, timings) as h:
        app = h.new_app()
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
        # Both are told: the refused capacity step and why the old config serves on (the
        # second used to replace the first in last_error).
        told = str(failed.value.cause)
        assert "autoscaling target refused" in told and REASON in told, told
        assert "previous config serves on" in told, told
        [row] = await h.rows("SELECT last_error FROM thermal_states WHERE app_id = :a", a=app)
        assert REASON in row["last_error"] and "refused" in row["last_error"], row

        async def registered() -> bool:
            st = await h.control.status(app, ENV, MODEL)
            return len(backend.capacity_calls) == 2 and "refused" not in (st.last_error or "")

        await wait_for(registered)
        st = await h.control.status(app, ENV, MODEL)
        # As after a rollback whose capacity step succeeded at once: the reason stays shown.
        assert REASON in (st.last_error or "") and "the next create" in (st.last_error or "")
        assert st.ready and st.current_state == ThermalState.WARM and st.instance_count == 1
        wf_id = thermal_workflow_id(app, ENV, MODEL)
        await _keep_history(h, wf_id, "thermal-update-rolled-back-capacity-failed")


def test_owed_autoscaling_is_carried_across_continue_as_new() -> None:
    """The next run makes the owed capacity step too (the snapshot carries the debt)."""
    snap = ThermalSnapshot(
        target_state=ThermalState.WARM, current_state=ThermalState.WARM, instance_count=1
    )
    inp = ModelThermalInput(app_id="a", environment="e", model_id=MODEL, snapshot=snap)
    assert ModelThermalWorkflow(inp).autoscaling_owed is False
    owed = snap.model_copy(update={"autoscaling_owed": True})
    assert ModelThermalWorkflow(inp.model_copy(update={"snapshot": owed})).autoscaling_owed
