"""Every operation of every service end to end on the local stand-in; rejections before any cost;
graceful degradation; usage rows exactly one per charge and per invocation."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.db.tenancy import tenant_transaction
from activities.service_states import refresh_service_states
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness
from workers.samples import SAMPLES
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import (
    ERR_INVALID_INPUT,
    ERR_MODEL_UNAVAILABLE,
    ERR_SERVICE_UNAVAILABLE,
    ERR_TIER_TOO_LOW,
    ERR_UNKNOWN_OPERATION,
    ERR_UNKNOWN_SERVICE,
    InputRef,
    ServiceRequest,
    ServiceResult,
    job_workflow_id,
)
from workflows.thermal_types import SetTargetRequest

CATALOG = load_catalog()
HISTORIES = Path(__file__).resolve().parent.parent / "histories"
OPERATIONS = [f"{s.id}/{op.id}" for s, op in CATALOG.operations()]


async def prepare(h: ThermalHarness, app: str, service: str, models: list[str]) -> None:
    """An admin enables the service and turns its OFF-by-default models to COLD."""
    await refresh_service_states(h.engine, CATALOG, app, "test", set_disabled={service: False})
    for m in models:
        if CATALOG.model(m).thermal.default_state == ThermalState.OFF:
            await h.control.set_target(app, "test", m, SetTargetRequest(state=ThermalState.COLD))


async def start_job(h: ThermalHarness, app: str, tenant: str, key: str, **kw) -> WorkflowHandle:
    service, operation = key.split("/", 1)
    request_id = uuid.uuid4().hex[:10]
    req = ServiceRequest(
        tenant=tenant,
        app_id=app,
        environment="test",
        request_id=request_id,
        service=service,
        operation=operation,
        input=kw.pop("input", None) or InputRef(uri=str(SAMPLES.get(key, "/x"))),
        **kw,
    )
    return await h.client.start_workflow(
        ServiceJobWorkflow.run,
        req,
        id=job_workflow_id(tenant, service, operation, request_id),
        task_queue=h.task_queue,
    )


async def submit(h: ThermalHarness, app: str, tenant: str, key: str, **kw) -> ServiceResult:
    return await (await start_job(h, app, tenant, key, **kw)).result()


async def usage_rows(h: ThermalHarness, tenant_id, workflow_id: str | None = None) -> list[dict]:
    async with tenant_transaction(h.engine, tenant_id) as conn:
        from sqlalchemy import text

        rows = await conn.execute(
            text("SELECT * FROM usage_ledger WHERE CAST(:w AS text) IS NULL OR workflow_id = :w"),
            {"w": workflow_id},
        )
        return [dict(r) for r in rows.mappings()]


@pytest.mark.parametrize("key", OPERATIONS)
async def test_operation_end_to_end(thermal: ThermalHarness, tenants, key: str):
    big, _ = tenants
    service_id, op_id = key.split("/", 1)
    op = CATALOG.operation(service_id, op_id)
    app = thermal.new_app()
    await prepare(
        thermal, app, service_id, CATALOG.service(service_id).required_models + op.required_models
    )
    result = await submit(thermal, app, big.name, key)

    assert result.models_used == op.required_models and not result.degraded
    assert result.output is not None
    price = CATALOG.service(service_id).pricing.price_for(op.unit)
    assert result.billed == price * result.units and result.units > 0
    rows = await usage_rows(thermal, big.id, result.workflow_id)
    charges = [r for r in rows if r["kind"] == "service_charge"]
    invocations = [r for r in rows if r["kind"] == "model_invocation"]
    assert len(charges) == 1 and charges[0]["billed_amount"] == result.billed
    assert len(invocations) == len(result.calls) >= 1
    assert sum(r["internal_cost"] for r in invocations) == result.internal_cost
    for call in result.calls:
        assert call.mode == ("async" if op.long_running else "sync")
        assert call.units == result.units  # each invocation is costed on the job's units
    if os.environ.get("RADIANT_RECORD_HISTORIES"):  # replay fixtures for tests/thermal/test_replay
        history = await thermal.client.get_workflow_handle(result.workflow_id).fetch_history()
        (HISTORIES / f"job-{key.replace('/', '-')}.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )


async def test_analyze_chains_detect_then_segment(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    result = await submit(thermal, app, big.name, "perception/analyze")
    detections = result.output["primary"]["detections"]
    segments = [s for s in result.output["steps"] if s["model_id"] == "mobilesam"]
    assert len(segments) == min(len(detections), 5)
    assert [c.model_id for c in result.calls] == ["yolov8m"] + ["mobilesam"] * len(segments)


async def test_optional_model_unavailable_degrades(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    await thermal.control.set_target(
        app, "test", "yolov8x", SetTargetRequest(state=ThermalState.OFF)
    )
    result = await submit(thermal, app, big.name, "perception/detect", optional_models=["yolov8x"])
    assert result.degraded and "yolov8x is OFF" in result.degraded_reason
    assert result.models_used == ["yolov8m"]
    # ...and an available optional model replaces the required one of its specialty
    chosen = await submit(thermal, app, big.name, "perception/detect", optional_models=["yolov11x"])
    assert chosen.models_used == ["yolov11x"] and not chosen.degraded


REJECTIONS = [
    ("nosuch/detect", {}, ERR_UNKNOWN_SERVICE, "nosuch"),
    ("perception/nosuch", {}, ERR_UNKNOWN_OPERATION, "nosuch"),
    ("scientific/protein/embed", {"tenant": "small"}, ERR_TIER_TOO_LOW, "tier 3"),
    ("perception/detect", {"disable": True}, ERR_SERVICE_UNAVAILABLE, "DISABLED"),
    ("medical/segment", {"models_off": True}, ERR_SERVICE_UNAVAILABLE, "medsam is OFF"),
    ("scientific/protein/fold", {"keep_off": True}, ERR_MODEL_UNAVAILABLE, "alphafold2"),
    (
        "perception/detect",
        {"input": InputRef(uri=str(SAMPLES["medical/transcribe"]))},
        ERR_INVALID_INPUT,
        "audio/wav",
    ),
    ("perception/detect", {"input": InputRef(inline_base64="")}, ERR_INVALID_INPUT, "empty"),
    (
        "scientific/protein/embed",
        {"input": InputRef(inline_base64="PmJhZApNS1QxUQo=")},  # ">bad\nMKT1Q"
        ERR_INVALID_INPUT,
        "'1'",
    ),
    (
        "perception/detect",
        {"input": InputRef(uri="/nonexistent/cat.png")},
        "InputNotFound",
        "cat.png",
    ),
    ("perception/detect", {"optional_models": ["sam2"]}, ERR_INVALID_INPUT, "not an option"),
    ("perception/detect", {"options": {"min_scor": 0.5}}, ERR_INVALID_INPUT, "'min_scor'"),
    ("perception/detect", {"options": {"min_score": "x"}}, ERR_INVALID_INPUT, "must be a number"),
    ("geospatial/classify", {"options": {"band_order": ["red"]}}, ERR_INVALID_INPUT, "green, nir"),
]


@pytest.mark.parametrize(("key", "case", "kind", "words"), REJECTIONS)
async def test_rejected_before_any_cost(thermal: ThermalHarness, tenants, key, case, kind, words):
    big, small = tenants
    tenant = small if case.get("tenant") == "small" else big
    app = thermal.new_app()
    service = key.split("/", 1)[0]
    if service in CATALOG.services and case.get("models_off"):
        await prepare(thermal, app, service, [])  # enabled, but its models stay OFF
    elif service in CATALOG.services:
        op = CATALOG.service(service).find_operation(key.split("/", 1)[1])
        models = [] if op is None or case.get("keep_off") else op.required_models
        await prepare(thermal, app, service, CATALOG.service(service).required_models + models)
        if case.get("disable"):
            await refresh_service_states(
                thermal.engine, CATALOG, app, "test", set_disabled={service: True}
            )
    extra = {k: v for k, v in case.items() if k in ("input", "optional_models", "options")}
    before = len(await usage_rows(thermal, tenant.id))
    with pytest.raises(WorkflowFailureError) as info:
        await submit(thermal, app, tenant.name, key, **extra)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert cause.type == kind, cause.message
    assert words in cause.message
    assert len(await usage_rows(thermal, tenant.id)) == before  # nothing charged
    # no endpoint was started for a rejected job
    assert not [e for e in await thermal.backend.list_endpoints(f"radiant-{app}-")]


async def test_usage_is_invisible_to_other_tenants(thermal: ThermalHarness, tenants):
    big, small = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    result = await submit(thermal, app, big.name, "perception/detect")
    assert await usage_rows(thermal, small.id, result.workflow_id) == []
    assert len(await usage_rows(thermal, big.id, result.workflow_id)) == 2


async def test_cancelled_job_is_not_charged(thermal: ThermalHarness, tenants):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(
        thermal, app, "scientific", ["esm2-3b", "alphafold2"]
    )  # the service needs esm2-3b
    request_id = uuid.uuid4().hex[:8]
    req = ServiceRequest(
        tenant=big.name,
        app_id=app,
        environment="test",
        request_id=request_id,
        service="scientific",
        operation="protein/fold",
        input=InputRef(uri=str(SAMPLES["scientific/protein/fold"])),
    )
    handle = await thermal.client.start_workflow(
        ServiceJobWorkflow.run,
        req,
        id=job_workflow_id(big.name, "scientific", "protein/fold", request_id),
        task_queue=thermal.task_queue,
    )

    async def waiting_or_invoking() -> bool:  # cancel while it waits for the model or its result
        stage = (await handle.query(ServiceJobWorkflow.progress))["stage"]
        return stage in ("waiting for warm-up", "invoking")

    await wait_for(waiting_or_invoking, every=0.05)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)  # cancelled, not failed otherwise
    assert await usage_rows(thermal, big.id, handle.id) == []


async def test_job_survives_an_endpoint_that_vanished(thermal: ThermalHarness, tenants):
    """Drift the reconcile has not repaired yet: the WARM model's endpoint is gone (e.g. the
    last `radiant up` stopped it). The job has the thermal workflow re-read the backend, warm
    the model again, and succeeds."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    st = await thermal.control.set_target(
        app, "test", "yolov8m", SetTargetRequest(state=ThermalState.WARM)
    )
    await thermal.backend.delete_endpoint(st.endpoint_name)  # behind the workflow's back
    result = await submit(thermal, app, big.name, "perception/detect")
    assert result.models_used == ["yolov8m"] and result.output["detections"]
    info = await thermal.backend.describe_endpoint(st.endpoint_name)
    assert info is not None and info.status == "InService"
