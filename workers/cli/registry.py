"""`radiant registry list|stats|history|sync`: the unified model registry (seed 001 section 36.7).

`list` and `stats` read the `unified_model_registry` view: external and self-hosted models with
provider health and, for self-hosted models, the thermal state in one (app, environment)
(`--app/--env`, default the settings'); a model never deployed there shows its catalog default.
`history` reads `registry_sync_log`; `sync` runs one registry sync now (needs a worker).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from sqlalchemy import text

from activities.llm.registry_sync import SYNC_TYPES, RegistrySyncInput, registry_sync_workflow_id
from models_catalog.selection import context_window_from_environment
from models_catalog.types import ModelStatus
from workers.cli.common import DataTable, emit_json, failure_message, note_if_no_worker
from workers.cli.select import die, run_db
from workers.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True)
console = Console()

HOSTING_TYPES = ("external", "self_hosted")
AppOpt = Annotated[
    str | None, typer.Option("--app", help="App id for thermal states (default RADIANT_APP_ID).")
]
EnvOpt = Annotated[
    str | None, typer.Option("--env", help="Environment (default RADIANT_ENVIRONMENT).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

_COLUMNS = (
    "id, hosting_type, provider_id, display_name, category, status, deployable, min_tier, "
    "context_window, thermal_state, default_thermal_state, instance_count, health_status, "
    "avg_latency_ms, error_rate, billed_input_per_1k, billed_output_per_1k, billed_per_request, "
    "billed_per_image, billed_hourly"
)
# The view has no context window for self-hosted models: selection takes it from the container
# environment (MAX_INPUT_LENGTH), so the registry reads that environment and the same function.
_SELF_HOSTED_ENV = (
    "(SELECT sh.spec -> 'environment' FROM self_hosted_models sh"
    " WHERE unified_model_registry.hosting_type = 'self_hosted'"
    " AND sh.model_id = unified_model_registry.id) AS container_environment"
)


class SyncRun(BaseModel):
    """One `registry_sync_log` row (`registry history`); JSON via pydantic, so times are ISO."""

    id: int
    sync_type: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    models_added: int
    models_updated: int
    models_deprecated: int
    details: dict[str, Any] | None


_SYNC_RUN_COLUMNS = ", ".join(SyncRun.model_fields)


async def _fetch(
    settings: Settings, sql: str, params: dict[str, Any], scope: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    from activities.db.engine import create_app_engine, resolve_database_urls
    from activities.db.registry import set_registry_scope

    engine = create_app_engine(resolve_database_urls(settings).app)
    try:
        async with engine.begin() as conn:
            if scope is not None:
                await set_registry_scope(conn, *scope)
            return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
    finally:
        await engine.dispose()


def _registry_rows(
    settings: Settings,
    app_id: str,
    env: str,
    category: str | None,
    hosting: str | None,
    status: str | None,
) -> list[dict[str, Any]]:
    where, params = [], {}
    if hosting:
        where.append("hosting_type = :hosting")
        params["hosting"] = hosting
    if status:
        where.append("status = :status")
        params["status"] = status
    if category:
        where.append("category = :category")
        params["category"] = category
    sql = f"SELECT {_COLUMNS}, {_SELF_HOSTED_ENV} FROM unified_model_registry"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY hosting_type, category, display_name"
    rows = run_db(_fetch(settings, sql, params, (app_id, env)), settings)
    if category and not rows:
        known = run_db(
            _fetch(settings, "SELECT DISTINCT category FROM unified_model_registry ORDER BY 1", {}),
            settings,
        )
        names = [r["category"] for r in known]
        if category not in names:
            die(f"unknown category {category!r}; categories: {', '.join(names)}")
    for row in rows:
        environment = row.pop("container_environment")
        if row["hosting_type"] == "self_hosted":
            row["context_window"] = context_window_from_environment(environment or {})
            row["effective_thermal_state"] = row["thermal_state"] or row["default_thermal_state"]
        else:
            row["effective_thermal_state"] = None
    return rows


def _validate(hosting: str | None, status: str | None) -> None:
    if hosting is not None and hosting not in HOSTING_TYPES:
        die(f"--hosting must be one of {', '.join(HOSTING_TYPES)}, not {hosting!r}")
    statuses = [s.value for s in ModelStatus]
    if status is not None and status not in statuses:
        die(f"--status must be one of {', '.join(statuses)}, not {status!r}")


@app.command("list")
def list_models(
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    hosting: Annotated[str | None, typer.Option(help="external | self_hosted.")] = None,
    status: Annotated[
        str | None, typer.Option(help="active | beta | deprecated | coming_soon.")
    ] = None,
    app_id: AppOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every model, external and self-hosted, with thermal state and health."""
    _validate(hosting, status)
    settings = get_settings()
    app_id, env = app_id or settings.app_id, env or settings.environment
    rows = _registry_rows(settings, app_id, env, category, hosting, status)
    if as_json:
        external = sum(1 for r in rows if r["hosting_type"] == "external")
        emit_json(
            {
                "app_id": app_id,
                "environment": env,
                "total": len(rows),
                "external": external,
                "self_hosted": len(rows) - external,
                "models": rows,
            }
        )
        return
    table = DataTable(
        "id",
        "hosting",
        "provider",
        "category",
        "status",
        "tier",
        "thermal",
        "health",
        "latency",
        title=f"unified model registry ({app_id}/{env})",
    )
    for r in rows:
        thermal = r["effective_thermal_state"] or "-"
        if r["hosting_type"] == "self_hosted" and r["thermal_state"] is None and r["deployable"]:
            thermal += " (default)"
        if r["hosting_type"] == "self_hosted" and not r["deployable"]:
            thermal = "not deployable"
        table.add_row(
            r["id"],
            r["hosting_type"],
            r["provider_id"],
            r["category"],
            r["status"],
            str(r["min_tier"] or "-"),
            thermal,
            r["health_status"] or "-",
            f"{r['avg_latency_ms']} ms" if r["avg_latency_ms"] is not None else "-",
        )
    console.print(table)
    console.print(f"{len(rows)} models")


