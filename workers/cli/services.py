"""`radiant services status|enable|disable`: mid-level service states (DESIGN 5)."""

from __future__ import annotations

import typer
from rich.text import Text

from activities.service_states import ServiceStateRow, refresh_service_states
from models_catalog.errors import CatalogError
from workers.cli.common import (
    DataTable,
    catalog_or_fail,
    console,
    emit_json,
    fail,
    run,
    served_pair,
)
from workers.settings import get_settings

app = typer.Typer(no_args_is_help=True)
AppOpt = typer.Option(None, "--app", help="App id (default RADIANT_APP_ID).")
EnvOpt = typer.Option(None, "--env", help="Environment (default RADIANT_ENVIRONMENT).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


def _apply(
    app_id: str | None, env: str | None, changes: dict[str, bool] | None
) -> list[ServiceStateRow]:
    from activities.db.engine import create_app_engine, resolve_database_urls

    settings = get_settings()
    app_id, env = served_pair(settings, app_id, env)
    catalog = catalog_or_fail(settings.catalog_dir)
    for service_id in changes or {}:
        try:
            catalog.service(service_id)  # unknown service: a clear error before any write
        except CatalogError as exc:
            fail(str(exc))

    async def go() -> list[ServiceStateRow]:
        engine = create_app_engine(resolve_database_urls(settings).app)
        try:
            return await refresh_service_states(
                engine,
                catalog,
                app_id,
                env,
                set_disabled=changes,
            )
        finally:
            await engine.dispose()

    return run(go())


def _show(rows: list[ServiceStateRow], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    table = DataTable("service", "state", "admin disabled", "reason", "unavailable models")
    colors = {"RUNNING": "green", "DEGRADED": "yellow", "OFFLINE": "red", "DISABLED": "dim"}
    for r in rows:
        table.add_row(
            r.service_id,
            Text(r.state.value, style=colors[r.state.value]),
            "yes" if r.admin_disabled else "",
            r.reason,
            ", ".join(r.unavailable_models),
        )
    console.print(table)


@app.command("status")
def status(app_id: str | None = AppOpt, env: str | None = EnvOpt, as_json: bool = JsonOpt) -> None:
    """Each service's state, recomputed from the models' thermal states (and persisted)."""
    _show(_apply(app_id, env, None), as_json)


@app.command("enable")
def enable(
    service: str, app_id: str | None = AppOpt, env: str | None = EnvOpt, as_json: bool = JsonOpt
) -> None:
    """Allow jobs on a service (its state then follows its models)."""
    _show(_apply(app_id, env, {service.lower(): False}), as_json)


@app.command("disable")
def disable(
    service: str, app_id: str | None = AppOpt, env: str | None = EnvOpt, as_json: bool = JsonOpt
) -> None:
    """Refuse new jobs on a service (DISABLED), whatever its models' states."""
    _show(_apply(app_id, env, {service.lower(): True}), as_json)
