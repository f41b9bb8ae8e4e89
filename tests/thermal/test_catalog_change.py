"""A catalog change (a new image, instance type or limits, deployed with the workers) reaches a
model's endpoint at its next create: the thermal workflow reads the model's spec again before
each create instead of keeping the one its run started with (for weeks, until it continued as
new). RADIANT_RECORD_HISTORIES=1 keeps the guard history of SPEC_BEFORE_CREATE_PATCH."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from models_catalog.catalog import load_catalog
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import running_harness
from tests.thermal.test_capacity_and_leases import _keep_history
from workflows.thermal_types import thermal_workflow_id

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
