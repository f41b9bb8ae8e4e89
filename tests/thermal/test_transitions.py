"""Every transition pair among the five states, no-ops, concurrency, errors — on real processes."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models_catalog import thermal_policy as policy
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness
from workers.cli.common import failure_message
from workflows.thermal_types import ERR_MODEL_OFF, SetTargetRequest, WarmUpRequest

MODEL = "yolov8n"  # COLD by default, 0-5 instances, small stand-in
STATES = list(ThermalState)


def expected_instances(state: ThermalState) -> int:
    model = load_catalog().model(MODEL)
    limits = policy.limits_from_model(model)
    if state in (ThermalState.WARM, ThermalState.HOT):
        return policy.capacity_for_state(state, limits).desired
    if state == ThermalState.AUTOMATIC:  # no traffic yet: the policy's own answer
        return policy.automatic_decision(
            policy.TrafficStats(), limits, 0.0, 0, in_flight=0
        ).desired_instances
    return 0  # OFF, and COLD while idle


async def assert_consistent(h: ThermalHarness, app: str, state: ThermalState) -> None:
    st = await h.control.status(app, "test", MODEL)
    want = expected_instances(state)
    assert st.current_state == state and st.target_state == state
    assert st.instance_count == want
    assert not st.transitioning
    info = await h.backend.describe_endpoint(st.endpoint_name)
    assert (info.instance_count if info else 0) == want
    if want:
        assert info is not None and info.status == "InService"
    [row] = await h.rows(
        "SELECT * FROM thermal_states WHERE app_id = :a AND model_id = :m", a=app, m=MODEL
    )
    assert row["current_state"] == state.value and row["instance_count"] == want
    open_intervals = await h.rows(
        "SELECT instance_count FROM endpoint_uptime WHERE app_id = :a AND ended_at IS NULL", a=app
    )
    assert [r["instance_count"] for r in open_intervals] == ([want] if want else [])


@pytest.mark.parametrize(
    ("first", "second"), list(itertools.product(STATES, STATES)), ids=lambda s: s.value
)
async def test_transition_pair(thermal: ThermalHarness, first: ThermalState, second: ThermalState):
    app = thermal.new_app()
    await thermal.control.set_target(app, "test", MODEL, SetTargetRequest(state=first))
    await assert_consistent(thermal, app, first)
    before = (await thermal.control.status(app, "test", MODEL)).transitions
    status = await thermal.control.set_target(app, "test", MODEL, SetTargetRequest(state=second))
    if second == ThermalState.COLD and status.instance_count > 0:
        # Turning a running model COLD starts its idle window; it scales to zero after it.
        assert first in (ThermalState.WARM, ThermalState.HOT) and status.idle_deadline

        async def settled() -> bool:  # scaled in, and recorded too
            st = await thermal.control.status(app, "test", MODEL)
            return st.instance_count == 0 and not st.transitioning

        await wait_for(settled)
    await assert_consistent(thermal, app, second)
    if first == second:  # a repeated identical request is a no-op: nothing recorded, nothing run
        assert (await thermal.control.status(app, "test", MODEL)).transitions == before


async def test_concurrent_requests_are_serialized(thermal: ThermalHarness):
    app = thermal.new_app()
    calls = [
        thermal.control.set_target(app, "test", MODEL, SetTargetRequest(state=s))
        for s in (ThermalState.WARM, ThermalState.HOT, ThermalState.WARM, ThermalState.HOT)
    ] + [thermal.control.warm_up(app, "test", MODEL, WarmUpRequest()) for _ in range(3)]
    await asyncio.gather(*calls)
    final = await thermal.control.status(app, "test", MODEL)
    assert final.target_state in (ThermalState.WARM, ThermalState.HOT)
    await thermal.control.set_target(app, "test", MODEL, SetTargetRequest(state=ThermalState.HOT))
    await assert_consistent(thermal, app, ThermalState.HOT)
    endpoints = [
        e for e in await thermal.backend.list_endpoints("radiant-") if app in e.endpoint_name
    ]
    assert len(endpoints) == 1


async def test_off_model_warm_up_is_rejected(thermal: ThermalHarness):
    app = thermal.new_app()
    # alphafold2 is OFF by default in the catalog
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await thermal.control.warm_up(app, "test", "alphafold2", WarmUpRequest())
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ERR_MODEL_OFF
    assert "alphafold2 is OFF" in cause.message
    assert (
        await thermal.backend.describe_endpoint(
            (await thermal.control.status(app, "test", "alphafold2")).endpoint_name
        )
        is None
    )


@pytest.mark.parametrize("model_id", ["no-such-model", "llama-3.3-70b"])
async def test_unknown_or_non_deployable_model_fails_clearly(
    thermal: ThermalHarness, model_id: str
):
    app = thermal.new_app()
    with pytest.raises(Exception) as info:  # noqa: B017 - the message is what matters
        await asyncio.wait_for(thermal.control.warm_up(app, "test", model_id, WarmUpRequest()), 30)
    assert model_id in failure_message(info.value)
