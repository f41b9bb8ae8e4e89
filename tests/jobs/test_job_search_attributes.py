"""Jobs are findable by tenant, app, environment, service, operation and model in the Web UI,
however they were started: by the typed client (attributes set at start, one upsert for the
model) or with plain JSON from the Temporal CLI (the workflow upserts what is missing)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from tests.fixtures.worker import ThermalHarness
from tests.jobs.test_service_jobs import prepare
from workers.samples import SAMPLES
from workers.temporal import temporal_cli
from workflows import search_attributes as sa
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import InputRef, ServiceRequest, ServiceResult, job_workflow_id

KEY = "perception/detect"


def _request(app: str, tenant: str) -> ServiceRequest:
    return ServiceRequest(
        tenant=tenant,
        app_id=app,
        environment="test",
        request_id=uuid.uuid4().hex[:10],
        service="perception",
        operation="detect",
        input=InputRef(uri=str(SAMPLES[KEY])),
    )


async def _attributes_and_upserts(handle: WorkflowHandle) -> tuple[dict[str, str], int]:
    desc = await handle.describe()
    found = {
        pair.key.name: pair.value
        for pair in desc.typed_search_attributes
        if pair.key.name.startswith("Radiant")  # the server adds BuildIds
    }
    history = await handle.fetch_history()
    # Only the job's own upserts: each patch marker upserts TemporalChangeVersion too.
    upserted = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    upserts = sum(1 for fields in upserted if any(k.startswith("Radiant") for k in fields))
    return found, upserts


def _expected(req: ServiceRequest, model: str) -> dict[str, str]:
    return {
        "RadiantTenant": req.tenant,
        "RadiantApp": req.app_id,
        "RadiantEnvironment": req.environment,
        "RadiantService": req.service,
        "RadiantOperation": req.operation,
        "RadiantModel": model,
    }


async def test_client_started_job_upserts_only_the_model(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", ["yolov8m"])
    req = _request(app, big.name)
    handle = await thermal.client.start_workflow(
        ServiceJobWorkflow.run,
        req,
        id=job_workflow_id(req.tenant, req.service, req.operation, req.request_id),
        task_queue=thermal.task_queue,
        search_attributes=sa.job_search_attributes(req),
    )
    result = await handle.result()
    found, upserts = await _attributes_and_upserts(handle)
    assert found == _expected(req, result.models_used[0])
    assert upserts == 1  # the model, known only after the plan


async def test_plain_json_from_the_temporal_cli(thermal: ThermalHarness, tenants):
    """`temporal workflow start` with plain JSON input, no search attributes: the job runs and
    sets every attribute itself."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", ["yolov8m"])
    req = _request(app, big.name)
    wid = job_workflow_id(req.tenant, req.service, req.operation, req.request_id)
    payload = {
        "tenant": req.tenant,
        "app_id": app,
        "environment": "test",
        "request_id": req.request_id,
        "service": "perception",
        "operation": "detect",
        "input": {"uri": req.input.uri},
    }
    target = thermal.client.service_client.config.target_host
    cmd = [
        temporal_cli(),
        "workflow",
        "start",
        "--address",
        target,
        "--namespace",
        thermal.client.namespace,
        "--task-queue",
        thermal.task_queue,
        "--type",
        "ServiceJobWorkflow",
        "--workflow-id",
        wid,
        "--input",
        json.dumps(payload),
    ]
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    handle = thermal.client.get_workflow_handle(wid, result_type=ServiceResult)
    result = await handle.result()
    assert result.output is not None and result.models_used
    found, upserts = await _attributes_and_upserts(handle)
    assert found == _expected(req, result.models_used[0])
    assert upserts == 2  # the five known at start, then the model
