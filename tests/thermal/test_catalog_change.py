"""A catalog change (a new image, instance type or limits, deployed with the workers) reaches a
model's endpoint at its next create: the thermal workflow reads the model's spec again before
each create instead of keeping the one its run started with (for weeks, until it continued as
new), and what it then does is the intent of after the read. RADIANT_RECORD_HISTORIES=1 keeps
the guard history of SPEC_BEFORE_CREATE_PATCH."""

from __future__ import annotations

import asyncio

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError

from activities.thermal_activities import RecordKey, ThermalActivities
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, running_harness
from tests.thermal.test_capacity_and_leases import Faults, RecordingBackend, _keep_history
from tests.thermal.test_continue_as_new_carry import LIMIT, _continue_as_new
from workflows.thermal_types import ModelThermalSpec, SetTargetRequest, thermal_workflow_id

MODEL, ENV = "yolov8n", "test"  # COLD by default: scales to zero after the idle time (3 s)


async def test_a_new_image_in_the_catalog_is_deployed_at_the_next_create(
    temporal_client: Client, catalog_db, tmp_path
) -> None:
    catalog = load_catalog()
    async with running_harness(temporal_client, catalog_db, tmp_path, catalog=catalog) as h:
        app = h.new_app()
        first = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL), 60)
        before = await h.backend.describe_endpoint(first.endpoint_name)
        assert before is not None and before.config_name

        async def scaled_to_zero() -> bool:
            return await h.backend.describe_endpoint(first.endpoint_name) is None

        await wait_for(scaled_to_zero)
        model = catalog.models[MODEL]
        catalog.models[MODEL] = model.model_copy(update={"image": f"{model.image}-v2"})

        again = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL), 60)
        after = await h.backend.describe_endpoint(again.endpoint_name)
        assert after is not None and after.config_name != before.config_name
        await _keep_history(
            h, thermal_workflow_id(app, ENV, MODEL), "thermal-spec-read-before-create"
        )


async def test_off_set_while_the_spec_is_re_read_creates_nothing(
    temporal_client: Client, catalog_db, tmp_path, monkeypatch
) -> None:
    """A caller's warm-up re-reads the spec before the create; an admin turns the model OFF
    meanwhile. The intent of after the read decides: no endpoint is made (and none torn down
    again), and the caller is told the model turned OFF."""
    gate, reading, slow = asyncio.Event(), asyncio.Event(), [False]
    original = ThermalActivities.describe_model

    @activity.defn(name="thermal.describe_model")
    async def describe_model(self: ThermalActivities, key: RecordKey) -> ModelThermalSpec:
        key = RecordKey.model_validate(key)  # a function patched in: its hints are not resolved
        if slow[0]:
            reading.set()
            await gate.wait()
        return await original(self, key)

    monkeypatch.setattr(ThermalActivities, "describe_model", describe_model)
    faults = Faults()
    backend = RecordingBackend(tmp_path, faults=faults)
    async with running_harness(temporal_client, catalog_db, tmp_path, backend=backend) as h:
        app = h.new_app()
        await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.COLD))
        slow[0] = True
        warm = asyncio.ensure_future(h.control.warm_up(app, ENV, MODEL))
        await asyncio.wait_for(reading.wait(), 30)
        off = asyncio.ensure_future(
            h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.OFF))
        )

        async def off_asked() -> bool:
            return (await h.control.status(app, ENV, MODEL)).target_state == ThermalState.OFF

        await wait_for(off_asked)
        gate.set()
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await asyncio.wait_for(warm, 30)
        assert "turned OFF" in str(failed.value.cause), failed.value.cause
        st = await asyncio.wait_for(off, 30)
        assert (st.current_state, st.instance_count, st.last_error) == (ThermalState.OFF, 0, None)
        assert faults.creates == [] and faults.deletes == []


async def test_a_running_fleet_bills_the_instance_type_it_was_created_with(
    temporal_client: Client, catalog_db, tmp_path
) -> None:
    """The catalog moves the model to another instance type while its endpoint runs; the
    workflow continues as new (its next run reads the new spec). The fleet still runs the old
    type until its next create, so its uptime intervals (here: after a scale to HOT) bill the
    old type and rate."""
    catalog = load_catalog()
    timings = TIMINGS.model_copy(update={"max_history_events": LIMIT})
    async with running_harness(
        temporal_client, catalog_db, tmp_path, timings=timings, catalog=catalog
    ) as h:
        app = h.new_app()
        warm = SetTargetRequest(state=ThermalState.WARM)
        await asyncio.wait_for(h.control.set_target(app, ENV, MODEL, warm), 60)
        old_type = catalog.models[MODEL].instance_type
        new_type = next(t for t in catalog.instances if t != old_type)
        model = catalog.models[MODEL]
        catalog.models[MODEL] = model.model_copy(update={"instance_type": new_type})
        handle = h.client.get_workflow_handle(thermal_workflow_id(app, ENV, MODEL))
        await _continue_as_new(handle, (await handle.describe()).run_id)
        hot = SetTargetRequest(state=ThermalState.HOT)
        st = await asyncio.wait_for(h.control.set_target(app, ENV, MODEL, hot), 60)
        assert st.instance_count == 2
        rows = await h.rows(
            "SELECT instance_count, instance_type FROM endpoint_uptime WHERE app_id = :a "
            "ORDER BY id",
            a=app,
        )
        assert [(r["instance_count"], r["instance_type"]) for r in rows] == [
            (1, old_type),
            (2, old_type),
        ]
