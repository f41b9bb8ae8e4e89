"""`radiant submit` / `radiant jobs` against a real worker: mistakes are one line and exit 2."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from models_catalog.types import ThermalState
from tests.fixtures.worker import ThermalHarness
from workers.cli.main import app as cli_app
from workers.settings import get_settings
from workflows.thermal_types import SetTargetRequest, thermal_workflow_id


async def cli(h: ThermalHarness, monkeypatch, *args: str):
    monkeypatch.setenv("RADIANT_TEMPORAL_ADDRESS", h.client.service_client.config.target_host)
    monkeypatch.setenv("RADIANT_TEMPORAL_NAMESPACE", h.client.namespace)
    monkeypatch.setenv("RADIANT_TASK_QUEUE", h.task_queue)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(h.settings.data_dir))
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))
    finally:
        get_settings.cache_clear()


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
