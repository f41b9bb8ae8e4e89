"""The LLM workflows end to end on a real Temporal dev server, PostgreSQL and the local stand-in:
routing, fallbacks, the served deployment recorded, costs and metering exactly once, warm-up
through the thermal workflow, and bad input refused before any cost."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.llm.types import llm_workflow_id
from models_catalog.pricing import to_ledger
from tests.llm.conftest import CATALOG, MOCK_CLAUDE, LLMHarness
from workers.inference_client import InferenceClient

MISTRAL = "mistral-7b-instruct"
pytestmark = pytest.mark.slow


def client_for(llm: LLMHarness, tenant: str, app: str | None = None) -> InferenceClient:
    return InferenceClient(
        llm.client,
        tenant=tenant,
        task_queue=llm.task_queue,
        app_id=app or llm.new_app(),
        environment="test",
        catalog=CATALOG,
    )


def rid() -> str:
    return uuid.uuid4().hex[:12]


async def failure_of(coro) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as err:
        await coro
    cause = err.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


def expected_external_billed(model_id: str, prompt: int, completion: int) -> Decimal:
    p = CATALOG.external_models[model_id].pricing
    assert p.input_per_1k is not None and p.output_per_1k is not None
    cost = Decimal(prompt) / 1000 * p.input_per_1k + Decimal(completion) / 1000 * p.output_per_1k
    return to_ledger(cost * (1 + p.markup))


async def test_chat_external_routed_costed_and_metered_once(llm: LLMHarness):
    c = client_for(llm, llm.tenant("t1"))
    request_id = rid()
    resp = await c.chat_completion(
        model_key="gpt-4o", request_id=request_id, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert resp.model == "openai-gpt-4o" and resp.served_by == "openai-gpt-4o"
    assert resp.content == "hello from the fake" and resp.finish_reason == "stop"
    assert not resp.fallback_used and resp.hosting == "external"
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (11, 7)
    assert resp.billed == expected_external_billed("openai-gpt-4o", 11, 7)
    post = llm.openai.posts()[-1]
    assert post["path"] == "/v1/chat/completions"
    assert post["json"]["model"] == "gpt-4o-2024-08-06"  # the catalog's pinned version
    assert post["headers"]["authorization"] == "Bearer sk-test-openai"

    rows = await llm.ledger(llm.tenant("t1"), resp.workflow_id)
    assert len(rows) == 1
    row = rows[0]
    assert row["kind"] == "llm_call" and row["model_id"] == "openai-gpt-4o"
    assert row["served_by"] == "openai-gpt-4o" and row["provider_id"] == "openai"
    assert row["billed_amount"] == resp.billed
    assert row["internal_cost"] == to_ledger(resp.billed / Decimal("1.40"))
    assert row["idempotency_key"] == f"llm/chat/{request_id}#llm_call"

    # The same request id again: the first answer, no second call, no second row.
    calls_before = len(llm.openai.posts())
    again = await c.chat_completion(
        model_key="gpt-4o", request_id=request_id, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert again.workflow_id == resp.workflow_id and again.content == resp.content
    assert len(llm.openai.posts()) == calls_before
    assert len(await llm.ledger(llm.tenant("t1"), resp.workflow_id)) == 1


async def test_fallback_served_and_recorded(llm: LLMHarness):
    """gpt-4o's provider answers 500: the catalog fallback (claude-sonnet-4) serves; the ledger
    meters the model that served, at its price."""
    llm.openai.behaviour.status = 500
    try:
        c = client_for(llm, llm.tenant("t1"))
        resp = await c.chat_completion(
            model_key="openai-gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        llm.openai.behaviour.status = 200
    assert resp.fallback_used and resp.requested_model == "openai-gpt-4o"
    assert resp.model == "anthropic-claude-sonnet-4" == resp.served_by
    assert resp.content == MOCK_CLAUDE
    assert resp.billed == expected_external_billed("anthropic-claude-sonnet-4", 10, 20)
    rows = await llm.ledger(llm.tenant("t1"), resp.workflow_id)
    assert [(r["model_id"], r["provider_id"]) for r in rows] == [
        ("anthropic-claude-sonnet-4", "anthropic")
    ]
    assert rows[0]["metadata"]["fallback_used"] is True
    assert rows[0]["metadata"]["requested_model"] == "openai-gpt-4o"


async def test_provider_refusal_is_not_retried_and_not_metered(llm: LLMHarness):
    """401 (bad key) with fallbacks off: non-retryable, fails at once, no usage row."""
    llm.openai.behaviour.status = 401
    try:
        c = client_for(llm, llm.tenant("t1"))
        wf = llm_workflow_id(llm.tenant("t1"), "chat", request_id := rid())
        err = await failure_of(
            c.chat_completion(
                model_key="openai-gpt-4o",
                request_id=request_id,
                allow_fallbacks=False,
                messages=(prompt := [{"role": "user", "content": f"hi {request_id}"}]),
            )
        )
    finally:
        llm.openai.behaviour.status = 200
    assert err.type == "ProviderRejected" and "AuthenticationError" in err.message
    assert await llm.ledger(llm.tenant("t1"), wf) == []
    attempts = [p for p in llm.openai.posts() if p["json"].get("messages") == prompt]
    assert len(attempts) == 1  # one call: a retried activity would have posted again


async def test_completion_and_embedding(llm: LLMHarness):
    c = client_for(llm, llm.tenant("t1"))
    resp = await c.text_completion(model_key="openai-gpt-4o-mini", prompt="Once upon a time")
    assert resp.kind == "completion" and resp.content == "hello from the fake"
    # A chat model serves a completion through its chat API (LiteLLM converts the prompt).
    post = llm.openai.posts()[-1]
    assert post["path"] == "/v1/chat/completions" and post["json"]["model"] == "gpt-4o-mini"
    emb = await c.embedding(model_key="text-embedding-3-small", input=["a", "b c"])
    assert emb.model == "openai-text-embedding-3-small"
    assert emb.embeddings == [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    assert emb.billed == to_ledger(Decimal(11) / 1000 * Decimal("0.00002") * Decimal("1.40"))
    rows = await llm.ledger(llm.tenant("t1"), emb.workflow_id)
    assert rows[0]["unit"] == "token" and rows[0]["units"] == 11


async def test_self_hosted_cold_model_is_held_then_served_by_the_stand_in(llm: LLMHarness):
    """Self-hosted required: the request waits for the thermal workflow to warm the model (a real
    model-server process), is served by it through its OpenAI-compatible API, then releases its
    lease."""
    app = llm.new_app()
    c = client_for(llm, llm.tenant("t3"), app)
    resp = await c.chat_completion(
        prefer_hosting="self_hosted", messages=[{"role": "user", "content": "hi there"}]
    )
    assert resp.model == MISTRAL and resp.hosting == "self_hosted" and resp.waited_for_warm_up
    endpoint = f"radiant-{app}-test-{MISTRAL}"
    assert resp.served_by.startswith(f"{MISTRAL}@{endpoint}/i-")
    assert resp.content and resp.usage.output_tokens > 0
    per_request = CATALOG.models[MISTRAL].pricing.per_request
    assert resp.billed == per_request and resp.internal_cost is None
    rows = await llm.ledger(llm.tenant("t3"), resp.workflow_id)
    assert (
        len(rows) == 1 and rows[0]["unit"] == "request" and rows[0]["served_by"] == resp.served_by
    )
    status = await llm.control.status(app, "test", MISTRAL)
    assert status.ready and status.in_flight == 0  # the lease was released


async def test_cold_model_warms_in_background_while_external_serves(llm: LLMHarness):
    app = llm.new_app()
    c = client_for(llm, llm.tenant("t3"), app)
    first = await c.chat_completion(messages=[{"role": "user", "content": "hi"}])
    assert first.hosting == "external" and first.warming_in_background == MISTRAL
    assert not first.waited_for_warm_up
    for _ in range(150):  # the warm-up goes on without the request
        status = await llm.control.status(app, "test", MISTRAL)
        if status.ready:
            break
        await asyncio.sleep(0.2)
    assert status.ready
    await _wait_mirror_ready(llm, app)
    second = await c.chat_completion(messages=[{"role": "user", "content": "hi again"}])
    assert second.model == MISTRAL and second.hosting == "self_hosted", second.selection
    assert second.warming_in_background is None and not second.waited_for_warm_up


async def _wait_mirror_ready(llm: LLMHarness, app: str) -> None:
    """Selection reads the Postgres mirror; wait until it shows the running instance."""
    from sqlalchemy import text

    for _ in range(100):
        async with llm.engine.connect() as conn:
            count = (
                await conn.execute(
                    text(
                        "SELECT instance_count FROM thermal_states "
                        "WHERE app_id = :a AND model_id = :m"
                    ),
                    {"a": app, "m": MISTRAL},
                )
            ).scalar()
        if count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("thermal_states never showed the running instance")


BAD = [
    ("unknown model", dict(model_key="gpt-4oo"), "UnknownModel", "did you mean"),
    (
        "empty prompt",
        dict(model_key="gpt-4o", messages=[{"role": "user", "content": "  "}]),
        "EmptyPrompt",
        "empty",
    ),
    ("no messages", dict(model_key="gpt-4o", messages=[]), "EmptyPrompt", "empty"),
    (
        "bad role",
        dict(model_key="gpt-4o", messages=[{"role": "robot", "content": "x"}]),
        "InvalidLLMRequest",
        "role",
    ),
    ("tenant below tier", dict(model_key=MISTRAL, tenant="t1"), "TierTooLow", "tier 3"),
    (
        "over context window",
        dict(
            model_key=MISTRAL, tenant="t3", messages=[{"role": "user", "content": "word " * 6000}]
        ),
        "ContextWindowExceeded",
        "context window 4096",
    ),
    ("unknown tenant", dict(model_key="gpt-4o", tenant="nobody"), "UnknownTenant", "nobody"),
    (
        "unconfigured provider",
        dict(model_key="google-gemini-2-flash"),
        "ModelUnavailable",
        "GOOGLE_API_KEY unset",
    ),
    (
        "bad hosting",
        dict(model_key="gpt-4o", prefer_hosting="cloud"),
        "InvalidLLMRequest",
        "prefer_hosting",
    ),
    ("OFF model", dict(model_key="llama-3-70b-instruct", tenant="t5"), "ModelUnavailable", "OFF"),
]


@pytest.mark.parametrize("name,kwargs,err_type,text", BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_before_any_cost(llm: LLMHarness, name, kwargs, err_type, text):
    kwargs = dict(kwargs)
    tenant = kwargs.pop("tenant", "t1")
    tenant_name = llm.tenant(tenant) if tenant in llm.tenants else tenant
    kwargs.setdefault("messages", [{"role": "user", "content": "hello"}])
    c = client_for(llm, tenant_name)
    calls_before = len(llm.openai.posts())
    request_id = rid()
    err = await failure_of(c.chat_completion(request_id=request_id, **kwargs))
    assert err.type == err_type and text in err.message, err.message
    assert len(llm.openai.posts()) == calls_before  # no provider call
    if tenant in llm.tenants:
        assert await llm.ledger(tenant_name, llm_workflow_id(tenant_name, "chat", request_id)) == []


async def test_empty_embedding_and_completion_inputs(llm: LLMHarness):
    c = client_for(llm, llm.tenant("t1"))
    assert (
        await failure_of(c.text_completion(model_key="gpt-4o", prompt=""))
    ).type == "EmptyPrompt"
    assert (await failure_of(c.embedding(input=["ok", " "]))).type == "EmptyPrompt"


async def test_search_attributes_tenant_and_model(llm: LLMHarness):
    c = client_for(llm, llm.tenant("t1"))
    resp = await c.chat_completion(model_key="gpt-4o", messages=[{"role": "user", "content": "x"}])
    desc = await llm.client.get_workflow_handle(resp.workflow_id).describe()
    from workflows import search_attributes as sa

    attrs = desc.typed_search_attributes
    assert attrs.get(sa.TENANT) == await llm.tenant_id(llm.tenant("t1"))
    assert attrs.get(sa.MODEL) == "openai-gpt-4o"


async def test_get_available_models_and_health(llm: LLMHarness):
    c = client_for(llm, llm.tenant("t1"))
    models = c.get_available_models("chat", tenant_tier=1, environ=llm.environ)
    ids = {m["model_key"] for m in models}
    assert "openai-gpt-4o" in ids and MISTRAL not in ids
    assert not any(m["provider"] == "google" for m in models)
    health = await c.health()
    assert health["temporal"] == "ok" and MISTRAL in health["self_hosted_llms"]


async def test_meter_writes_exactly_once(llm: LLMHarness):
    """A retried meter activity (same workflow id and step) finds its row and writes nothing."""
    from temporalio.testing import ActivityEnvironment

    from activities.llm.ledger import record_llm_usage
    from activities.llm.types import LLMCallResult, LLMCost, MeterInput, TokenUsage

    result = LLMCallResult(
        model_id="openai-gpt-4o", served_by="openai-gpt-4o", provider_id="openai",
        hosting="external", fallback_used=False, content="x",
        usage=TokenUsage(input_tokens=3, output_tokens=4),
        cost=LLMCost(billed=Decimal("0.1"), internal_cost=Decimal("0.07"), unit="token",
                     units=Decimal(7), markup=Decimal("0.40")),
        latency_ms=5,
    )  # fmt: skip
    request_id = rid()
    wf = llm_workflow_id(llm.tenant("t1"), "chat", request_id)
    inp = MeterInput(tenant_id=await llm.tenant_id(llm.tenant("t1")), workflow_id=wf,
                     step="llm_call", kind="chat", request_id=request_id, app_id="a",
                     environment="e", requested_model=None, result=result)  # fmt: skip
    env = ActivityEnvironment()
    first = await env.run(record_llm_usage, llm.engine, inp)
    second = await env.run(record_llm_usage, llm.engine, inp)
    assert first.inserted and not second.inserted
    assert first.idempotency_key == f"llm/chat/{request_id}#llm_call"
    rows = await llm.ledger(llm.tenant("t1"), wf)
    assert len(rows) == 1 and rows[0]["billed_amount"] == Decimal("0.1")
