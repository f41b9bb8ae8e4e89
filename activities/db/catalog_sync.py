"""`radiant catalog sync`: upsert the catalog (the one source of truth) into PostgreSQL.

Each row is written only when it differs from what is stored (`ON CONFLICT ... DO UPDATE ...
WHERE row IS DISTINCT FROM excluded`), so a second run changes nothing and reports 0 writes.
Rows the catalog no longer has are not deleted (thermal and service states and usage refer to
them); they are marked `status = 'deprecated'` instead (models and mid-level services;
providers: `enabled = false`), and are restored when the catalog brings them back. A deprecated
external model gives up its unique LiteLLM id when the catalog hands that id to another model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from activities.db import schema
from activities.db.engine import create_sync_engine, unavailable_error
from models_catalog.catalog import Catalog

# In foreign-key order: models -> providers, self_hosted_models -> instance_types.
CATALOG_TABLES = [
    schema.instance_types,
    schema.self_hosted_models,
    schema.mid_level_services,
    schema.providers,
    schema.models,
]


@dataclass
class SyncReport:
    written: dict[str, int] = field(default_factory=dict)  # inserted or changed rows per table
    unchanged: dict[str, int] = field(default_factory=dict)
    deprecated: dict[str, int] = field(default_factory=dict)

    @property
    def total_written(self) -> int:
        return sum(self.written.values()) + sum(self.deprecated.values())

    def summary(self) -> str:
        parts = []
        for t in self.written:
            part = f"{t}: {self.written[t]} written, {self.unchanged[t]} unchanged"
            if self.deprecated.get(t):
                gone = "disabled" if t == schema.providers.name else "deprecated"
                part += f", {self.deprecated[t]} {gone} (no longer in the catalog)"
            parts.append(part)
        return "; ".join(parts)


def _self_hosted_rows(catalog: Catalog) -> list[dict[str, Any]]:
    rows = []
    for m in catalog.models.values():
        p, t = m.pricing, m.thermal
        rows.append(
            {
                "model_id": m.id,
                "display_name": m.display_name,
                "description": m.description,
                "category": m.category.value,
                "specialty": m.specialty.value,
                "instance_type": m.instance_type,
                "image": m.image,
                "min_tier": m.min_tier,
                "gpu_memory_gb": m.gpu_memory_gb,
                "hourly_rate": p.hourly_rate,
                "per_request": p.per_request,
                "per_image": p.per_image,
                "per_minute_audio": p.per_minute_audio,
                "per_minute_video": p.per_minute_video,
                "per_3d_model": p.per_3d_model,
                "markup": p.markup,
                "default_state": t.default_state.value,
                "scale_to_zero_after_minutes": t.scale_to_zero_after_minutes,
                "warmup_time_seconds": t.warmup_time_seconds,
                "min_instances": t.min_instances,
                "max_instances": t.max_instances,
                "status": m.status.value,
                "deployable": True,
                "aliases": list(m.aliases),
                "capabilities": list(m.capabilities),
                "spec": m.model_dump(mode="json"),
            }
        )
    for r in catalog.registry_entries.values():
        rows.append(
            {
                "model_id": r.id,
                "display_name": r.display_name,
                "description": r.description,
                "category": r.category or "unknown",
                "specialty": r.specialty,
                "instance_type": None,
                "image": None,
                "min_tier": None,
                "gpu_memory_gb": None,
                "hourly_rate": None,
                "per_request": None,
                "per_image": None,
                "per_minute_audio": None,
                "per_minute_video": None,
                "per_3d_model": None,
                "markup": None,
                "default_state": None,
                "scale_to_zero_after_minutes": None,
                "warmup_time_seconds": None,
                "min_instances": None,
                "max_instances": None,
                "status": "active",
                "deployable": False,
                "aliases": [],
                "capabilities": list(r.tags),
                "spec": r.model_dump(mode="json"),
            }
        )
    return rows


def _rows(catalog: Catalog) -> dict[Table, list[dict[str, Any]]]:
    instances = [
        {
            "name": i.name,
            "vram_gb": i.vram_gb,
            "base_hourly": i.base_hourly,
            "billed_hourly": i.billed_hourly,
        }
        for i in catalog.instances.values()
    ]
    services = [
        {
            "service_id": s.id,
            "display_name": s.display_name,
            "description": s.description,
            "min_tier": s.min_tier,
            "required_models": list(s.required_models),
            "optional_models": list(s.optional_models),
            "default_state": s.default_state.value,
            "graceful_degradation": s.graceful_degradation,
            "per_request": s.pricing.per_request,
            "per_image": s.pricing.per_image,
            "per_minute_audio": s.pricing.per_minute_audio,
            "per_minute_video": s.pricing.per_minute_video,
            "per_3d_model": s.pricing.per_3d_model,
            "markup": s.pricing.markup,
            "operations": [op.model_dump(mode="json") for op in s.operations],
            "status": "active",  # back in the catalog: no longer deprecated
        }
        for s in catalog.services.values()
    ]
    providers = [
        {
            "id": p.id,
            "display_name": p.display_name,
            "category": str(p.category),
            "api_base_url": p.api_base or p.vendor_api_url,
            "auth_type": p.auth_type,
            "secret_name": p.secret_name,
            "regions": list(p.regions),
            "compliance": [str(c) for c in p.compliance],
            "rate_limit_rpm": p.rate_limit_rpm,
            "rate_limit_tpm": p.rate_limit_tpm,
            "enabled": p.status == "active",
            "spec": p.model_dump(mode="json"),
        }
        for p in catalog.providers.values()
    ]
    externals = [
        {
            "id": m.id,
            "provider_id": m.provider_id,
            "model_id": m.model_id,
            "litellm_id": m.litellm_id,
            "display_name": m.display_name,
            "category": str(m.category),
            "capabilities": list(m.capabilities),
            "context_window": m.context_window,
            "max_output": m.max_output_tokens,
            "pricing_type": m.pricing.type,
            "input_cost_per_1k": m.pricing.input_per_1k,
            "output_cost_per_1k": m.pricing.output_per_1k,
            "cached_input_cost_per_1k": m.pricing.cached_input_per_1k,
            "cache_write_input_cost_per_1k": m.pricing.cache_write_input_per_1k,
            "cache_write_1h_input_cost_per_1k": m.pricing.cache_write_1h_input_per_1k,
            "cost_per_request": m.pricing.per_request,
            "cost_per_image": m.pricing.per_image,
            "cost_per_second": m.pricing.per_second,
            "cost_per_minute": m.pricing.per_minute,
            "markup": m.pricing.markup,
            "min_tier": m.min_tier,
            "status": str(m.status.value),
            "spec": m.model_dump(mode="json"),
        }
        for m in catalog.external_models.values()
    ]
    by_table = {
        schema.instance_types.name: instances,
        schema.self_hosted_models.name: _self_hosted_rows(catalog),
        schema.mid_level_services.name: services,
        schema.providers.name: providers,
        schema.models.name: externals,
    }
    return {t: by_table[t.name] for t in CATALOG_TABLES}


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert or update rows that differ; returns how many were written."""
    if not rows:
        return 0
    pk = [c.name for c in table.primary_key.columns]
    cols = [c for c in rows[0] if c not in pk]
    stmt = insert(table).values(rows)
    changed = tuple_(*(table.c[c] for c in cols)).is_distinct_from(
        tuple_(*(stmt.excluded[c] for c in cols))
    )
    set_: dict[str, Any] = {c: stmt.excluded[c] for c in cols}
    if "updated_at" in table.c:
        set_["updated_at"] = func.now()
    stmt = stmt.on_conflict_do_update(index_elements=pk, set_=set_, where=changed)
    return conn.execute(stmt.returning(table.c[pk[0]])).rowcount or 0


