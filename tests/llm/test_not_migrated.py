"""An LLM request on a database the migrations have not (fully) prepared: the caller reads the
to-do (`radiant db upgrade`) in one line, at once, instead of a raw SQL error after 5 retries;
a database that is merely unreachable stays a retryable failure."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import psycopg
import pytest
import pytest_asyncio
import typer
from sqlalchemy.exc import OperationalError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.db import migrate
from activities.db.engine import create_app_engine, libpq_conninfo
from activities.llm.activities import LLMActivities, PrepareInput
from activities.llm.types import LLMRequest, llm_workflow_id
from activities.thermal_control import ThermalControl
from tests.fixtures.postgres import TEST_APP_PASSWORD, TEST_APP_ROLE, app_url_for
from tests.llm.conftest import CATALOG, ENV
from workers.cli import llm as llm_cli
from workers.settings import get_settings
from workflows.llm import ChatCompletionWorkflow

pytestmark = pytest.mark.slow

cli = typer.Typer()
cli.add_typer(llm_cli.app, name="llm")


@dataclass
class OldDatabase:
    """A worker whose database is at revision 0001 (no `request_claims`, migration 0002)."""

    owner_url: str
    tenant: str
    task_queue: str
    activities: LLMActivities


@pytest_asyncio.fixture
async def old_database(
    fresh_database: Callable[[], str], temporal_client: Client, tmp_path
) -> AsyncIterator[OldDatabase]:
    owner_url = fresh_database()
    migrate.upgrade(owner_url, "0001", app_role=TEST_APP_ROLE, app_password=TEST_APP_PASSWORD)
    tenant = f"old-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(libpq_conninfo(owner_url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (name, tier) VALUES (%s, 1)", (tenant,))
    engine = create_app_engine(app_url_for(owner_url))
    queue = f"llm-old-{uuid.uuid4().hex[:6]}"
    acts = LLMActivities(
        CATALOG,
        engine,
        ThermalControl(temporal_client, queue),
        backend_kind="local",
        data_dir=tmp_path,
        environ=dict(ENV),
    )
    worker = Worker(
        temporal_client,
        task_queue=queue,
        workflows=[ChatCompletionWorkflow],
        activities=[acts.prepare, acts.hold_warm, acts.start_warm_up, acts.call, acts.meter],
    )
    try:
        async with worker:
            yield OldDatabase(owner_url, tenant, queue, acts)
    finally:
        await engine.dispose()


def chat_request(tenant: str) -> LLMRequest:
    return LLMRequest(
        request_id=uuid.uuid4().hex[:12],
        tenant=tenant,
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
    )


async def test_llm_chat_on_an_unmigrated_database_says_what_to_run(
    old_database: OldDatabase, temporal_client: Client, monkeypatch, tmp_path
):
    monkeypatch.setenv("RADIANT_DATABASE_URL", old_database.owner_url)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(
        "RADIANT_TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host
    )
    monkeypatch.setenv("RADIANT_TASK_QUEUE", old_database.task_queue)
    get_settings.cache_clear()
    request_id = uuid.uuid4().hex[:12]
    try:
        res = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["llm", "chat", "hi", "--tenant", old_database.tenant, "--model", "gpt-4o"]
            + ["--request-id", request_id],
        )
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [
        'error: the database is not migrated yet (relation "request_claims" does not exist): '
        "run `radiant db upgrade`, or `radiant up`, which migrates it"
    ], res.stderr
    # refused on the first attempt: a missing table is not retried
    handle = temporal_client.get_workflow_handle(
        llm_workflow_id(old_database.tenant, "chat", request_id)
    )
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts == [1], attempts


async def test_prepare_refusal_names_the_missing_table(old_database: OldDatabase):
    req = chat_request(old_database.tenant)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            old_database.activities.prepare, PrepareInput(kind="chat", request=req)
        )
    assert err.value.type == "DatabaseNotMigrated" and err.value.non_retryable
    assert 'relation "request_claims" does not exist' in err.value.message
    assert "[SQL:" not in err.value.message and "\n" not in err.value.message


async def test_an_unreachable_database_stays_retryable(temporal_client: Client, tmp_path):
    """Connection failures may be transient: the activity's retry policy still applies."""
    engine = create_app_engine("postgresql+psycopg://u:secret@127.0.0.1:1/db")
    acts = LLMActivities(
        CATALOG,
        engine,
        ThermalControl(temporal_client, "unused"),
        backend_kind="local",
        data_dir=tmp_path,
        environ=dict(ENV),
    )
    try:
        with pytest.raises(OperationalError):
            await ActivityEnvironment().run(
                acts.prepare, PrepareInput(kind="chat", request=chat_request("anyone"))
            )
    finally:
        await engine.dispose()
