"""`radiant catalog`: list, show and validate the model catalog.

Every command takes `--json`. Bad input (an unknown id, a missing directory) is one line on stderr
and exit code 2; `validate` exits 1 when the catalog has problems. Never a traceback.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console

from models_catalog.catalog import DATA_DIR, Catalog, load_catalog, suggest
from models_catalog.errors import CatalogError, CatalogValidationError, UnknownModelError
from models_catalog.types import UNIT_PRICE_FIELD, SelfHostedModel
from workers.cli.common import DataTable, catalog_or_fail, esc

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class Kind(StrEnum):
    models = "models"
    registry = "registry"
    services = "services"
    providers = "providers"
    all = "all"


# ----------------------------------------------------------------------------- helpers


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {esc(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _catalog() -> Catalog:
    """The catalog the settings point at (settings.catalog_dir, else the bundled data)."""
    from workers.settings import get_settings

    return catalog_or_fail(get_settings().catalog_dir)


def _dump(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(mode="json")


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _counts(cat: Catalog) -> dict[str, int]:
    return {
        "deployable_models": len(cat.models),
        "registry_entries": len(cat.registry_entries),
        "aliases": len(cat.aliases),
        "instance_types": len(cat.instances),
        "services": len(cat.services),
        "operations": len(cat.operations()),
        "providers": len(cat.providers),
        "external_models": len(cat.external_models),
    }


def _unit_prices(model: SelfHostedModel) -> str:
    parts = []
    for unit, field in UNIT_PRICE_FIELD.items():
        price = getattr(model.pricing, field)
        if price is not None:
            parts.append(f"${price}/{unit}")
    return ", ".join(parts)


def _used_by(cat: Catalog, model_id: str) -> list[str]:
    return [
        f"{svc.id}/{op.id}" + ("" if model_id in op.required_models else " (optional)")
        for svc, op in cat.operations()
        if model_id in op.models
    ]


# ----------------------------------------------------------------------------- list


@app.command("list")
def list_catalog(
    kind: Annotated[Kind, typer.Option("--kind", "-k", help="What to list.")] = Kind.all,
    as_json: JsonOpt = False,
) -> None:
    """List deployable models, registry entries, services and external providers."""
    cat = _catalog()
    want = {k for k in Kind if k != Kind.all} if kind == Kind.all else {kind}
    if as_json:
        out: dict[str, Any] = {}
        if Kind.models in want:
            out["deployable_models"] = [_dump(m) for m in cat.models.values()]
        if Kind.registry in want:
            out["registry_entries"] = [_dump(r) for r in cat.registry_entries.values()]
        if Kind.services in want:
            out["services"] = [_dump(s) for s in cat.services.values()]
            out["operations_count"] = len(cat.operations())
        if Kind.providers in want:
            out["providers"] = [_dump(p) for p in cat.providers.values()]
            out["external_models"] = [_dump(m) for m in cat.external_models.values()]
        _echo_json(out)
        return
    if Kind.models in want:
        console.print(_models_table(cat))
    if Kind.registry in want:
        console.print(_registry_table(cat))
    if Kind.services in want:
        console.print(_services_table(cat))
        console.print(_operations_table(cat))
    if Kind.providers in want:
        console.print(_providers_table(cat))


def _models_table(cat: Catalog) -> DataTable:
    t = DataTable(title=f"Deployable self-hosted models ({len(cat.models)})")
    for col in ("id", "name", "category", "instance", "$/hour", "unit price", "thermal", "tier"):
        t.add_column(col)
    t.add_column("status")
    for m in cat.models.values():
        th = m.thermal
        t.add_row(
            m.id + (f" ({', '.join(m.aliases)})" if m.aliases else ""),
            m.display_name,
            str(m.category),
            m.instance_type,
            str(m.pricing.hourly_rate),
            _unit_prices(m),
            f"{th.default_state} {th.min_instances}-{th.max_instances}",
            str(m.min_tier),
            str(m.status),
        )
    return t


def _registry_table(cat: Catalog) -> DataTable:
    t = DataTable(title=f"Registry entries, not deployable ({len(cat.registry_entries)})")
    for col in ("id", "name", "category", "specialty", "description", "seed"):
        t.add_column(col)
    for r in cat.registry_entries.values():
        desc = r.description + ("…" if r.truncated else "")
        t.add_row(r.id, r.display_name, r.category or "-", r.specialty or "-", desc, r.seed_ref)
    return t


def _services_table(cat: Catalog) -> DataTable:
    t = DataTable(title=f"Mid-level services ({len(cat.services)})")
    for col in ("id", "name", "tier", "required", "optional", "pricing"):
        t.add_column(col)
    for s in cat.services.values():
        prices = ", ".join(
            f"${getattr(s.pricing, f)}/{u}"
            for u, f in UNIT_PRICE_FIELD.items()
            if getattr(s.pricing, f) is not None
        )
        t.add_row(
            s.id,
            s.display_name,
            str(s.min_tier),
            ", ".join(s.required_models),
            ", ".join(s.optional_models),
            f"{prices} (markup {s.pricing.markup})",
        )
    return t


def _operations_table(cat: Catalog) -> DataTable:
    t = DataTable(title=f"Operations ({len(cat.operations())})")
    for col in ("path", "required", "optional", "unit", "long", "accepts"):
        t.add_column(col)
    for _svc, op in cat.operations():
        t.add_row(
            op.path,
            ", ".join(op.required_models),
            ", ".join(op.optional_models) or "-",
            op.unit,
            "yes" if op.long_running else "no",
            ", ".join(op.content_types),
        )
    return t


def _providers_table(cat: Catalog) -> DataTable:
    t = DataTable(
        title=f"External providers ({len(cat.providers)}), {len(cat.external_models)} models"
    )
    for col in ("id", "name", "category", "litellm", "models"):
        t.add_column(col)
    per_provider: dict[str, int] = {}
    for m in cat.external_models.values():
        per_provider[m.provider_id] = per_provider.get(m.provider_id, 0) + 1
    for p in cat.providers.values():
        t.add_row(
            p.id,
            p.display_name,
            str(p.category),
            p.litellm_provider or "-",
            str(per_provider.get(p.id, 0)),
        )
    return t


# ----------------------------------------------------------------------------- show


@app.command("show")
def show(
    item_id: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="Model id or alias, registry entry, service, service/operation or provider.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Show one model, registry entry, service, operation, provider or external model."""
    cat = _catalog()
    kind, data = _find(cat, item_id)
    if as_json:
        _echo_json({"kind": kind, **data})
        return
    t = DataTable(title=f"{kind} {data.get('id', item_id)}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for key, value in data.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        t.add_row(key, str(value))
    console.print(t)


def _find(cat: Catalog, item_id: str) -> tuple[str, dict[str, Any]]:
    """(kind, fields) of the first thing named `item_id`: models win, then services, providers."""
    key = item_id.strip().lower()
    try:
        model_id = cat.resolve_model_id(key)
    except UnknownModelError:
        model_id = None
    if model_id in cat.models:
        model = cat.models[model_id]
        data = _dump(model)
        if model_id != key:
            data["resolved_from"] = item_id
        data["instance"] = _dump(cat.instance_for(model))
        data["used_by"] = _used_by(cat, model_id)
        return "model", data
    if model_id in cat.registry_entries:
        return "registry_entry", _dump(cat.registry_entries[model_id])
    if key.strip("/") in cat.services:
        return "service", _dump(cat.services[key.strip("/")])
    if "/" in key.strip("/"):
        svc_id, _, op_id = key.strip("/").partition("/")
        if svc_id in cat.services:
            try:
                return "operation", {"service": svc_id, **_dump(cat.operation(svc_id, op_id))}
            except CatalogError as exc:
                _fail(str(exc))
    if key in cat.providers:
        prov = cat.providers[key]
        data = _dump(prov)
        data["models"] = [m.id for m in cat.external_models.values() if m.provider_id == key]
        return "provider", data
    for ext in cat.external_models.values():
        if key in {ext.id, ext.litellm_id.lower(), *(a.lower() for a in ext.aliases)}:
            return "external_model", _dump(ext)
    _fail(str(UnknownModelError(item_id, _suggest_any(cat, key))))


def _suggest_any(cat: Catalog, key: str) -> list[str]:
    names = [
        *cat.models,
        *cat.aliases,
        *cat.registry_entries,
        *cat.services,
        *(f"{s.id}/{o.id}" for s, o in cat.operations()),
        *cat.providers,
        *cat.external_models,
    ]
    return suggest(key, names, canonical=cat.aliases)


# ----------------------------------------------------------------------------- validate


@app.command("validate")
def validate(
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", help="Catalog directory (default: settings.catalog_dir or the bundled data)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a catalog directory; exit 1 and list every problem if it is invalid."""
    if path is None:
        from workers.settings import get_settings

        path = get_settings().catalog_dir
    if path is not None and not path.is_dir():
        _fail(f"catalog directory {str(path)!r} does not exist or is not a directory")
    try:
        # A fresh load even for the bundled data: validate must re-read the files.
        cat = load_catalog(path or DATA_DIR)
    except CatalogValidationError as exc:
        if as_json:
            _echo_json({"ok": False, "path": str(path or DATA_DIR), "problems": exc.problems})
        else:
            err_console.print(
                f"[bold red]catalog is invalid[/] ({len(exc.problems)} problem(s)) in "
                f"{esc(str(path or DATA_DIR))}:",
                highlight=False,
                soft_wrap=True,
            )
            for problem in exc.problems:
                err_console.print(f"  - {esc(problem)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    counts = _counts(cat)
    if as_json:
        _echo_json({"ok": True, "path": str(cat.data_dir), "problems": [], "counts": counts})
        return
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
    console.print(
        f"[green]catalog OK[/] ({esc(str(cat.data_dir))}): {summary}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("sync")
def sync(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Upsert the catalog into PostgreSQL (running it twice changes nothing)."""
    from sqlalchemy.exc import SQLAlchemyError

    from activities.db.catalog_sync import sync_catalog
    from activities.db.engine import one_line, resolve_database_urls
    from activities.db.errors import DatabaseError
    from workers.cli.common import not_migrated

    cat = _catalog()
    try:
        from workers.settings import get_settings

        urls = resolve_database_urls(get_settings())
        urls.require_owner("catalog sync")
        report = sync_catalog(urls.owner, cat)
    except DatabaseError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:  # e.g. the tables do not exist yet
        _fail(not_migrated(exc) or f"catalog sync failed: {one_line(getattr(exc, 'orig', exc))}")
    if as_json:
        _echo_json(
            {
                "written": report.written,
                "unchanged": report.unchanged,
                "deprecated": report.deprecated,
                "total_written": report.total_written,
            }
        )
        return
    Console().print(f"catalog sync: {esc(report.summary())}")
