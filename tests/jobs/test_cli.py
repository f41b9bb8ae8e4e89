"""`radiant submit` / `radiant jobs` against a real worker: mistakes are one line and exit 2."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from models_catalog.types import ThermalState
from tests.fixtures.cli import invoke_cli
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness
from tests.jobs.test_service_jobs import prepare, start_job
from workers.samples import SAMPLES
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import InputRef, ServiceRequest, job_workflow_id
from workflows.thermal_types import SetTargetRequest, thermal_workflow_id

cli = invoke_cli  # the CLI against the harness's Temporal, database and task queue


async def test_jobs_show_of_another_workflow_type(thermal: ThermalHarness, monkeypatch):
    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.COLD)
    )
    res = await cli(
        thermal, monkeypatch, "jobs", "show", thermal_workflow_id(app, "test", "yolov8n")
    )
    assert res.exit_code == 2, res.output
    assert "is a ModelThermalWorkflow, not a service job" in res.output
    assert "Traceback" not in res.output


async def test_submit_of_a_missing_inline_file(thermal: ThermalHarness, tenants, monkeypatch):
    big, _ = tenants
    res = await cli(
        thermal, monkeypatch, "submit", "perception", "detect", "--tenant", big.name,
        "--input", "inline:/nonexistent/cat.png",
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "cannot read the input /nonexistent/cat.png" in res.output
    assert "Traceback" not in res.output


def one_error_line(res) -> str:
    """The refusal: exit 2, nothing on stdout, exactly one line on stderr."""
    assert res.exit_code == 2, res.output
    assert res.stdout == "", res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


SUBMIT_REFUSALS = [
    ("nosvc", "detect", [], "unknown service 'nosvc'"),
    ("perception", "nosuch", [], "unknown operation 'nosuch' of service 'perception'"),
    ("perception", "detect", ["--model", "nosuch"], "unknown model 'nosuch'"),
    ("perception", "detect", ["--model", "sam2"], "sam2 is not an option of perception/detect"),
    ("perception", "detect", ["--option", "min_scor=0.5"], "has no option 'min_scor'"),
    ("perception", "detect", ["--option", "min_score=x"], "options.min_score of perception/detect"),
]


@pytest.mark.parametrize(("service", "operation", "extra", "words"), SUBMIT_REFUSALS)
async def test_submit_without_wait_is_refused_before_any_workflow(
    thermal: ThermalHarness, tenants, monkeypatch, service, operation, extra, words
):
    big, _ = tenants
    request_id = uuid.uuid4().hex[:10]
    res = await cli(
        thermal, monkeypatch, "submit", service, operation, "--tenant", big.name,
        "--input", str(SAMPLES["perception/detect"]), "--request-id", request_id, *extra,
    )  # fmt: skip
    assert words in one_error_line(res)
    # no workflow was started: the would-be job id is unknown to Temporal
    handle = thermal.client.get_workflow_handle(
        job_workflow_id(big.name, service, operation, request_id)
    )
    with pytest.raises(RPCError) as info:
        await handle.describe()
    assert info.value.status == RPCStatusCode.NOT_FOUND


async def test_jobs_cancel_of_another_workflow_type(thermal: ThermalHarness, monkeypatch):
    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.COLD)
    )
    workflow_id = thermal_workflow_id(app, "test", "yolov8n")
    res = await cli(thermal, monkeypatch, "jobs", "cancel", workflow_id)
    line = one_error_line(res)
    assert f"{workflow_id} is a ModelThermalWorkflow, not a service job" in line
    desc = await thermal.client.get_workflow_handle(workflow_id).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING  # left alone


async def test_jobs_cancel_of_a_completed_job(thermal: ThermalHarness, tenants, monkeypatch):
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    handle = await start_job(thermal, app, big.name, "perception/detect")
    await handle.result()
    res = await cli(thermal, monkeypatch, "jobs", "cancel", handle.id)
    assert f"{handle.id} already ended: COMPLETED; nothing to cancel" in one_error_line(res)


async def idle_job(h: ThermalHarness) -> str:
    """A job started on a task queue no worker polls: it stays RUNNING until ended by hand."""
    request_id = uuid.uuid4().hex[:10]
    req = ServiceRequest(
        tenant="idle", app_id="idle", environment="test", request_id=request_id,
        service="perception", operation="detect", input=InputRef(uri="/x"),
    )  # fmt: skip
    workflow_id = job_workflow_id("idle", "perception", "detect", request_id)
    await h.client.start_workflow(
        ServiceJobWorkflow.run, req, id=workflow_id, task_queue=f"idle-{request_id}"
    )
    return workflow_id


async def test_jobs_cancel_of_a_running_job(thermal: ThermalHarness, monkeypatch):
    workflow_id = await idle_job(thermal)
    res = await cli(thermal, monkeypatch, "jobs", "cancel", workflow_id)
    assert res.exit_code == 0, res.output
    assert f"cancellation requested for {workflow_id}" in res.stdout
    await thermal.client.get_workflow_handle(workflow_id).terminate("test done")


async def test_jobs_show_of_a_failed_job_says_why(thermal: ThermalHarness, monkeypatch):
    app = thermal.new_app()
    tenant = f"nosuch-{uuid.uuid4().hex[:6]}"  # the plan refuses it: the job fails at once
    handle = await start_job(thermal, app, tenant, "perception/detect")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    res = await cli(thermal, monkeypatch, "jobs", "show", handle.id, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "FAILED"
    assert out["error"].startswith(f"unknown tenant {tenant!r}"), out


async def test_jobs_show_of_a_terminated_job_is_just_the_status(
    thermal: ThermalHarness, monkeypatch
):
    workflow_id = await idle_job(thermal)
    await thermal.client.get_workflow_handle(workflow_id).terminate("test done")
    res = await cli(thermal, monkeypatch, "jobs", "show", workflow_id, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "TERMINATED" and "error" not in out and "result" not in out


async def test_jobs_list_finds_a_tenants_jobs_by_name_or_id(
    thermal: ThermalHarness, tenants, monkeypatch
):
    """A job carries the tenant spelling it was submitted with (here the name): listing by
    the tenant's id finds it too; an unknown tenant is an error, not an empty list."""
    big, _ = tenants
    app = thermal.new_app()
    await prepare(thermal, app, "perception", [])
    handle = await start_job(thermal, app, big.name, "perception/detect")
    await handle.result()

    async def listed_by_id() -> bool:
        res = await cli(thermal, monkeypatch, "jobs", "list", "--tenant", str(big.id), "--json",
                        "--limit", "1000")  # fmt: skip
        assert res.exit_code == 0, res.output
        return handle.id in {j["workflow_id"] for j in json.loads(res.stdout)}

    await wait_for(listed_by_id)  # visibility is eventually consistent
    res = await cli(thermal, monkeypatch, "jobs", "list", "--tenant", "no-such-tenant")
    assert res.exit_code == 2 and "no-such-tenant" in one_error_line(res)


