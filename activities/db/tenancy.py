"""Tenant-scoped transactions for row-level security (DESIGN 6).

The usage ledger's policy admits only rows whose tenant_id equals the transaction-local setting
`app.current_tenant_id`. It is set with `set_config(..., true)` (transaction-local, a bind
parameter rather than string-built `SET LOCAL`), so it cannot leak to the next user of a pooled
connection; outside such a transaction the application role sees no ledger rows at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy import Connection, Engine, Executable, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from activities.db.schema import TENANT_SETTING


def _tenant_uuid(tenant_id: uuid.UUID | str) -> str:
    # Validate here: a malformed id would otherwise fail later inside the policy's ::uuid cast.
    return str(tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id)))


def _set_tenant_stmt(tenant_id: uuid.UUID | str) -> Executable:
    return select(func.set_config(TENANT_SETTING, _tenant_uuid(tenant_id), True))


@asynccontextmanager
async def tenant_transaction(
    engine: AsyncEngine, tenant_id: uuid.UUID | str
) -> AsyncIterator[AsyncConnection]:
    """Begin a transaction acting for `tenant_id`; commits on success, rolls back on error.

    Usage::

            async with tenant_transaction(engine, tenant_id) as conn:
            await conn.execute(insert(usage_ledger).values(...).on_conflict_do_nothing(...))
    """
    async with engine.begin() as conn:
        await conn.execute(_set_tenant_stmt(tenant_id))
        yield conn


@contextmanager
def tenant_transaction_sync(engine: Engine, tenant_id: uuid.UUID | str) -> Iterator[Connection]:
    """Sync twin of `tenant_transaction` (commands, reports)."""
    with engine.begin() as conn:
        conn.execute(_set_tenant_stmt(tenant_id))
        yield conn
