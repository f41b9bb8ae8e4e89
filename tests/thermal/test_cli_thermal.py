"""`radiant thermal show|warm` against a real worker: OFF refused without --wait too, JSON
that parses, and models no workflow has touched yet."""

from __future__ import annotations

import json

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.cli import invoke_cli
from tests.fixtures.worker import ThermalHarness
from workflows.thermal_types import SetTargetRequest

CATALOG = load_catalog()


async def test_warm_without_wait_refuses_an_off_model(thermal: ThermalHarness, monkeypatch):
    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.OFF)
    )
    res = await invoke_cli(thermal, monkeypatch, "thermal", "warm", "yolov8n", "--app", app,
                           "--env", "test")  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "yolov8n is OFF" in lines[0], res.stderr


async def test_warm_wait_json_prints_only_json(thermal: ThermalHarness, monkeypatch):
    """The live progress goes to stderr: stdout parses as the final status."""
    app = thermal.new_app()
    res = await invoke_cli(thermal, monkeypatch, "thermal", "warm", "yolov8n", "--app", app,
                           "--env", "test", "--wait", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["ready"] and status["instance_count"] >= 1 and status["model_id"] == "yolov8n"
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.OFF)
    )


async def test_show_of_a_model_never_used_here(thermal: ThermalHarness, monkeypatch):
    """No thermal workflow yet: the catalog default, as `thermal list` shows it."""
    app = thermal.new_app()
    res = await invoke_cli(thermal, monkeypatch, "thermal", "show", "esm2-3b", "--app", app,
                           "--env", "test", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    default = CATALOG.model("esm2-3b").thermal.default_state.value
    assert (status["target_state"], status["current_state"]) == (default, default)
    assert (status["instance_count"], status["ready"]) == (0, False)


def test_watch_prints_backlog_and_live_times_alike():
    """Backlog rows carry datetimes, live NOTIFY payloads ISO strings: one format for both."""
    from datetime import UTC, datetime

    from workers.cli.thermal import _iso

    at = datetime(2026, 12, 3, 12, 13, 35, 570000, tzinfo=UTC)
    assert _iso(at) == _iso("2026-12-03T12:13:35.57Z") == "2026-12-03T12:13:35.570Z"


async def test_status_of_a_model_the_worker_cannot_manage_says_why(thermal: ThermalHarness):
    """A model the worker's catalog does not know (its catalog differs from the CLI's): the
    status answers with the workflow's reason at once, not "still starting" until a timeout."""
    from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError

    from workers.cli.thermal import _loaded_status

    app = thermal.new_app()
    with pytest.raises(WorkflowUpdateFailedError):
        await thermal.control.set_target(
            app, "test", "no-such-model", SetTargetRequest(state=ThermalState.COLD)
        )
    with pytest.raises(WorkflowQueryFailedError, match="no-such-model"):
        await _loaded_status(thermal.control, app, "test", "no-such-model", limit_s=5)


async def test_show_of_an_ended_workflow_gives_the_record(thermal: ThermalHarness, monkeypatch):
    """A terminated thermal workflow still answers queries with its last state; the record
    (which a reconcile may have corrected since) is the truth."""
    from sqlalchemy import text

    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.OFF)
    )
    await thermal.control.handle(app, "test", "yolov8n").terminate("test: the owner is gone")
    async with thermal.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE thermal_states SET target_state = 'COLD', current_state = 'COLD', "
                "last_error = 'corrected by the reconcile' WHERE app_id = :a"
            ),
            {"a": app},
        )
    res = await invoke_cli(thermal, monkeypatch, "thermal", "show", "yolov8n", "--app", app,
                           "--env", "test", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert (status["target_state"], status["last_error"]) == ("COLD", "corrected by the reconcile")


async def test_warm_wait_on_an_off_model_leaves_the_error_on_its_own_line(
    thermal: ThermalHarness, monkeypatch
):
    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.OFF)
    )
    res = await invoke_cli(thermal, monkeypatch, "thermal", "warm", "yolov8n", "--app", app,
                           "--env", "test", "--wait")  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.stdout == "" or res.stdout.endswith("\n"), repr(res.stdout[-80:])
    assert res.stderr.startswith("error: ") and "yolov8n is OFF" in res.stderr


async def test_warm_notes_the_queue_of_the_running_workflow(thermal: ThermalHarness, monkeypatch):
    """The model's thermal workflow runs on the served queue: a CLI configured with another
    queue is still served, so no "no worker" note (and the change applies)."""
    import dataclasses

    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.COLD)
    )
    elsewhere = dataclasses.replace(thermal, task_queue=f"nobody-{app}")
    res = await invoke_cli(elsewhere, monkeypatch, "thermal", "set", "yolov8n", "OFF", "--app",
                           app, "--env", "test")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no worker is polling" not in res.stderr
