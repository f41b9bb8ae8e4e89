"""`radiant thermal show|warm|list|bulk` against a real worker: OFF refused without --wait too,
JSON that parses, models no workflow has touched yet, no hang without a worker, failures
that exit 1 (--json too), and data (error texts) printed as it is, never as Rich markup."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from datetime import timedelta

import pytest
import typer
from temporalio import activity
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.fleet_activities import BulkItemResult, BulkSetItem
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.cli import invoke_cli
from tests.fixtures.worker import TIMINGS, ThermalHarness
from workers.cli.common import console
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_fleet import BulkThermalUpdateWorkflow
from workflows.thermal_types import ModelThermalInput, SetTargetRequest, thermal_workflow_id

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


# Failure texts as backends write them: Rich markup would drop the first's brackets (an
# unknown style) and refuse the second (a closing tag nothing opened: MarkupError).
BRACKETED = "[i-0a1b2c3d4e] ERROR model data not found"
CLOSING_TAG = "volume [/opt/ml/model] is full"


@activity.defn(name="fleet.set_one")
async def set_one_failing_two(item: BulkSetItem) -> BulkItemResult:
    errors = {"yolov8m": BRACKETED, "mobilesam": CLOSING_TAG}
    if item.model_id in errors:
        return BulkItemResult(model_id=item.model_id, ok=False, error=errors[item.model_id])
    return BulkItemResult(model_id=item.model_id, ok=True)


@pytest.mark.parametrize("as_json", [True, False])
async def test_bulk_with_failed_models_exits_1(thermal: ThermalHarness, monkeypatch, as_json):
    """--json too (it used to exit 0); the table shows the errors as they are."""
    queue = f"bulk-cli-{uuid.uuid4().hex[:6]}"
    async with Worker(
        thermal.client, task_queue=queue, workflows=[BulkThermalUpdateWorkflow],
        activities=[set_one_failing_two],
    ):  # fmt: skip
        monkeypatch.setattr(console, "width", 300)  # whole error texts on one line
        res = await invoke_cli(dataclasses.replace(thermal, task_queue=queue), monkeypatch,
                               "thermal", "bulk", "WARM", "--models", "yolov8m,mobilesam,yolov8n",
                               "--app", thermal.new_app(), "--env", "test",
                               *(["--json"] if as_json else []))  # fmt: skip
    assert res.exit_code == 1, res.output
    if as_json:
        results = json.loads(res.stdout)
        assert [(r["model_id"], r["ok"], r["error"]) for r in results] == [
            ("yolov8m", False, BRACKETED), ("mobilesam", False, CLOSING_TAG),
            ("yolov8n", True, None),
        ]  # fmt: skip
    else:
        assert BRACKETED in res.stdout and CLOSING_TAG in res.stdout, res.stdout


async def test_list_prints_errors_as_they_are(thermal: ThermalHarness, monkeypatch):
    from sqlalchemy import text

    app = thermal.new_app()
    for model in ("yolov8n", "mobilesam"):
        await thermal.control.set_target(
            app, "test", model, SetTargetRequest(state=ThermalState.OFF)
        )
    async with thermal.engine.begin() as conn:
        for model, error in (("yolov8n", BRACKETED), ("mobilesam", CLOSING_TAG)):
            await conn.execute(
                text(
                    "UPDATE thermal_states SET last_error = :e WHERE app_id = :a AND model_id = :m"
                ),
                {"e": error, "a": app, "m": model},
            )
    monkeypatch.setattr(console, "width", 300)
    res = await invoke_cli(thermal, monkeypatch, "thermal", "list", "--app", app, "--env", "test")
    assert res.exit_code == 0, res.output
    assert BRACKETED in res.stdout and CLOSING_TAG in res.stdout, res.stdout
    assert "nothing is recorded" not in res.stderr


async def test_list_of_a_pair_with_nothing_recorded_says_so(thermal: ThermalHarness, monkeypatch):
    """A mistyped --app/--env used to look like a real pair at its defaults: a note on
    stderr (stdout stays JSON)."""
    app = thermal.new_app()
    res = await invoke_cli(thermal, monkeypatch, "thermal", "list", "--app", app, "--env", "prdo",
                           "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["environment"] == "prdo"
    assert f"nothing is recorded for {app}/prdo" in res.stderr, res.stderr


def test_status_table_and_fail_print_data_as_it_is(capsys):
    from io import StringIO

    from rich.console import Console

    from workers.cli.common import fail
    from workers.cli.thermal import _recorded_status, _status_table

    st = _recorded_status(CATALOG, "app", "test", "yolov8n", None).model_copy(
        update={"last_error": BRACKETED, "endpoint_status": CLOSING_TAG}
    )
    out = Console(file=StringIO(), width=300)
    out.print(_status_table([st]))
    rendered = out.file.getvalue()  # type: ignore[attr-defined]
    assert BRACKETED in rendered and CLOSING_TAG in rendered, rendered

    with pytest.raises(typer.Exit):
        fail(f"cannot reach it: {CLOSING_TAG} {BRACKETED}")
    assert capsys.readouterr().err == f"error: cannot reach it: {CLOSING_TAG} {BRACKETED}\n"


async def show_on_an_unpolled_queue(thermal: ThermalHarness, monkeypatch):  # type: ignore[no-untyped-def]
    """`thermal show --json` of a model whose workflow runs on a queue no worker polls: the
    CLI's result and how long it took."""
    app = thermal.new_app()
    handle = await thermal.client.start_workflow(
        ModelThermalWorkflow.run,
        ModelThermalInput(app_id=app, environment="test", model_id="yolov8n", timings=TIMINGS),
        id=thermal_workflow_id(app, "test", "yolov8n"),
        task_queue=f"nobody-{app}",
    )
    try:
        started = time.monotonic()
        res = await invoke_cli(thermal, monkeypatch, "thermal", "show", "yolov8n", "--app", app,
                               "--env", "test", "--json")  # fmt: skip
        return res, time.monotonic() - started
    finally:
        await handle.terminate("test: done")


