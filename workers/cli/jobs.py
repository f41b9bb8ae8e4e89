"""`radiant submit` and `radiant jobs show|list|cancel`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.table import Column
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)

from models_catalog.pricing import display_money
from workers.cli.common import (
    DataTable,
    console,
    emit_json,
    esc,
    fail,
    failure_message,
    json_default,
    note_if_no_worker,
    run,
)
from workers.job_client import JobClient, NotAJobError
from workers.settings import get_settings

app = typer.Typer(no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
OUTPUT_PREVIEW_CHARS = 4000  # of a finished job's output, printed after `submit --wait`


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--option takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)  # numbers, booleans, lists
        except ValueError:
            out[key] = value
    return out


def submit(
    service: str,
    operation: str,
    tenant: str = typer.Option(..., help="Tenant name or id."),
    input_ref: str = typer.Option(..., "--input", help="Local path, s3:// URI, or inline:<path>."),
    option: list[str] = typer.Option([], help="Operation option key=value (repeatable)."),
    model: list[str] = typer.Option([], help="Optional model to use (repeatable)."),
    request_id: str | None = typer.Option(
        None,
        help="Request id (default: random; up to 128 letters, digits, '.', '_', ':', '-'). "
        "Submitting the same tenant, service, operation and request id again returns the "
        "existing job (running or finished) instead of running and billing it again; only a "
        "failed or cancelled job runs again.",
    ),
    wait: bool = typer.Option(False, "--wait", help="Show progress and the result."),
    as_json: bool = JsonOpt,
) -> None:
    """Submit a service job; prints its workflow id and Web UI link."""
    settings = get_settings()
    options = _options(option)

    async def go() -> Any:
        jobs = await JobClient.connect(settings)
        try:
            handle = await jobs.submit(
                service,
                operation,
                tenant=tenant,
                input_uri=input_ref,
                options=options,
                optional_models=model,
                request_id=request_id,
            )
        except ValueError as exc:
            fail(str(exc))
        except OSError as exc:  # an inline: file that cannot be read
            fail(f"cannot read the input {exc.filename or input_ref}: {exc.strerror or exc}")
        await note_if_no_worker(jobs.client, settings.task_queue)
        if not as_json:
            console.print(
                f"job [bold]{esc(handle.id)}[/]\nWeb UI: {esc(jobs.web_ui_link(handle.id))}"
            )
        if not wait:
            return {"workflow_id": handle.id, "web_ui": jobs.web_ui_link(handle.id)}
        result = asyncio.ensure_future(handle.result())
        last = None
        while not result.done():
            try:
                progress = await jobs.progress(handle.id)
                line = f"{progress['stage']}" + (
                    f": {progress['detail']}" if progress.get("detail") else ""
                )
                if line != last and not as_json:
                    console.print(f"  … {esc(line)}")
                    last = line
            except Exception:  # not started by a worker yet
                pass
            await asyncio.wait({result}, timeout=0.3)
        return result.result()

    out = run(go())
    if as_json or not wait:
        if as_json:
            emit_json(out)
        return
    _print_result(out)


def _print_result(result: Any) -> None:
    console.print(
        f"[green]done[/] {esc(result.service)}/{esc(result.operation)}: "
        f"{result.units} {esc(result.unit)}(s), billed {display_money(result.billed, 4)}, "
        f"models {esc(', '.join(result.models_used))}"
        + (f" [yellow](degraded: {esc(result.degraded_reason)})[/]" if result.degraded else "")
    )
    # Rendered first, then cut: a cut JSON text no longer parses.
    text = json.dumps(result.output, indent=2, default=str)
    if len(text) > OUTPUT_PREVIEW_CHARS:
        text = text[:OUTPUT_PREVIEW_CHARS] + "\n… (cut; the whole result: --json or jobs show)"
    console.print(text, highlight=False, markup=False)


@app.command("show")
def show(workflow_id: str, as_json: bool = JsonOpt) -> None:
    """A job's status, progress and (when done) result."""
    settings = get_settings()

    async def go() -> dict[str, Any]:
        jobs = await JobClient.connect(settings)
        desc = await _describe_job(jobs, workflow_id)
        out: dict[str, Any] = {
            "workflow_id": workflow_id,
            "status": desc.status.name if desc.status else None,
            "started": desc.start_time,
            "web_ui": jobs.web_ui_link(workflow_id),
        }
        if desc.status and desc.status.name == "RUNNING":
            # A query needs a worker: with none on the job's queue say so instead of waiting
            # for the query's timeout.
            if await note_if_no_worker(jobs.client, desc.task_queue):
                out["progress"] = {"stage": "queued", "detail": "no worker polls its task queue"}
            else:
                out["progress"] = await jobs.progress(workflow_id)
        elif desc.status and desc.status.name == "COMPLETED":
            out["result"] = (await jobs.handle(workflow_id).result()).model_dump(mode="json")
        elif desc.status == WorkflowExecutionStatus.FAILED:
            # describe has no failure; the result raises it (cancelled etc.: the status says it)
            try:
                await jobs.handle(workflow_id).result()
            except WorkflowFailureError as exc:
                out["error"] = failure_message(exc)
        return out

    out = run(go())
    if as_json:
        emit_json(out)
    else:
        console.print_json(json.dumps(out, default=json_default))


@app.command("list")
def list_jobs(
    tenant: str | None = typer.Option(None, help="Only this tenant's jobs."),
    limit: int = typer.Option(20, min=1, max=1000),
    as_json: bool = JsonOpt,
) -> None:
    """Recent jobs, in the order of Temporal's visibility store (running first, then by close
    time)."""
    settings = get_settings()

    spellings = _tenant_spellings(tenant) if tenant else None

    async def go() -> list[dict[str, Any]]:
        jobs = await JobClient.connect(settings)
        return [
            {
                "workflow_id": w.id,
                "status": w.status.name if w.status else None,
                "started": w.start_time,
                "tenant": w.typed_search_attributes.get(_tenant_key()),
            }
            for w in await jobs.list_jobs(spellings, limit)
        ]

    rows = run(go())
    if as_json:
        emit_json(rows)
        return
    table = DataTable(Column("workflow id", overflow="fold"), "status", "tenant", "started")
    for r in rows:
        table.add_row(r["workflow_id"], r["status"] or "", r["tenant"] or "", str(r["started"]))
    console.print(table)


def _tenant_spellings(tenant: str) -> list[str]:
    """The tenant's name and id: a job carries the spelling it was submitted with. An unknown
    tenant is one line and exit 2 (with suggestions), not an empty list."""
    from activities.tenants import get_tenant
    from workers.cli.tenants import database

    with database() as urls:
        record = get_tenant(urls.owner, tenant)
    return [record.name, str(record.id)]


async def _describe_job(jobs: JobClient, workflow_id: str) -> WorkflowExecutionDescription:
    """The job's description; one line and exit 2 for the id of another workflow type."""
    try:
        return await jobs.describe_job(workflow_id)
    except NotAJobError as exc:
        fail(str(exc))


def _tenant_key():  # type: ignore[no-untyped-def]
    from workflows.search_attributes import TENANT

    return TENANT


@app.command("cancel")
def cancel(workflow_id: str) -> None:
    """Cancel a job; work that did not finish is not charged."""
    settings = get_settings()

    async def go() -> None:
        jobs = await JobClient.connect(settings)
        try:
            await jobs.cancel(workflow_id)  # refuses another workflow type and an ended job
        except ValueError as exc:
            fail(str(exc))

    run(go())
    console.print(f"cancellation requested for {esc(workflow_id)}")
