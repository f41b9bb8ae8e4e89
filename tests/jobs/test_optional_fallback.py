"""An optional model that replaces a required one (same specialty) and then cannot be held, or
whose call fails, degrades the job to the required model instead of failing it (DESIGN 5:
optional models degrade gracefully). Found by a review of the job orchestration: the job failed
with the optional model's error although the required model was available.

RADIANT_RECORD_HISTORIES=1 keeps the histories under tests/histories/ (guards of
FALLBACK_PATCH, replayed by tests/thermal/test_replay.py)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.backends.errors import ModelError
from tests.fixtures.worker import ThermalHarness
from tests.jobs.test_job_runtime import (
    record_history,
    refuse_calls,
    turned_off_behind_the_mirror,
)
from tests.jobs.test_service_jobs import prepare, start_job, usage_rows


async def test_a_replacement_that_cannot_be_held_falls_back(thermal: ThermalHarness, tenants):
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    await turned_off_behind_the_mirror(h, app, "yolov8x")  # after the plan read the mirror
    handle = await start_job(h, app, big.name, "perception/detect", optional_models=["yolov8x"])
    try:
        result = await asyncio.wait_for(handle.result(), 90)
    finally:
        await record_history(handle, "job-replacement-not-held")
    assert result.models_used == ["yolov8m"] and [c.model_id for c in result.calls] == ["yolov8m"]
    assert result.degraded and "yolov8x could not be held" in (result.degraded_reason or "")
    assert "ran on yolov8m" in (result.degraded_reason or "")
    rows = await usage_rows(h, big.id, handle.id)
    assert sorted((r["kind"], r["model_id"]) for r in rows) == [
        ("model_invocation", "yolov8m"),
        ("service_charge", None),
    ]
    [charge] = [r for r in rows if r["kind"] == "service_charge"]
    assert charge["metadata"]["degraded"] and charge["metadata"]["dropped"] == ["yolov8x"]
    assert "yolov8m" in charge["metadata"]["models"]
    status = await h.control.status(app, "test", "yolov8m")
    assert status.in_flight == 0  # the fallback's lease went with the job


async def test_a_replacement_whose_call_fails_falls_back(
    thermal: ThermalHarness, tenants, monkeypatch
):
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    refuse_calls(h, monkeypatch, "yolov8x")
    handle = await start_job(h, app, big.name, "perception/detect", optional_models=["yolov8x"])
    try:
        result = await asyncio.wait_for(handle.result(), 90)
    finally:
        await record_history(handle, "job-replacement-call-failed")
    assert result.models_used == ["yolov8m"] and [c.model_id for c in result.calls] == ["yolov8m"]
    assert "yolov8x failed" in (result.degraded_reason or "")
    assert "ran on yolov8m" in (result.degraded_reason or "")
    for model in ("yolov8m", "yolov8x"):
        assert (await h.control.status(app, "test", model)).in_flight == 0


async def test_a_chained_replacement_whose_call_fails_falls_back(
    thermal: ThermalHarness, tenants, monkeypatch
):
    """perception/analyze with sam2 replacing the required segmenter mobilesam: sam2 fails on
    its first box, so mobilesam segments that box and the rest; the job is degraded, not
    failed (before, the chained step had no fallback and the job failed)."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    refuse_calls(h, monkeypatch, "sam2")
    handle = await start_job(h, app, big.name, "perception/analyze", optional_models=["sam2"])
    try:
        result = await asyncio.wait_for(handle.result(), 90)
    finally:
        await record_history(handle, "job-chained-replacement-call-failed")
    detections = result.output["primary"]["detections"]
    assert detections, "the detector found nothing: nothing to segment"
    segments = min(len(detections), 5)
    assert [c.model_id for c in result.calls] == ["yolov8m"] + ["mobilesam"] * segments
    assert result.models_used == ["yolov8m", "mobilesam"]
    assert result.degraded and "sam2 failed" in (result.degraded_reason or "")
    assert "ran on mobilesam" in (result.degraded_reason or "")
    for model in ("mobilesam", "sam2"):
        assert (await h.control.status(app, "test", model)).in_flight == 0


async def test_a_chained_replacement_failing_on_a_later_box_is_dropped_in_the_charge(
    thermal: ThermalHarness, tenants, monkeypatch
):
    """sam2 segments the first box, then fails: mobilesam segments the rest. The result and
    the charge row agree: degraded, sam2 dropped (ran on mobilesam), both models invoked."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    invoke, served = h.backend.invoke, []

    async def second_refused(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.endswith("-sam2"):
            served.append(name)
            if len(served) > 1:
                raise ModelError("the model refused the prompt box (HTTP 400, injected)")
        return await invoke(name, *args, **kwargs)

    monkeypatch.setattr(h.backend, "invoke", second_refused)
    handle = await start_job(h, app, big.name, "perception/analyze", optional_models=["sam2"])
    result = await asyncio.wait_for(handle.result(), 90)
    segments = min(len(result.output["primary"]["detections"]), 5)
    assert segments >= 2, "the stand-in detector must find two objects for this test"
    assert [c.model_id for c in result.calls] == (
        ["yolov8m", "sam2"] + ["mobilesam"] * (segments - 1)
    )
    assert result.degraded and "ran on mobilesam" in (result.degraded_reason or "")
    rows = await usage_rows(h, big.id, handle.id)
    [charge] = [r for r in rows if r["kind"] == "service_charge"]
    assert charge["metadata"]["degraded"] and charge["metadata"]["dropped"] == ["sam2"]
    assert charge["metadata"]["models"] == ["yolov8m", "sam2", "mobilesam"]


async def test_a_job_failed_by_a_required_model_reports_that_model(
    thermal: ThermalHarness, tenants
):
    """yolov8x (an optional replacement of the detector yolov8m, first in plan order) and
    mobilesam (the required segmenter) both cannot be held: the job reports mobilesam's
    refusal, since yolov8x's alone would have fallen back (it reported yolov8x's)."""
    big, _ = tenants
    h = thermal
    app = h.new_app()
    await prepare(h, app, "perception", [])
    for model in ("yolov8x", "mobilesam"):
        await turned_off_behind_the_mirror(h, app, model)
    handle = await start_job(h, app, big.name, "perception/analyze", optional_models=["yolov8x"])
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 90)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ModelOff"
    assert "mobilesam" in cause.message and "yolov8x" not in cause.message, cause.message
