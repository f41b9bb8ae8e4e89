"""Request ids of LLM requests: one request per (tenant, kind, request id), so another tenant's
request id never returns this tenant's answer; malformed request ids are refused before any
provider call and can never leave a request stuck in metering."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from sqlalchemy import update
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.db.schema import request_claims
from activities.db.tenancy import tenant_transaction
from activities.llm.activities import LLMActivities
from activities.llm.types import (
    ERR_ALREADY_ANSWERED,
    ERR_INVALID_REQUEST,
    ERR_METERING_FAILED,
    LLMCallResult,
    LLMCost,
    LLMRequest,
    LLMResponse,
    MeterInput,
    TokenUsage,
    llm_workflow_id,
)
from activities.metering import usage_key
from activities.request_claims import llm_request_key
from models_catalog.catalog import load_catalog
from tests.fixtures.metering_hold import cancelled_while_metering
from tests.fixtures.waiting import failure_of, wait_for
from tests.llm.conftest import LLMHarness
from workers.cli import llm as llm_cli
from workers.inference_client import InferenceClient
from workers.settings import get_settings
from workflows.llm import ChatCompletionWorkflow

CATALOG = load_catalog()
HELLO = [{"role": "user", "content": "Hello!"}]
#: A provider call's result, for metering it directly.
CALL_RESULT = LLMCallResult(
    model_id="openai-gpt-4o", served_by="openai-gpt-4o", provider_id="openai",
    hosting="external", fallback_used=False, content="x", usage=TokenUsage(),
    cost=LLMCost(billed=Decimal("0.1"), internal_cost=Decimal("0.07"), unit="token",
                 units=Decimal(7), markup=Decimal("0.40")),
    latency_ms=5,
)  # fmt: skip


def client_for(llm: LLMHarness, tenant: str) -> InferenceClient:
    return InferenceClient(
        llm.client, tenant=tenant, task_queue=llm.task_queue, app_id=llm.new_app(),
        environment="test", catalog=CATALOG,
    )  # fmt: skip


async def new_chat(llm: LLMHarness) -> tuple[str, str, LLMRequest, str]:
    """A fresh chat request of tenant t1, its prompt unique (its provider call can be told
    apart): (tenant name, tenant id, request, workflow id)."""
    tenant = llm.tenant("t1")
    request_id = uuid.uuid4().hex[:12]
    req = LLMRequest(
        request_id=request_id, tenant=tenant, app_id=llm.new_app(), environment="test",
        model="gpt-4o", messages=[{"role": "user", "content": f"Hello {request_id}!"}],
    )  # fmt: skip
    return tenant, await llm.tenant_id(tenant), req, llm_workflow_id(tenant, "chat", req.request_id)


async def test_tenants_do_not_share_request_ids(llm: LLMHarness):
    request_id = uuid.uuid4().hex[:12]
    a = await client_for(llm, llm.tenant("t1")).chat_completion(
        "gpt-4o", HELLO, request_id=request_id
    )
    calls_before = len(llm.openai.posts())
    b = await client_for(llm, llm.tenant("t5")).chat_completion(
        "gpt-4o", HELLO, request_id=request_id
    )
    assert a.workflow_id != b.workflow_id
    assert len(llm.openai.posts()) == calls_before + 1  # t5's own call, not t1's answer
    assert len(await llm.ledger(llm.tenant("t1"), a.workflow_id)) == 1
    assert len(await llm.ledger(llm.tenant("t5"), b.workflow_id)) == 1


async def test_the_tenant_spelled_by_id_gets_no_second_answer(llm: LLMHarness):
    """The same request id of the same tenant, its name in one workflow id and its uuid in the
    other: answered (and charged) once; the second workflow is refused before any call."""
    name = llm.tenant("t1")
    request_id = uuid.uuid4().hex[:12]
    first = await client_for(llm, name).chat_completion("gpt-4o", HELLO, request_id=request_id)
    calls_before = len(llm.openai.posts())

    by_id = await llm.tenant_id(name)
    req = LLMRequest(
        request_id=request_id, tenant=by_id, app_id=llm.new_app(), environment="test",
        model="gpt-4o", messages=HELLO,
    )  # fmt: skip
    wid = llm_workflow_id(by_id, "chat", request_id)
    handle = await llm.client.start_workflow(
        ChatCompletionWorkflow.run, req, id=wid, task_queue=llm.task_queue
    )
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == ERR_ALREADY_ANSWERED
    assert first.workflow_id in cause.message and cause.non_retryable
    assert len(llm.openai.posts()) == calls_before  # no second provider call
    assert await llm.ledger(name, wid) == []
    assert len(await llm.ledger(name, first.workflow_id)) == 1


@pytest.mark.parametrize("request_id", ["", " ", "r" * 129, "a/b", "a#b"])
async def test_client_refuses_malformed_request_ids(llm: LLMHarness, request_id: str):
    c = client_for(llm, llm.tenant("t1"))
    with pytest.raises(ValueError, match="request id"):
        await c.chat_completion("gpt-4o", HELLO, request_id=request_id)


async def test_long_request_id_is_refused_before_any_call(llm: LLMHarness):
    """Started without the client: a request id too long for the ledger's keys fails the
    request at once instead of calling the provider and then retrying metering forever."""
    tenant = llm.tenant("t1")
    request_id = "r" * 600
    req = LLMRequest(
        request_id=request_id, tenant=tenant, app_id=llm.new_app(), environment="test",
        model="gpt-4o", messages=HELLO,
    )  # fmt: skip
    wid = llm_workflow_id(tenant, "chat", request_id)
    calls_before = len(llm.openai.posts())
    handle = await llm.client.start_workflow(
        ChatCompletionWorkflow.run,
        req,
        id=wid,
        task_queue=llm.task_queue,
        result_type=LLMResponse,
    )

    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == ERR_INVALID_REQUEST
    assert "600 characters" in cause.message
    assert len(llm.openai.posts()) == calls_before
    assert await llm.ledger(tenant, wid) == []


async def test_meter_never_retries_an_unmeterable_call(llm: LLMHarness, tmp_path: Path):
    activities = LLMActivities(
        CATALOG, llm.engine, llm.control, backend_kind="local", data_dir=tmp_path
    )
    inp = MeterInput(
        tenant_id=await llm.tenant_id(llm.tenant("t1")), workflow_id="llm/chat/" + "r" * 600,
        step="llm_call", kind="chat", request_id="r" * 600, app_id="a", environment="e",
        requested_model=None, result=CALL_RESULT,
    )  # fmt: skip
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(activities.meter, inp)
    assert info.value.non_retryable and info.value.type == ERR_METERING_FAILED


async def test_cli_refuses_a_malformed_request_id(llm: LLMHarness, migrated_db, monkeypatch):
    monkeypatch.setenv("RADIANT_DATABASE_URL", migrated_db.owner_url)
    monkeypatch.setenv("RADIANT_TEMPORAL_ADDRESS", llm.client.service_client.config.target_host)
    monkeypatch.setenv("RADIANT_TEMPORAL_NAMESPACE", llm.client.namespace)
    monkeypatch.setenv("RADIANT_TASK_QUEUE", llm.task_queue)
    cli = typer.Typer()
    cli.add_typer(llm_cli.app, name="llm")
    args = ["llm", "chat", "Hello", "--tenant", llm.tenant("t1"), "--model", "gpt-4o"]
    get_settings.cache_clear()
    try:
        res = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--request-id", "r" * 129])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "129 characters" in lines[0], res.stderr


async def test_a_cancel_while_the_call_is_metered_comes_too_late(llm: LLMHarness):
    """The provider answered and the charge is being recorded: a cancel then must not lose
    the answer the tenant pays for; the request completes."""
    tenant, tenant_id, req, wid = await new_chat(llm)
    answer = await cancelled_while_metering(
        llm.engine, tenant_id, usage_key(llm_request_key("chat", req.request_id), "llm_call"),
        "llm.meter",
        lambda: llm.client.start_workflow(
            ChatCompletionWorkflow.run, req, id=wid, task_queue=llm.task_queue,
            result_type=LLMResponse,
        ),
    )  # fmt: skip
    assert answer.content and answer.billed > 0
    assert len(await llm.ledger(tenant, wid)) == 1


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        ({"warmup_deadline_seconds": float("inf")}, ERR_INVALID_REQUEST, "warmup_deadline"),
        ({"warmup_deadline_seconds": 1e12}, ERR_INVALID_REQUEST, "warmup_deadline"),
        ({"warmup_deadline_seconds": float("nan")}, ERR_INVALID_REQUEST, "warmup_deadline"),
        ({"tenant": None}, "ValidationError", "tenant"),
    ],
    ids=["infinite-deadline", "huge-deadline", "nan-deadline", "no-tenant"],
)
async def test_bad_plain_json_fails_the_request(llm: LLMHarness, change, kind, words):
    """Started without the client: a request that does not decode, or asks to wait forever,
    fails at once before any call, instead of wedging its workflow task."""
    raw = {
        "request_id": uuid.uuid4().hex[:12], "tenant": llm.tenant("t1"), "app_id": llm.new_app(),
        "environment": "test", "model": "gpt-4o", "messages": HELLO,
    }  # fmt: skip
    raw = {k: v for k, v in {**raw, **change}.items() if v is not None}
    calls_before = len(llm.openai.posts())
    handle = await llm.client.start_workflow(
        "ChatCompletionWorkflow", raw, id=f"llm/plain/{raw['request_id']}",
        task_queue=llm.task_queue,
    )  # fmt: skip
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == kind, cause
    assert words in cause.message
    assert len(llm.openai.posts()) == calls_before


async def test_a_request_taken_over_during_its_call_reports_nothing_billed(llm: LLMHarness):
    """Another workflow took the request's claim while this one's provider call ran (as after
    a run on a worker from before claims): its meter records nothing, so it must not say the
    tenant was billed."""
    tenant, tenant_id, req, wid = await new_chat(llm)
    llm.openai.behaviour.delay = 2.0
    try:
        handle = await llm.client.start_workflow(
            ChatCompletionWorkflow.run, req, id=wid, task_queue=llm.task_queue,
            result_type=LLMResponse,
        )  # fmt: skip

        async def calling() -> bool:  # claimed, and this request's provider call is running
            return any(p["json"].get("messages") == req.messages for p in llm.openai.posts())

        await wait_for(calling, every=0.05)
        async with tenant_transaction(llm.engine, tenant_id) as conn:
            taken = await conn.execute(
                update(request_claims)
                .where(request_claims.c.request_key == llm_request_key("chat", req.request_id))
                .values(workflow_id="another-workflow")
            )
        assert taken.rowcount == 1
        answer = await handle.result()
    finally:
        llm.openai.behaviour.delay = 0.0
    assert answer.content and answer.billed == 0
    assert await llm.ledger(tenant, wid) == []


async def test_a_failed_request_id_runs_again(llm: LLMHarness):
    """Refused by the provider (never charged): the same request id asked again runs a new
    request, as a failed job's does, instead of returning the old failure forever."""
    c = client_for(llm, llm.tenant("t1"))
    request_id = uuid.uuid4().hex[:12]
    llm.openai.behaviour.status = 401
    try:
        with pytest.raises(WorkflowFailureError) as first:
            await c.chat_completion("gpt-4o", HELLO, request_id=request_id, allow_fallbacks=False)
    finally:
        llm.openai.behaviour.status = 200
    cause = first.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ProviderRejected"
    again = await c.chat_completion("gpt-4o", HELLO, request_id=request_id, allow_fallbacks=False)
    assert again.content and again.billed > 0
    assert len(await llm.ledger(llm.tenant("t1"), again.workflow_id)) == 1