async def test_show_without_a_worker_gives_the_record_at_once(thermal: ThermalHarness, monkeypatch):
    """The model's workflow runs on a queue no worker polls: the no-worker note and the record,
    not a ~30 s hang on the query."""
    res, took = await show_on_an_unpolled_queue(thermal, monkeypatch)
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    default = CATALOG.model("yolov8n").thermal.default_state.value
    assert (status["target_state"], status["ready"]) == (default, False)
    assert "no worker is polling" in res.stderr, res.stderr
    assert "live state of yolov8n is unavailable" in res.stderr, res.stderr
    assert took < 15, took


async def test_show_gives_the_record_when_temporal_is_unreachable(
    thermal: ThermalHarness, monkeypatch
):
    """Temporal down, PostgreSQL up: the recorded state, with a one-line note."""
    import socket
    import types

    app = thermal.new_app()
    await thermal.control.set_target(
        app, "test", "yolov8n", SetTargetRequest(state=ThermalState.OFF)
    )
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    down = types.SimpleNamespace(
        client=types.SimpleNamespace(
            service_client=types.SimpleNamespace(config=types.SimpleNamespace(target_host=closed)),
            namespace=thermal.client.namespace,
        ),
        task_queue=thermal.task_queue,
        settings=thermal.settings,
    )
    res = await invoke_cli(down, monkeypatch, "thermal", "show", "yolov8n", "--app", app,
                           "--env", "test", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert (status["target_state"], status["current_state"]) == ("OFF", "OFF")
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"Temporal is unreachable at {closed}" in lines[0], res.stderr


async def test_show_falls_back_to_the_record_when_the_query_times_out(
    thermal: ThermalHarness, monkeypatch
):
    """A worker that polls but does not answer in time (the no-worker check passed): the
    query's short timeout, then the record."""
    from workers.cli import thermal as thermal_cli

    async def looks_served(*_: object) -> bool:
        return False

    monkeypatch.setattr(thermal_cli, "note_if_no_worker", looks_served)
    monkeypatch.setattr(thermal_cli, "SHOW_QUERY_TIMEOUT", timedelta(seconds=1))
    res, took = await show_on_an_unpolled_queue(thermal, monkeypatch)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model_id"] == "yolov8n"
    assert "live state of yolov8n is unavailable" in res.stderr, res.stderr
    assert took < 10, took


async def test_warm_deadline_bounds_the_wait_without_a_worker(thermal: ThermalHarness, monkeypatch):
    """No worker accepts the warm-up, so the workflow's own deadline never starts: the CLI
    keeps its own clock and gives up after --deadline (it used to wait until Ctrl-C)."""
    from workers.cli import thermal as thermal_cli

    monkeypatch.setattr(thermal_cli, "DEADLINE_MARGIN_S", 0.5)
    app = thermal.new_app()
    elsewhere = dataclasses.replace(thermal, task_queue=f"nobody-{app}")
    started = time.monotonic()
    res = await invoke_cli(elsewhere, monkeypatch, "thermal", "warm", "yolov8n", "--app", app,
                           "--env", "test", "--wait", "--deadline", "2")  # fmt: skip
    took = time.monotonic() - started
    assert res.exit_code == 2, res.output
    assert "yolov8n was not ready within 2s; no worker accepted" in res.stderr, res.stderr
    assert "Traceback" not in res.output + res.stderr
    assert took < 30, took
    with contextlib.suppress(RPCError):  # a start whose update was never admitted is dropped
        await thermal.client.get_workflow_handle(
            thermal_workflow_id(app, "test", "yolov8n")
        ).terminate("test: done")


async def test_warm_deadline_holds_when_the_sdk_words_the_cancellation_its_own_way(
    thermal: ThermalHarness, monkeypatch
):
    """The SDK turns the cancellation of a wait on an update into its own error, which
    asyncio.timeout passes on untouched: the deadline is still told as the deadline (exit 2),
    not as an interruption (exit 130)."""
    import asyncio

    from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError

    from workers.cli import thermal as thermal_cli

    async def never_accepted(self: Client, *args: object, **kwargs: object) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as err:  # what temporalio/client/_impl.py does
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from err

    monkeypatch.setattr(Client, "start_update_with_start_workflow", never_accepted)
    monkeypatch.setattr(thermal_cli, "DEADLINE_MARGIN_S", 0.2)
    app = thermal.new_app()
    res = await invoke_cli(thermal, monkeypatch, "thermal", "warm", "yolov8n", "--app", app,
                           "--env", "test", "--deadline", "1")  # fmt: skip
    assert res.exit_code == 2, res.output + res.stderr
    assert "yolov8n was not ready within 1s; no worker accepted" in res.stderr, res.stderr


def test_an_interrupted_update_wait_is_one_line(capsys):
    """Ctrl-C while the SDK waits on an update reaches the CLI as the SDK's own error, not
    KeyboardInterrupt: still one line and exit 130, not a traceback."""
    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

    from workers.cli.common import run

    async def cut_short() -> None:
        raise WorkflowUpdateRPCTimeoutOrCancelledError()

    with pytest.raises(typer.Exit) as exited:
        run(cut_short())
    assert exited.value.exit_code == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted") and len(err.splitlines()) == 1, err


async def test_list_refuses_an_invalid_app_id(thermal: ThermalHarness, monkeypatch):
    """`list` reads only, but an id no workflow could have is refused as `show` refuses it
    (it used to print the catalog's defaults as if the pair were merely unused)."""
    res = await invoke_cli(thermal, monkeypatch, "thermal", "list", "--app", "acme/eu",
                           "--env", "test")  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "app 'acme/eu' is not a valid id" in res.stderr, res.stderr
