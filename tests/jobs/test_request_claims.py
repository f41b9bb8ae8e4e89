"""Request claims on a real PostgreSQL and Temporal: idempotent for the claimant, refused while
another workflow runs the request or once it is metered, taken over from a workflow that ended
(or that Temporal does not know), never from the new run that replaced an ended one, and
invisible to other tenants (row-level security). Metering completes a claim in the ledger
insert's transaction, and records nothing for a claim another workflow took over."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select, update

from activities.db.schema import request_claims, usage_ledger
from activities.db.tenancy import tenant_transaction
from activities.metering import MeteringActivities, RecordUsageRequest, UsageEntry
from activities.request_claims import ClaimRef, claim_request
from tests.fixtures.worker import ThermalHarness


def key() -> str:
    return f"job/perception/detect/{uuid.uuid4().hex[:10]}"


def gone() -> str:
    return f"never-started-{uuid.uuid4().hex[:8]}"  # Temporal: NOT_FOUND, so not running


async def meter(h: ThermalHarness, tenant, k: str, workflow_id: str):
    entry = UsageEntry(
        tenant_id=tenant, idempotency_key=f"{workflow_id}#{k}", kind="service_charge",
        workflow_id=workflow_id, units=Decimal(1), unit="image", billed_amount=Decimal("0.5"),
    )  # fmt: skip
    return await MeteringActivities(h.engine).record_for_claim(
        RecordUsageRequest(tenant_id=tenant, entries=[entry]), ClaimRef(k, workflow_id)
    )


async def holder(h: ThermalHarness, tenant, k: str) -> tuple[str, object]:
    async with tenant_transaction(h.engine, tenant) as conn:
        row = (
            await conn.execute(
                select(request_claims.c.workflow_id, request_claims.c.completed_at).where(
                    request_claims.c.request_key == k
                )
            )
        ).one()
    return row.workflow_id, row.completed_at


async def test_claimant_finds_its_own_claim_and_others_are_refused_once_metered(
    thermal: ThermalHarness, tenants
):
    big, _ = tenants
    a, k = gone(), key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, a) is None
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, a) is None  # retry

    first = await meter(thermal, big.id, k, a)
    again = await meter(thermal, big.id, k, a)  # its own retry: nothing new
    assert (first.inserted, again.inserted, again.superseded) == (1, 0, False)
    for wf in (a, "wf-b"):  # done: refused even to the same workflow id
        done = await claim_request(thermal.engine, thermal.client, str(big.id), k, wf)
        assert done is not None and done.workflow_id == a and not done.running


async def test_a_claim_of_a_workflow_temporal_does_not_know_is_taken_over(
    thermal: ThermalHarness, tenants
):
    big, _ = tenants
    k = key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, gone()) is None
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, "wf-new") is None
    assert (await holder(thermal, big.id, k))[0] == "wf-new"


async def test_a_superseded_claimant_records_nothing(thermal: ThermalHarness, tenants):
    """A stopped (e.g. terminated) workflow whose meter activity still runs after another took
    its request over: the request is charged once, by the workflow now holding it."""
    big, _ = tenants
    a, b, k = gone(), gone(), key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, a) is None
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, b) is None
    late = await meter(thermal, big.id, k, a)
    assert late.superseded and late.inserted == 0
    assert (await meter(thermal, big.id, k, b)).inserted == 1
    async with tenant_transaction(thermal.engine, big.id) as conn:
        rows = await conn.scalar(
            select(func.count())
            .select_from(usage_ledger)
            .where(usage_ledger.c.idempotency_key.endswith(k))
        )
    assert rows == 1


async def test_a_taker_cannot_take_the_claim_from_a_new_run_of_its_holder(
    thermal: ThermalHarness, tenants
):
    """The holder's run failed, a taker saw that, then the holder's new run renewed the claim:
    the taker's compare-and-set misses and it looks again (and finds the holder running)."""
    big, _ = tenants
    a, k = gone(), key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, a) is None
    async with tenant_transaction(thermal.engine, big.id) as conn:
        stale = await conn.scalar(
            select(request_claims.c.claimed_at).where(request_claims.c.request_key == k)
        )
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, a) is None  # renews
    async with tenant_transaction(thermal.engine, big.id) as conn:  # the stale compare-and-set
        taken = await conn.execute(
            update(request_claims)
            .where(request_claims.c.request_key == k, request_claims.c.claimed_at == stale)
            .values(workflow_id="wf-taker")
        )
    assert taken.rowcount == 0 and (await holder(thermal, big.id, k))[0] == a


async def test_tenants_claim_the_same_request_id_independently(thermal: ThermalHarness, tenants):
    big, small = tenants
    k = key()
    assert await claim_request(thermal.engine, thermal.client, str(big.id), k, "wf-big") is None
    assert await claim_request(thermal.engine, thermal.client, str(small.id), k, "wf-s") is None
    async with tenant_transaction(thermal.engine, str(small.id)) as conn:
        seen = await conn.scalar(
            select(func.count())
            .select_from(request_claims)
            .where(request_claims.c.request_key == k)
        )
    assert seen == 1  # the other tenant's claim is not visible
