"""Request claims on a real PostgreSQL and Temporal: idempotent for the claimant, refused while
another workflow runs the request or once it is metered, taken over from a workflow that ended
(or that Temporal does not know), and invisible to other tenants (row-level security)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from activities.db.schema import request_claims
from activities.db.tenancy import tenant_transaction
from activities.request_claims import claim_request, complete_claim
from tests.fixtures.worker import ThermalHarness


def key() -> str:
    return f"job/perception/detect/{uuid.uuid4().hex[:10]}"


async def test_claimant_finds_its_own_claim_and_others_are_refused_once_done(
    thermal: ThermalHarness, tenants
):
    big, _ = tenants
    tenant, k = str(big.id), key()
    assert await claim_request(thermal.engine, thermal.client, tenant, k, "wf-a") is None
    assert await claim_request(thermal.engine, thermal.client, tenant, k, "wf-a") is None  # retry

    assert await complete_claim(thermal.engine, tenant, "wf-a") == 1
    assert await complete_claim(thermal.engine, tenant, "wf-a") == 0  # idempotent
    for wf in ("wf-a", "wf-b"):  # done: refused even to the same workflow id
        done = await claim_request(thermal.engine, thermal.client, tenant, k, wf)
        assert done is not None and done.workflow_id == "wf-a" and not done.running


async def test_a_claim_of_a_workflow_temporal_does_not_know_is_taken_over(
    thermal: ThermalHarness, tenants
):
    big, _ = tenants
    tenant, k = str(big.id), key()
    gone = f"never-started-{uuid.uuid4().hex[:8]}"
    assert await claim_request(thermal.engine, thermal.client, tenant, k, gone) is None
    assert await claim_request(thermal.engine, thermal.client, tenant, k, "wf-new") is None
    async with tenant_transaction(thermal.engine, tenant) as conn:
        holder = await conn.scalar(
            select(request_claims.c.workflow_id).where(request_claims.c.request_key == k)
        )
    assert holder == "wf-new"


async def test_tenants_claim_the_same_request_id_independently(thermal: ThermalHarness, tenants):
    big, small = tenants
    k = key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, "wf-big") is None
    assert await claim_request(thermal.engine, thermal.client, str(small.id), k, "wf-small") is None
    async with tenant_transaction(thermal.engine, str(small.id)) as conn:
        seen = await conn.scalar(
            select(func.count())
            .select_from(request_claims)
            .where(request_claims.c.request_key == k)
        )
    assert seen == 1  # the other tenant's claim is not visible
