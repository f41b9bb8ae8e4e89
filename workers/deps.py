"""Build a worker's dependencies from settings (once per process)."""

from __future__ import annotations

from activities.backends.factory import create_backend
from activities.db.engine import check_database_async, create_app_engine, resolve_database_urls
from models_catalog.catalog import load_catalog
from workers.settings import Settings
from workers.worker import WorkerDeps


async def build_deps(settings: Settings) -> WorkerDeps:
    urls = resolve_database_urls(settings)
    await check_database_async(urls.app)  # fail at start-up with a clear message, not per activity
    return WorkerDeps(
        settings=settings,
        catalog=load_catalog(settings.catalog_dir),
        backend=create_backend(settings),
        engine=create_app_engine(urls.app),
    )