def test_a_long_result_is_cut_after_rendering(capsys):
    """`submit --wait` prints the output's start; cutting the JSON text before rendering it
    made a long result (a protein fold) crash after the job had completed."""
    from decimal import Decimal
    from types import SimpleNamespace

    from workers.cli.jobs import OUTPUT_PREVIEW_CHARS, _print_result

    result = SimpleNamespace(
        service="scientific", operation="protein/fold", units=Decimal(1), unit="request",
        billed=Decimal("0.5"), models_used=["alphafold2"], degraded=False,
        output={"pdb": "ATOM " * OUTPUT_PREVIEW_CHARS},
    )  # fmt: skip
    _print_result(result)
    out = capsys.readouterr().out
    assert "done scientific/protein/fold" in out and "(cut; the whole result" in out


def test_a_jobs_billed_amount_is_rounded_as_the_usage_report_rounds(capsys) -> None:
    """Half up, like `radiant usage` (display_money), not Python's half-to-even `:.4f`, so one
    charge never shows as 0.0012 here and 0.0013 there."""
    from decimal import Decimal
    from types import SimpleNamespace

    from workers.cli.jobs import _print_result

    result = SimpleNamespace(
        service="perception", operation="detect", units=Decimal(1), unit="image",
        billed=Decimal("0.00125"), models_used=["yolov8n"], degraded=False, output={},
    )  # fmt: skip
    _print_result(result)
    assert "billed 0.0013," in capsys.readouterr().out
