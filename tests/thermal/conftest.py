"""A worker with the real thermal workflows, the local stand-in backend and a migrated
PostgreSQL; durations shortened through ThermalTimings instead of time skipping."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.backends.local import LocalStandInBackend
from activities.backends.base import HostingBackend
from activities.db.catalog_sync import sync_catalog
from activities.db.engine import create_app_engine
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from workers.settings import Settings
from workers.worker import WorkerDeps, build_worker
from workflows.thermal_types import ThermalTimings

TIMINGS = ThermalTimings(idle_seconds=3.0, poll_seconds=0.2, warmup_deadline_seconds=60)


@dataclass
class ThermalHarness:
    client: Client
    control: ThermalControl
    backend: HostingBackend
    engine: AsyncEngine
    settings: Settings
    task_queue: str

    def new_app(self) -> str:
        """A fresh app id: every test owns its own (app, env, model) workflows and endpoints."""
        return f"t{uuid.uuid4().hex[:8]}"

    async def rows(self, sql: str, **params: object) -> list[dict]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


def make_settings(data_dir: Path, owner_url: str, app_url: str, task_queue: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        backend="local",
        database_url=owner_url,
        app_database_url=app_url,
        task_queue=task_queue,
        thermal_idle_seconds=TIMINGS.idle_seconds,
        thermal_poll_seconds=TIMINGS.poll_seconds,
    )


@pytest.fixture(scope="session")
def catalog_db(migrated_db):
    """The migrated database with the catalog synced (thermal_states refers to the models)."""
    sync_catalog(migrated_db.owner_url, load_catalog())
    return migrated_db


@pytest_asyncio.fixture(scope="session")
async def thermal(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ThermalHarness]:
    migrated_db = catalog_db
    data_dir = tmp_path_factory.mktemp("thermal-data")
    queue = f"thermal-{uuid.uuid4().hex[:6]}"
    settings = make_settings(data_dir, migrated_db.owner_url, migrated_db.app_url, queue)
    engine = create_app_engine(migrated_db.app_url)
    backend = LocalStandInBackend(data_dir)
    deps = WorkerDeps(settings=settings, catalog=load_catalog(), backend=backend, engine=engine)
    async with build_worker(temporal_client, deps, queue):
        yield ThermalHarness(
            client=temporal_client,
            control=ThermalControl(temporal_client, queue, TIMINGS),
            backend=backend,
            engine=engine,
            settings=settings,
            task_queue=queue,
        )
        for info in await backend.list_endpoints("radiant-"):
            await backend.delete_endpoint(info.endpoint_name)
    await engine.dispose()
