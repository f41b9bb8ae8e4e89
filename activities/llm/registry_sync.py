"""Activities of the registry sync (seed 001 section 36.4): each run is logged in
`registry_sync_log`; health results go to `provider_health`; price differences and model-list
discoveries go to the log's `details` for review (the worker's role cannot change the catalog
tables, and nothing should change them silently).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm import health
from activities.llm.pricing_check import PricingReport, compare_prices
from activities.llm.provider_models import ModelsReport, sync_provider_models
from models_catalog.catalog import Catalog

SyncType = Literal["full", "health", "pricing", "thermal"]
SYNC_TYPES: tuple[str, ...] = ("full", "health", "pricing", "thermal")
ERR_INVALID_SYNC_TYPE = "InvalidSyncType"


def registry_sync_workflow_id(sync_type: str, suffix: str) -> str:
    return f"registry-sync/{sync_type}/{suffix}"


class RegistrySyncInput(BaseModel):
    sync_type: str = "full"  # validated by the workflow (a bad value fails it, not its task)


class StartLogInput(BaseModel):
    sync_type: str
    workflow_id: str


class FinishLogInput(BaseModel):
    log_id: int
    status: Literal["completed", "failed"]
    models_added: int = 0
    models_updated: int = 0
    models_deprecated: int = 0
    details: dict[str, Any] = Field(default_factory=dict)


class HealthReport(BaseModel):
    results: list[health.ProbeResult]
    not_in_database: list[str] = Field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(1 for r in self.results if r.checked)


class RegistrySyncResult(BaseModel):
    log_id: int
    sync_type: str
    status: str
    providers_checked: int = 0
    models_added: int = 0  # discovered, pending review (nothing is inserted)
    models_updated: int = 0
    models_deprecated: int = 0  # always 0: nothing is deprecated automatically
    errors: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class RegistrySyncActivities:
    def __init__(
        self,
        catalog: Catalog,
        engine: AsyncEngine | None,
        *,
        environ: Mapping[str, str] | None = None,
        base_overrides: Mapping[str, str] | None = None,
        health_timeout: float = health.DEFAULT_TIMEOUT_S,
        slow_ms: int = health.DEFAULT_SLOW_MS,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.environ = os.environ if environ is None else environ
        # provider id -> API root, for tests against local servers
        self.base_overrides = base_overrides if base_overrides is not None else {}
        self.health_timeout = health_timeout
        self.slow_ms = slow_ms

    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise ApplicationError("the worker has no database connection", non_retryable=True)
        return self.engine

    @activity.defn(name="registry.start_log")
    async def start_log(self, inp: StartLogInput) -> int:
        """The run's log row; a retried attempt finds the row its first attempt wrote."""
        async with self._engine().begin() as conn:
            found = await conn.execute(
                text("SELECT id FROM registry_sync_log WHERE details->>'workflow_id' = :wf"),
                {"wf": inp.workflow_id},
            )
            row = found.first()
            if row is not None:
                return int(row[0])
            inserted = await conn.execute(
                text(
                    "INSERT INTO registry_sync_log (sync_type, status, details) "
                    "VALUES (:t, 'running', CAST(:d AS jsonb)) RETURNING id"
                ),
                {"t": inp.sync_type, "d": json.dumps({"workflow_id": inp.workflow_id})},
            )
            return int(inserted.scalar_one())

    @activity.defn(name="registry.finish_log")
    async def finish_log(self, inp: FinishLogInput) -> None:
        async with self._engine().begin() as conn:
            await conn.execute(
                text(
                    "UPDATE registry_sync_log SET status = :s, finished_at = now(), "
                    "models_added = :a, models_updated = :u, models_deprecated = :d, "
                    "details = details || CAST(:details AS jsonb) WHERE id = :id"
                ),
                {
                    "s": inp.status,
                    "a": inp.models_added,
                    "u": inp.models_updated,
                    "d": inp.models_deprecated,
                    "details": json.dumps(inp.details, default=str),
                    "id": inp.log_id,
                },
            )

    @activity.defn(name="registry.check_health")
    async def check_health(self) -> HealthReport:
        providers = [p for p in self.catalog.providers.values() if p.status == "active"]
        results = await health.probe_all(
            providers,
            self.environ,
            base_overrides=self.base_overrides,
            timeout_s=self.health_timeout,
            slow_ms=self.slow_ms,
        )
        engine = self._engine()
        skipped = await health.record(engine, results, await health.known_providers(engine))
        return HealthReport(results=results, not_in_database=skipped)

    @activity.defn(name="registry.check_pricing")
    async def check_pricing(self) -> PricingReport:
        return compare_prices(self.catalog)

    @activity.defn(name="registry.list_provider_models")
    async def list_provider_models(self) -> ModelsReport:
        return await sync_provider_models(self.catalog, self.environ, self.base_overrides)
