"""One job (or LLM request) per request id of a tenant, whichever workflow id runs it.

Temporal keeps one workflow per workflow id, but `job/acme/...` and `job/<acme's uuid>/...`
(or a workflow started by hand under any id) are different ids for the same request. The first
workflow to plan a request claims it (tenant id + request key, in `request_claims`); another
workflow is then refused before any cost while the claimant runs, and for good once the
request is metered (`complete_claim`). A claimant that ended without being metered (failed,
cancelled, terminated: never charged) is taken over, so the request may run again, as it may
under its own workflow id.

Whether a claimant still runs is asked of Temporal (the source of truth), not guessed from a
timeout; a workflow Temporal no longer knows (past retention) is not running.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.db.schema import request_claims
from activities.db.tenancy import tenant_transaction

#: Rounds of "claimant ended: take over" lost to another taker before giving up (retryable).
TAKEOVER_ROUNDS = 3


@dataclass(frozen=True)
class ClaimConflict:
    """The request belongs to another workflow: done (`completed_at` set) or still running."""

    workflow_id: str
    claimed_at: datetime
    completed_at: datetime | None

    @property
    def running(self) -> bool:
        return self.completed_at is None


def llm_request_key(kind: str, request_id: str) -> str:
    """An LLM request's claim key (a job's is `workflows.service_types.job_billing_id`)."""
    return f"llm/{kind}/{request_id}"


async def claim_request(
    engine: AsyncEngine, client: Client, tenant_id: str, request_key: str, workflow_id: str
) -> ClaimConflict | None:
    """Claim the request for `workflow_id`; None when it is (now) this workflow's to run.

    Idempotent: a retried activity, or a new run of the same workflow id after a failed one,
    finds its own claim.
    """
    tenant = uuid.UUID(tenant_id)
    where = (request_claims.c.tenant_id == tenant, request_claims.c.request_key == request_key)
    for _ in range(TAKEOVER_ROUNDS):
        async with tenant_transaction(engine, tenant) as conn:
            inserted = await conn.execute(
                pg_insert(request_claims)
                .values(tenant_id=tenant, request_key=request_key, workflow_id=workflow_id)
                .on_conflict_do_nothing()
                .returning(request_claims.c.workflow_id)
            )
            if inserted.first() is not None:
                return None
            row = (
                await conn.execute(
                    select(
                        request_claims.c.workflow_id,
                        request_claims.c.claimed_at,
                        request_claims.c.completed_at,
                    ).where(*where)
                )
            ).one()
        held = ClaimConflict(row.workflow_id, row.claimed_at, row.completed_at)
        if held.completed_at is not None:
            return held  # metered: done, even for its own workflow id
        if held.workflow_id == workflow_id:
            return None
        if await _running(client, held.workflow_id):
            return held
        async with tenant_transaction(engine, tenant) as conn:
            taken = await conn.execute(
                update(request_claims)
                .where(
                    *where,
                    request_claims.c.workflow_id == held.workflow_id,
                    request_claims.c.completed_at.is_(None),
                )
                .values(workflow_id=workflow_id, claimed_at=func.now())
            )
            if taken.rowcount == 1:
                return None
        # Another workflow took it over (or the claimant completed) meanwhile: look again.
    raise RuntimeError(f"request {request_key} changed hands {TAKEOVER_ROUNDS} times; retrying")


async def complete_claim(engine: AsyncEngine, tenant_id: str, workflow_id: str) -> int:
    """Mark this workflow's claim done (called once its usage is recorded); idempotent.

    Requests planned before claims existed have none: nothing to mark (their ledger rows still
    refuse a second charge of a job)."""
    async with tenant_transaction(engine, tenant_id) as conn:
        done = await conn.execute(
            update(request_claims)
            .where(
                request_claims.c.tenant_id == uuid.UUID(tenant_id),
                request_claims.c.workflow_id == workflow_id,
                request_claims.c.completed_at.is_(None),
            )
            .values(completed_at=func.now())
        )
        return done.rowcount


async def _running(client: Client, workflow_id: str) -> bool:
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise  # Temporal unreachable: the activity retries
    return desc.status == WorkflowExecutionStatus.RUNNING
