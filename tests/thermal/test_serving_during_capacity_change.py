"""A caller of a model that serves is answered while the model's workflow changes its capacity
(SageMaker keeps serving an endpoint that is Updating, for minutes): it is not held until the
scale-out or scale-in ends. What it is told is what Postgres shows (the change's start was
recorded before callers go through). RADIANT_RECORD_HISTORIES=1 keeps the run as a guard
history (see GUARD_HISTORIES in test_replay.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from activities.backends.base import EndpointInfo
from activities.backends.local import LocalStandInBackend
from models_catalog.types import ThermalState
from tests.fixtures.worker import running_harness
from tests.thermal.test_capacity_and_leases import ENV, MODEL
from tests.thermal.test_warmup_and_failure_edges import _keep_history
from workflows.thermal_types import SetTargetRequest, WarmUpRequest


class GatedCapacity(LocalStandInBackend):
    """While `gate` is set and not yet opened, a capacity change waits before it happens:
    the workflow's transition stays under way for as long as the test needs."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gate: asyncio.Event | None = None
        self.changing = asyncio.Event()  # a capacity change waits at the gate

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        if self.gate is not None and not self.gate.is_set():
            self.changing.set()
            await self.gate.wait()
        return await super().set_capacity(name, instance_count, min_instances, max_instances)


async def test_a_caller_is_answered_while_a_serving_model_scales_out(
    temporal_client: Client, catalog_db, tmp_path: Path
) -> None:
    """WARM (1 instance) to HOT (2): while the scale-out is under way, a warm-up returns at
    once, ready on the instance that serves, and says a transition runs; Postgres shows the
    same. Before, it waited until the scale-out ended."""
    backend = GatedCapacity(tmp_path)
    async with running_harness(temporal_client, catalog_db, tmp_path, backend) as h:
        app = h.new_app()
        st = await asyncio.wait_for(
            h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM)), 60
        )
        assert st.ready and st.instance_count == 1
        backend.gate = asyncio.Event()
        hot = asyncio.create_task(
            h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT))
        )
        try:
            await asyncio.wait_for(backend.changing.wait(), 30)
            st = await asyncio.wait_for(
                h.control.warm_up(app, ENV, MODEL, WarmUpRequest(requester="job")), 10
            )
            assert (st.ready, st.transitioning, st.instance_count) == (True, True, 1)
            [row] = await h.rows(
                "SELECT instance_count, transitioning FROM thermal_states WHERE app_id = :a",
                a=app,
            )
            assert (row["instance_count"], row["transitioning"]) == (1, True)
            assert not hot.done()  # the scale-out is still held at the gate
        finally:
            backend.gate.set()
        st = await asyncio.wait_for(hot, 60)
        assert (st.current_state, st.instance_count, st.transitioning) == (
            ThermalState.HOT,
            2,
            False,
        )
        await _keep_history(h, app, "thermal-served-during-capacity-change")