async def test_a_workflow_id_reused_for_another_request_is_charged_for_each(llm: LLMHarness):
    """A workflow id started by hand twice (Temporal allows it once the first run closed), each
    run with its own request id: two provider calls, two charges. The ledger keys the request,
    not the workflow id, or the second call would be answered and never charged."""
    tenant, _, first, _ = await new_chat(llm)
    _, _, second, _ = await new_chat(llm)
    wid = f"hand-started-{uuid.uuid4().hex[:8]}"
    answers = [
        await llm.client.execute_workflow(
            ChatCompletionWorkflow.run,
            req,
            id=wid,
            task_queue=llm.task_queue,
            result_type=LLMResponse,
        )  # fmt: skip
        for req in (first, second)
    ]
    assert all(a.billed > 0 for a in answers)
    rows = await llm.ledger(tenant, wid)
    assert sorted(r["metadata"]["request_id"] for r in rows) == sorted(
        [first.request_id, second.request_id]
    )
    assert sorted(r["billed_amount"] for r in rows) == sorted(a.billed for a in answers)


async def test_a_meter_retry_after_the_claim_completed_writes_nothing_whatever_its_key(
    llm: LLMHarness, monkeypatch: pytest.MonkeyPatch
):
    """The claim is completed in the ledger insert's transaction, so a retry that finds it done
    by its own workflow writes nothing, even with a key the first attempt did not use (an
    attempt before a deploy that changed the key scheme, the retry after it)."""
    from activities.llm import ledger
    from activities.request_claims import claim_request

    tenant, tenant_id, req, wid = await new_chat(llm)
    assert (
        await claim_request(
            llm.engine, llm.client, tenant_id, llm_request_key("chat", req.request_id), wid
        )
        is None
    )
    inp = MeterInput(
        tenant_id=tenant_id, workflow_id=wid, step="llm_call", kind="chat",
        request_id=req.request_id, app_id=req.app_id, environment=req.environment,
        requested_model=req.model, result=CALL_RESULT,
    )  # fmt: skip
    first = await ledger.record_llm_usage(llm.engine, inp)
    assert first.inserted and not first.superseded
    entry = ledger.usage_entry(inp)
    old_key = entry.model_copy(update={"idempotency_key": usage_key(wid, "llm_call")})
    monkeypatch.setattr(ledger, "usage_entry", lambda _inp: old_key)
    retry = await ledger.record_llm_usage(llm.engine, inp)
    assert not retry.inserted and not retry.superseded
    assert [r["idempotency_key"] for r in await llm.ledger(tenant, wid)] == [entry.idempotency_key]