@app.command("stats")
def stats(app_id: AppOpt = None, env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Counts: hosting, health, thermal states, categories, providers."""
    settings = get_settings()
    app_id, env = app_id or settings.app_id, env or settings.environment
    rows = _registry_rows(settings, app_id, env, None, None, None)
    ext = [r for r in rows if r["hosting_type"] == "external"]
    own = [r for r in rows if r["hosting_type"] == "self_hosted"]
    health = Counter(r["health_status"] for r in ext)
    thermal = Counter(r["effective_thermal_state"] for r in own if r["deployable"])
    out = {
        "app_id": app_id,
        "environment": env,
        "external_count": len(ext),
        "self_hosted_count": len(own),
        "self_hosted_deployable": sum(1 for r in own if r["deployable"]),
        "healthy_count": health.get("healthy", 0),
        "degraded_count": health.get("degraded", 0),
        "unhealthy_count": health.get("unhealthy", 0),
        "unknown_health_count": health.get("unknown", 0),
        "hot_count": thermal.get("HOT", 0),
        "warm_count": thermal.get("WARM", 0),
        "cold_count": thermal.get("COLD", 0),
        "off_count": thermal.get("OFF", 0),
        "automatic_count": thermal.get("AUTOMATIC", 0),
        "category_count": len({r["category"] for r in rows}),
        "provider_count": len({r["provider_id"] for r in ext}),
    }
    if as_json:
        emit_json(out)
        return
    table = DataTable("metric", "value", title=f"registry stats ({app_id}/{env})")
    for key, value in out.items():
        if key not in ("app_id", "environment"):
            table.add_row(key, str(value))
    console.print(table)


@app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs (newest first).")] = 50,
    sync_type: Annotated[str | None, typer.Option("--type", help="Only this sync type.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The last registry sync runs (registry_sync_log)."""
    if sync_type is not None and sync_type not in SYNC_TYPES:
        die(f"--type must be one of {', '.join(SYNC_TYPES)}, not {sync_type!r}")
    settings = get_settings()
    sql = f"SELECT {_SYNC_RUN_COLUMNS} FROM registry_sync_log"
    params: dict[str, Any] = {"n": limit}
    if sync_type:
        sql += " WHERE sync_type = :t"
        params["t"] = sync_type
    sql += " ORDER BY started_at DESC, id DESC LIMIT :n"
    runs = [SyncRun.model_validate(r) for r in run_db(_fetch(settings, sql, params), settings)]
    if as_json:
        emit_json(runs)
        return
    table = DataTable("id", "type", "status", "started", "duration", "added", "errors", "review")
    for r in runs:
        details = r.details or {}
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        table.add_row(
            str(r.id),
            r.sync_type,
            r.status,
            r.started_at.isoformat(timespec="seconds"),
            f"{took:.1f}s" if took is not None else "-",
            str(r.models_added),
            str(len(details.get("errors", []))),
            str(len(details.get("review", []))),
        )
    console.print(table)


@app.command("sync")
def sync(
    sync_type: Annotated[
        str, typer.Option("--type", help="full | health | pricing | thermal.")
    ] = "full",
    as_json: JsonOpt = False,
) -> None:
    """Run one registry sync now and wait for it (a worker must be running)."""
    if sync_type not in SYNC_TYPES:
        die(f"--type must be one of {', '.join(SYNC_TYPES)}, not {sync_type!r}")
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError

    from workers.temporal import TemporalUnavailableError, connect
    from workflows.registry_sync import RegistrySyncWorkflow

    settings = get_settings()

    async def go() -> Any:
        client = await connect(settings)
        await note_if_no_worker(client, settings.task_queue)
        return await client.execute_workflow(
            RegistrySyncWorkflow.run,
            RegistrySyncInput(sync_type=sync_type),
            id=registry_sync_workflow_id(sync_type, f"manual-{uuid.uuid4().hex[:12]}"),
            task_queue=settings.task_queue,
        )

    try:
        result = asyncio.run(go())
    except WorkflowFailureError as exc:
        die(failure_message(exc))
    except TemporalUnavailableError as exc:
        die(str(exc))
    except RPCError as exc:
        die(f"Temporal refused the request: {exc.message}")
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"{result.sync_type} sync {result.status} (log id {result.log_id}): "
        f"{result.providers_checked} providers checked, {result.models_added} new models "
        f"for review, {len(result.details.get('review', []))} review items, "
        f"{len(result.errors)} errors"
    )
    for err in result.errors:
        typer.echo(f"  error: {err}")
