"""A worker with the thermal and LLM workflows, the local stand-in backend, a migrated PostgreSQL
and local HTTP fakes for providers. Provider keys, LiteLLM mock responses and fake URLs are
injected into the activities (no os.environ changes, no network)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.backends.local import LocalStandInBackend
from activities.db.catalog_sync import sync_catalog
from activities.db.engine import create_app_engine, libpq_conninfo
from activities.db.tenancy import tenant_transaction
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from tests.llm.fakes import FakeBehaviour, RunningFake, fake_server
from workers.llm_registration import LLM_WORKFLOWS, llm_activities
from workers.settings import Settings
from workers.worker import WORKFLOWS, WorkerDeps, activities_for
from workflows.thermal_types import ThermalTimings

TIMINGS = ThermalTimings(idle_seconds=120.0, poll_seconds=0.2, warmup_deadline_seconds=60)
CATALOG = load_catalog()
ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-test-anthropic"}
TENANTS = {"t1": 1, "t3": 3, "t5": 5}
MOCK_CLAUDE = "mocked claude answer"


@dataclass
class LLMHarness:
    client: Client
    control: ThermalControl
    backend: LocalStandInBackend
    engine: AsyncEngine
    settings: Settings
    task_queue: str
    openai: RunningFake  # every OpenAI-account model is pointed at this fake
    overrides: dict[str, dict[str, Any]]
    environ: dict[str, str]
    base_overrides: dict[str, str]
    tenants: dict[str, str] = field(default_factory=dict)  # short name -> tenant name

    def new_app(self) -> str:
        return f"l{uuid.uuid4().hex[:8]}"

    def tenant(self, short: str) -> str:
        return self.tenants[short]

    async def ledger(self, tenant_name: str, workflow_id: str) -> list[dict]:
        tenant_id = await self.tenant_id(tenant_name)
        async with tenant_transaction(self.engine, tenant_id) as conn:
            rows = await conn.execute(
                text("SELECT * FROM usage_ledger WHERE workflow_id = :w"), {"w": workflow_id}
            )
            return [dict(r) for r in rows.mappings()]

    async def tenant_id(self, name: str) -> str:
        async with self.engine.connect() as conn:
            row = await conn.execute(
                text("SELECT id::text FROM tenants WHERE name = :n"), {"n": name}
            )
            return row.scalar_one()


def _overrides(openai: RunningFake) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model in CATALOG.external_models.values():
        if CATALOG.providers[model.provider_id].api_key_env == "OPENAI_API_KEY":
            out[model.id] = {"api_base": openai.v1}
        elif model.provider_id == "anthropic":
            out[model.id] = {"mock_response": MOCK_CLAUDE}
    return out


def _unique(fns: list[Any]) -> list[Any]:
    """First activity of each name (a worker refuses two activities with one name)."""
    seen: set[str] = set()
    out = []
    for fn in fns:
        name = fn.__temporal_activity_definition.name
        if name not in seen:
            seen.add(name)
            out.append(fn)
    return out


@pytest.fixture(scope="session")
def openai_fake() -> Iterator[RunningFake]:
    with fake_server(FakeBehaviour()) as fake:
        yield fake


@pytest.fixture(scope="session")
def llm_tenants(migrated_db) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    names = {short: f"llm-{short}-{suffix}" for short in TENANTS}
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url), autocommit=True) as conn:
        for short, tier in TENANTS.items():
            conn.execute("INSERT INTO tenants (name, tier) VALUES (%s, %s)", (names[short], tier))
    return names


@pytest_asyncio.fixture(scope="session")
async def llm(
    temporal_client: Client,
    migrated_db,
    llm_tenants: dict[str, str],
    openai_fake: RunningFake,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LLMHarness]:
    data_dir: Path = tmp_path_factory.mktemp("llm-data")
    queue = f"llm-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        data_dir=data_dir,
        backend="local",
        database_url=migrated_db.owner_url,
        app_database_url=migrated_db.app_url,
        task_queue=queue,
        thermal_idle_seconds=TIMINGS.idle_seconds,
        thermal_poll_seconds=TIMINGS.poll_seconds,
    )
    sync_catalog(migrated_db.owner_url, CATALOG)
    engine = create_app_engine(migrated_db.app_url)
    backend = LocalStandInBackend(data_dir)
    deps = WorkerDeps(settings=settings, catalog=CATALOG, backend=backend, engine=engine)
    overrides = _overrides(openai_fake)
    environ = dict(ENV)
    base_overrides: dict[str, str] = {}
    ours = llm_activities(
        deps,
        temporal_client,
        queue,
        environ=environ,
        overrides=overrides,
        base_overrides=base_overrides,
    )
    worker = Worker(
        temporal_client,
        task_queue=queue,
        # Deduplicated: once the lead wires the LLM part into the worker, these lists overlap;
        # ours come first so the test's keys, mocks and fake URLs win.
        workflows=list(dict.fromkeys([*LLM_WORKFLOWS, *WORKFLOWS])),
        activities=_unique([*ours, *activities_for(deps, temporal_client, queue)]),
        max_concurrent_activities=50,
    )
    async with worker:
        yield LLMHarness(
            client=temporal_client,
            control=ThermalControl(temporal_client, queue, TIMINGS),
            backend=backend,
            engine=engine,
            settings=settings,
            task_queue=queue,
            openai=openai_fake,
            overrides=overrides,
            environ=environ,
            base_overrides=base_overrides,
            tenants=llm_tenants,
        )
        for info in await backend.list_endpoints("radiant-"):
            await backend.delete_endpoint(info.endpoint_name)
    await deps.aclose()
