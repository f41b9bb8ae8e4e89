"""One job (or LLM request) per request id of a tenant, whichever workflow id runs it.

Temporal keeps one workflow per workflow id, but `job/acme/...` and `job/<acme's uuid>/...`
(or a workflow started by hand under any id) are different ids for the same request. The first
workflow to plan a request claims it (tenant id + request key, in `request_claims`); another
workflow is then refused before any cost while the claimant runs, and for good once the
request is metered (`lock_for_completion`, in the ledger insert's transaction). A claimant
that ended without being metered (failed, cancelled, terminated: never charged) is taken over,
so the request may run again, as it may under its own workflow id; if such a claimant's meter
activity still ran after the takeover, it records nothing.

Whether a claimant still runs is asked of Temporal (the source of truth), not guessed from a
timeout; a workflow Temporal no longer knows (past retention) is not running.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client

from activities.db.schema import request_claims
from activities.db.tenancy import tenant_transaction
from activities.workflow_status import workflow_running

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


@dataclass(frozen=True)
class ClaimRef:
    """The claim a metering transaction completes: the request and the workflow metering it."""

    request_key: str
    workflow_id: str


async def claim_request(
    engine: AsyncEngine, client: Client, tenant_id: str, request_key: str, workflow_id: str
) -> ClaimConflict | None:
    """Claim the request for `workflow_id`; None when it is (now) this workflow's to run.

    Idempotent: a retried activity, or a new run of the same workflow id after a failed one,
    finds its own claim. Every change is a compare-and-set on (holder, claimed_at), and a
    holder's own new run refreshes claimed_at, so a taker that saw an ended run cannot take the
    claim from the run that replaced it.
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
        if held.workflow_id != workflow_id and await workflow_running(client, held.workflow_id):
            return held
        # Ours (a retry, or a new run of this workflow id), or its holder ended uncharged.
        async with tenant_transaction(engine, tenant) as conn:
            taken = await conn.execute(
                update(request_claims)
                .where(
                    *where,
                    request_claims.c.workflow_id == held.workflow_id,
                    request_claims.c.claimed_at == held.claimed_at,
                    request_claims.c.completed_at.is_(None),
                )
                .values(workflow_id=workflow_id, claimed_at=func.clock_timestamp())
            )
            if taken.rowcount == 1:
                return None
        # Changed meanwhile (taken over, renewed by a new run, or completed): look again.
    raise RuntimeError(  # retryable: the next attempt looks again
        f"request {request_key} changed hands {TAKEOVER_ROUNDS} times while being claimed"
    )


class ClaimLock(Enum):
    """What the metering transaction found on the request's claim (see lock_for_completion)."""

    COMPLETING = "completing"  # this workflow's, now marked done: write the rows
    ALREADY_DONE = "already_done"  # this workflow's, done by an earlier attempt: write nothing
    SUPERSEDED = "superseded"  # another workflow took it over: write nothing
    UNCLAIMED = "unclaimed"  # planned before claims existed: the ledger keys decide


async def lock_for_completion(conn: AsyncConnection, tenant_id: Any, claim: ClaimRef) -> ClaimLock:
    """In the metering transaction (tenant set): lock the request's claim and mark it done.

    The claim is completed in the same transaction as the ledger insert, so a claim already
    done by this workflow means its rows are in: a retried meter activity writes nothing, even
    when its keys differ from the first attempt's (a key scheme changed between the two)."""
    where = (
        request_claims.c.tenant_id == uuid.UUID(str(tenant_id)),
        request_claims.c.request_key == claim.request_key,
    )
    row = (
        await conn.execute(
            select(request_claims.c.workflow_id, request_claims.c.completed_at)
            .where(*where)
            .with_for_update()
        )
    ).first()
    if row is None:
        return ClaimLock.UNCLAIMED
    if row.workflow_id != claim.workflow_id:
        return ClaimLock.SUPERSEDED
    if row.completed_at is not None:
        return ClaimLock.ALREADY_DONE
    await conn.execute(update(request_claims).where(*where).values(completed_at=func.now()))
    return ClaimLock.COMPLETING
