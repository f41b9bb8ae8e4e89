"""A request cancelled while its provider call runs: the call goes on (it does not heartbeat, so
it never learns of the cancel) and the provider charges us for it. The workflow waits for it,
records its cost in the ledger billed 0 (outcome "cancelled", keyed by the request and this run)
and ends CANCELLED; the request's claim is not completed, so the request may run again (and is
then charged as usual). A call that failed records nothing.

RADIANT_RECORD_HISTORIES=1 keeps the cancelled run's history under tests/llm/histories/ (a
guard of the `llm-cancelled-call-recorded` patch, see tests/llm/test_replay.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from activities.db.schema import request_claims
from activities.db.tenancy import tenant_transaction
from activities.llm.activities import LLMActivities
from activities.llm.types import LLMRequest, LLMResponse, MeterInput
from activities.metering import usage_key
from activities.request_claims import llm_request_key
from models_catalog.catalog import load_catalog
from tests.fixtures.waiting import wait_for
from tests.llm.conftest import LLMHarness
from tests.llm.test_request_ids import CALL_RESULT, new_chat
from workflows.llm import ChatCompletionWorkflow

CATALOG = load_catalog()
HISTORIES = Path(__file__).resolve().parent / "histories"
CALL_DELAY = 2.5  # seconds the fake provider takes to answer


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        history = await handle.fetch_history()
        recorded = {"workflow_id": history.workflow_id, "history": history.to_json_dict()}
        await asyncio.to_thread((HISTORIES / f"{name}.json").write_text, json.dumps(recorded))


async def cancel_during_call(llm: LLMHarness, req: LLMRequest, wid: str, name: str | None = None):
    """Start the request, cancel it while the fake provider is answering its call, and return
    (the workflow's handle, the error its result raised)."""
    llm.openai.behaviour.delay = CALL_DELAY
    try:
        handle = await llm.client.start_workflow(
            ChatCompletionWorkflow.run, req, id=wid, task_queue=llm.task_queue,
            result_type=LLMResponse,
        )  # fmt: skip

        async def calling() -> bool:  # this request's provider call is running
            return any(p["json"].get("messages") == req.messages for p in llm.openai.posts())

        await wait_for(calling, every=0.05)
        await handle.cancel()
        try:
            with pytest.raises(WorkflowFailureError) as info:
                await asyncio.wait_for(handle.result(), 60)
        finally:
            if name is not None:
                await record_history(handle, name)
    finally:
        llm.openai.behaviour.delay = 0.0
    return handle, info.value


async def claim_completed_at(llm: LLMHarness, tenant_id: str, request_id: str) -> Any:
    async with tenant_transaction(llm.engine, tenant_id) as conn:
        return (
            await conn.execute(
                select(request_claims.c.completed_at).where(
                    request_claims.c.request_key == llm_request_key("chat", request_id)
                )
            )
        ).scalar_one()


async def test_a_request_cancelled_during_its_call_records_the_cost_unbilled(llm: LLMHarness):
    tenant, tenant_id, req, wid = await new_chat(llm)
    handle, failure = await cancel_during_call(llm, req, wid, "llm-cancelled-mid-call")
    assert isinstance(failure.cause, CancelledError)  # cancelled, not failed otherwise
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED

    rows = await llm.ledger(tenant, wid)
    assert len(rows) == 1, rows
    row = rows[0]
    request_key = llm_request_key("chat", req.request_id)
    assert row["idempotency_key"] == usage_key(request_key, f"unbilled/{desc.run_id}/llm_call")
    assert row["kind"] == "llm_call" and row["model_id"] == "openai-gpt-4o"
    assert row["billed_amount"] == 0 and row["units"] == 0  # nothing billed, no billed units
    assert row["internal_cost"] > 0  # what the provider charges us
    assert row["metadata"]["outcome"] == "cancelled"
    assert row["input_tokens"] and row["output_tokens"]
    # Not answered, so not done: the request's claim stays open.
    assert await claim_completed_at(llm, tenant_id, req.request_id) is None

    # The same request asked again runs (the provider is called again) and is charged.
    calls_before = len(llm.openai.posts())
    again = await llm.client.execute_workflow(
        ChatCompletionWorkflow.run, req, id=wid, task_queue=llm.task_queue,
        result_type=LLMResponse,
    )  # fmt: skip
    assert again.content and again.billed > 0
    assert len(llm.openai.posts()) > calls_before
    rows = await llm.ledger(tenant, wid)
    charged = [r for r in rows if r["idempotency_key"] == usage_key(request_key, "llm_call")]
    assert len(rows) == 2 and len(charged) == 1
    assert charged[0]["billed_amount"] == again.billed
    assert charged[0]["internal_cost"] == row["internal_cost"]  # the same call, the same cost
    assert await claim_completed_at(llm, tenant_id, req.request_id) is not None


async def test_a_request_cancelled_during_a_failing_call_records_nothing(llm: LLMHarness):
    tenant, _, req, wid = await new_chat(llm)
    req = req.model_copy(update={"allow_fallbacks": False})
    llm.openai.behaviour.status = 401  # refused by the provider: never charged
    try:
        handle, failure = await cancel_during_call(llm, req, wid)
    finally:
        llm.openai.behaviour.status = 200
    assert isinstance(failure.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await llm.ledger(tenant, wid) == []


async def test_a_retried_unbilled_record_writes_one_row_per_run(llm: LLMHarness, tmp_path: Path):
    """The record is keyed by the request and the run, never the attempt: a retry (or a
    replay) writes nothing more; another run of the request records its own call."""
    tenant = llm.tenant("t1")
    request_id = uuid.uuid4().hex[:12]
    wid = f"llm/{tenant}/chat/{request_id}"
    activities = LLMActivities(
        CATALOG, llm.engine, llm.control, backend_kind="local", data_dir=tmp_path
    )
    inp = MeterInput(
        tenant_id=await llm.tenant_id(tenant), workflow_id=wid, step="llm_call", kind="chat",
        request_id=request_id, app_id="a", environment="test", requested_model="gpt-4o",
        result=CALL_RESULT, unbilled="cancelled",
    )  # fmt: skip
    runs = [str(uuid.uuid4()), str(uuid.uuid4())]
    results = []
    for run_id in (runs[0], runs[0], runs[1]):
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_id=wid, workflow_run_id=run_id)
        results.append(await env.run(activities.record_unbilled_call, inp))
    assert [r.inserted for r in results] == [True, False, True]
    rows = await llm.ledger(tenant, wid)
    assert sorted(r["idempotency_key"] for r in rows) == sorted(
        usage_key(llm_request_key("chat", request_id), f"unbilled/{run}/llm_call") for run in runs
    )
    assert all(r["billed_amount"] == 0 for r in rows)
    assert all(r["internal_cost"] == Decimal("0.07") for r in rows)