def _deprecate_missing(conn: Connection, table: Table, keep: list[Any]) -> int:
    """Mark rows the catalog no longer has: `status = 'deprecated'`, or `enabled = false` for
    providers. Never deleted: thermal and service states, health and usage refer to them."""
    pk = next(iter(table.primary_key.columns))
    if "status" in table.c:
        stmt = (
            update(table)
            .where(pk.not_in(keep), table.c.status != "deprecated")
            .values(status="deprecated")
        )
    elif "enabled" in table.c:
        stmt = update(table).where(pk.not_in(keep), table.c.enabled).values(enabled=False)
    else:
        return 0
    return conn.execute(stmt).rowcount or 0


def _release_unique_names(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Free each single-column UNIQUE value (models.litellm_id) that a stored row holds while the
    catalog gives it to another row (a renamed model keeps its LiteLLM id; two models swap ids):
    the holder gets a placeholder, which the upsert below overwrites if the holder is still in
    the catalog, and which a deprecated row keeps."""
    pk = next(iter(table.primary_key.columns))
    for col in table.c:
        if not col.unique or col.primary_key or not rows or col.name not in rows[0]:
            continue
        owner = {r[col.name]: r[pk.name] for r in rows}
        held = conn.execute(select(pk, col).where(col.in_(list(owner)))).all()
        for key, value in held:
            if owner[value] != key:
                conn.execute(update(table).where(pk == key).values({col.name: f"released/{key}"}))


def sync_catalog(owner_url: str, catalog: Catalog) -> SyncReport:
    """Upsert the whole catalog in one transaction (as the owner role)."""
    engine = create_sync_engine(owner_url)
    report = SyncReport()
    try:
        with engine.begin() as conn:
            for table, rows in _rows(catalog).items():
                pk = next(iter(table.primary_key.columns)).name
                deprecated = _deprecate_missing(conn, table, [r[pk] for r in rows])
                if deprecated:
                    report.deprecated[table.name] = deprecated
                _release_unique_names(conn, table, rows)
                written = _upsert(conn, table, rows)
                report.written[table.name] = written
                report.unchanged[table.name] = len(rows) - written
    except OperationalError as err:
        raise unavailable_error(owner_url, err) from None
    finally:
        engine.dispose()
    return report


def stored_counts(owner_url: str) -> dict[str, int]:
    """Row counts of the catalog tables (for tests and `radiant catalog sync` output)."""
    engine = create_sync_engine(owner_url)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in CATALOG_TABLES
            }
    finally:
        engine.dispose()
