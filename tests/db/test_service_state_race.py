"""Service-state refreshes against concurrent transactions on the real PostgreSQL: a scheduled
refresh must not undo an admin's disable, and two refreshes must not notify one change twice.

Refresh A is held right after it read the (app, env) (the moment a concurrent transaction can
slip in), refresh B runs meanwhile; A is released once B has either finished or is waiting on a
lock, so the test needs no sleeps and passes or fails the same way on every run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities import service_states
from activities.db.engine import create_app_engine
from activities.service_states import refresh_service_states
from models_catalog.catalog import load_catalog
from models_catalog.service_state import service_status
from tests.fixtures.postgres import MigratedDb
from tests.fixtures.waiting import wait_for

CATALOG = load_catalog()
ENV = "test"
SERVICE = "perception"


@pytest_asyncio.fixture
async def engine(catalog_db: MigratedDb) -> AsyncIterator[AsyncEngine]:
    """The worker's role on the database with the catalog synced (service_states refers to
    the services); each test uses its own app id, so nothing needs emptying."""
    eng = create_app_engine(catalog_db.app_url)
    yield eng
    await eng.dispose()


class HeldRefresh:
    """Holds the first refresh after it read its scope until `release()`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read = asyncio.Event()
        self._go = asyncio.Event()
        original = service_states.load_scope

        async def load_scope(*args: Any, **kwargs: Any) -> Any:
            scope = await original(*args, **kwargs)
            if not self.read.is_set():
                self.read.set()
                await self._go.wait()
            return scope

        monkeypatch.setattr(service_states, "load_scope", load_scope)

    def release(self) -> None:
        self._go.set()


async def lock_waiters(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        ).scalar_one()


async def race(engine: AsyncEngine, held: HeldRefresh, app: str, **b_kwargs: Any) -> None:
    """Refresh A (plain) is held after its reads while refresh B (`b_kwargs`) runs."""
    a = asyncio.create_task(refresh_service_states(engine, CATALOG, app, ENV))
    await asyncio.wait_for(held.read.wait(), 30)
    b = asyncio.create_task(refresh_service_states(engine, CATALOG, app, ENV, **b_kwargs))

    async def b_finished_or_blocked() -> bool:
        return b.done() or await lock_waiters(engine) > 0

    await wait_for(b_finished_or_blocked)
    held.release()
    await asyncio.gather(a, b)


async def stored(engine: AsyncEngine, app: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT state, admin_disabled FROM service_states "
                    "WHERE app_id = :a AND environment = :e AND service_id = :s"
                ),
                {"a": app, "e": ENV, "s": SERVICE},
            )
        ).one()
    return {"state": row[0], "admin_disabled": row[1]}


async def notifications(engine: AsyncEngine, app: str) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT count(*) FROM notifications WHERE kind = 'service.state_changed' "
                    "AND app_id = :a AND environment = :e AND service_id = :s"
                ),
                {"a": app, "e": ENV, "s": SERVICE},
            )
        ).scalar_one()


async def test_refresh_does_not_undo_a_concurrent_disable(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = f"race{uuid.uuid4().hex[:8]}"
    await refresh_service_states(engine, CATALOG, app, ENV, set_disabled={SERVICE: False})
    assert (await stored(engine, app))["state"] != "DISABLED"

    held = HeldRefresh(monkeypatch)
    await race(engine, held, app, set_disabled={SERVICE: True})  # `radiant services disable`

    assert await stored(engine, app) == {"state": "DISABLED", "admin_disabled": True}


async def test_concurrent_refreshes_notify_a_change_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = f"race{uuid.uuid4().hex[:8]}"  # no stored state yet: the first refresh is a change
    held = HeldRefresh(monkeypatch)
    await race(engine, held, app)

    assert await notifications(engine, app) == 1


async def test_the_reason_says_who_disabled_a_service(engine: AsyncEngine):
    """The seeds ship services DISABLED: no refresh (the first stores the default as the
    flag) may claim an admin did it; disabling a service the catalog ships enabled is."""
    app = f"r{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        rows = {r.service_id: r for r in await refresh_service_states(engine, CATALOG, app, ENV)}
        assert rows["perception"].state.value == "DISABLED"
        assert "catalog's default" in rows["perception"].reason
    enabled = CATALOG.service("perception").model_copy(update={"default_state": "RUNNING"})
    status = service_status(CATALOG, enabled, {}, admin_disabled=True)
    assert (status.state.value, status.reason) == ("DISABLED", "disabled by an admin")


async def test_a_state_change_notification_names_its_app_and_environment(engine: AsyncEngine):
    """`radiant watch` prints the payload: it alone must say which (app, env) changed."""
    app = f"race{uuid.uuid4().hex[:8]}"
    await refresh_service_states(engine, CATALOG, app, ENV)
    async with engine.connect() as conn:
        payload = (
            await conn.execute(
                text(
                    "SELECT payload FROM notifications WHERE kind = 'service.state_changed' "
                    "AND app_id = :a AND service_id = :s"
                ),
                {"a": app, "s": SERVICE},
            )
        ).scalar_one()
    assert (payload["app_id"], payload["environment"], payload["service_id"]) == (
        app,
        ENV,
        SERVICE,
    )
