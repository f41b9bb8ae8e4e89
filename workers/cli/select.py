"""`radiant select`: which model would serve a request, and why every other one would not.

Runs the same pure selection the LLM workflows run (models_catalog.selection), over the catalog,
the thermal mirror and provider health in PostgreSQL (`--no-state`: catalog defaults, health
unknown) and the provider keys set in *this* process's environment.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from models_catalog.catalog import Catalog, load_catalog
from models_catalog.errors import CatalogError
from models_catalog.selection import (
    HealthView,
    Selection,
    SelectionCriteria,
    ThermalView,
    configured_providers,
    known_modalities,
    known_tasks,
    select_with_fallback,
)
from workers.cli.common import emit_json
from workers.settings import Settings, get_settings

HOSTING = ("any", "self_hosted", "external")


def die(message: str, code: int = 2) -> NoReturn:
    """One plain line on stderr (no markup, no wrapping), then exit `code`."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def load_catalog_or_die(settings: Settings) -> Catalog:
    try:
        return load_catalog(settings.catalog_dir)
    except CatalogError as exc:
        die(str(exc))


def run_db(coro: Any, settings: Settings) -> Any:
    """Run a coroutine that reads PostgreSQL; an unreachable database is one line, exit 2."""
    from sqlalchemy.exc import OperationalError

    from activities.db.engine import resolve_database_urls, unavailable_error
    from activities.db.errors import DatabaseError

    try:
        return asyncio.run(coro)
    except OperationalError as err:
        die(str(unavailable_error(resolve_database_urls(settings, start_embedded=False).app, err)))
    except DatabaseError as err:
        die(str(err))


async def load_state(
    settings: Settings, app_id: str, env: str, tenant: str | None
) -> tuple[dict[str, ThermalView], dict[str, HealthView], int | None]:
    from activities.db.engine import create_app_engine, resolve_database_urls
    from activities.llm.state import find_tenant, health_views, thermal_views

    engine = create_app_engine(resolve_database_urls(settings).app)
    try:
        tier = None
        if tenant is not None:
            row = await find_tenant(engine, tenant)
            if row is None:
                raise LookupError(f"unknown tenant {tenant!r}")
            tier = row.tier
        return await thermal_views(engine, app_id, env), await health_views(engine), tier
    finally:
        await engine.dispose()


def select_command(
    task: Annotated[
        str, typer.Option(help="chat, completion, embedding, image, inference, ...")
    ] = "chat",
    tier: Annotated[int | None, typer.Option(help="Tenant tier 1-5 (or give --tenant).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant name or id: its tier is used.")] = None,
    hosting: Annotated[str, typer.Option(help="any | self_hosted (required) | external.")] = "any",
    input_modality: Annotated[
        list[str] | None, typer.Option("--input", help="Input modality (repeat).")
    ] = None,
    output_modality: Annotated[
        list[str] | None, typer.Option("--output", help="Output modality (repeat).")
    ] = None,
    capability: Annotated[
        list[str] | None, typer.Option(help="Required capability (repeat).")
    ] = None,
    min_context: Annotated[
        int | None, typer.Option(help="Minimum context window (tokens).")
    ] = None,
    hipaa: Annotated[bool, typer.Option("--hipaa", help="Require HIPAA eligibility.")] = False,
    model: Annotated[str | None, typer.Option(help="Check one model (id or alias).")] = None,
    app_id: Annotated[
        str | None, typer.Option("--app", help="App id (default RADIANT_APP_ID).")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Environment (default RADIANT_ENVIRONMENT).")
    ] = None,
    no_state: Annotated[
        bool,
        typer.Option(
            "--no-state", help="Ignore the database: catalog default states, unknown health."
        ),
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list models that do not do the task.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain which model serves a request: HOT > WARM > COLD, then latency, then health."""
    settings = get_settings()
    if hosting not in HOSTING:
        die(f"--hosting must be one of {', '.join(HOSTING)}, not {hosting!r}")
    if tier is None and tenant is None:
        die("give the tenant's tier (--tier 1-5) or the tenant (--tenant NAME)")
    if tier is not None and not 1 <= tier <= 5:
        die(f"--tier must be between 1 and 5, not {tier}")
    if tenant is not None and no_state:
        die("--tenant needs the database; use --tier with --no-state")
    catalog = load_catalog_or_die(settings)
    tasks = known_tasks(catalog)
    if task not in tasks:
        die(f"unknown task {task!r}; known: {', '.join(tasks)}")
    for kind, given, known in zip(
        ("input", "output"),
        (input_modality, output_modality),
        known_modalities(catalog),
        strict=True,
    ):
        for name in given or []:
            if name not in known:
                die(f"unknown {kind} modality {name!r}; known: {', '.join(known)}")
    app_id, env = app_id or settings.app_id, env or settings.environment
    thermal: dict[str, ThermalView] = {}
    health: dict[str, HealthView] = {}
    if not no_state:
        try:
            thermal, health, tenant_tier = run_db(
                load_state(settings, app_id, env, tenant), settings
            )
        except LookupError as exc:
            die(str(exc))
        if tenant is not None and tier is not None and tier != tenant_tier:
            die(f"tenant {tenant} is tier {tenant_tier}; drop --tier or pass the tenant's tier")
        tier = tier or tenant_tier
    assert tier is not None  # given, or read with the tenant
    default_out = "embedding" if task == "embedding" else "text"
    try:
        criteria = SelectionCriteria(
            task=task,
            tenant_tier=tier,
            prefer_hosting=hosting,  # type: ignore[arg-type]
            input_modalities=input_modality or ["text"],
            output_modalities=output_modality or [default_out],
            required_capabilities=capability or [],
            min_context_window=min_context,
            require_hipaa=hipaa,
            model=model,
        )
        selection = select_with_fallback(
            catalog, criteria, thermal, health, configured_providers(catalog)
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        die(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
    except CatalogError as exc:
        die(str(exc))
    _print(selection, show_all, as_json, app_id, env)
    if selection.choice is None:
        raise typer.Exit(1)


def _print(selection: Selection, show_all: bool, as_json: bool, app_id: str, env: str) -> None:
    if as_json:
        data = selection.model_dump(mode="json")
        if not show_all and selection.criteria.model is None:
            data["excluded"] = [e for e in data["excluded"] if e["does_task"]]
        data["scope"] = {"app_id": app_id, "environment": env}
        emit_json(data)
        return
    typer.echo(f"scope: {app_id}/{env}")
    for line in selection.explanation:
        typer.echo(line)
    hidden = [e for e in selection.excluded if not e.does_task and selection.criteria.model is None]
    if show_all:
        for excl in hidden:
            typer.echo(f"excluded {excl.describe()}")
    elif selection.choice is None and hidden:
        typer.echo(
            f"({len(hidden)} models that do not do {selection.criteria.task} are not listed; "
            "--all shows every exclusion)"
        )
