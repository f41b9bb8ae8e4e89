"""What a caller reads when no model can serve the request: the reasons it can act on (tier,
context window, a model OFF) first, the models whose provider is not configured folded into one
short clause, and token counts worded as what they are (input plus max_tokens)."""

from __future__ import annotations

import re
import uuid

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activities import LLMActivities, PrepareInput, _refusal
from activities.llm.types import LLMCallInput, LLMRequest
from activities.thermal_control import ThermalControl
from models_catalog.selection import (
    SelectionCriteria,
    ThermalView,
    configured_providers,
    select_with_fallback,
)
from models_catalog.types import ThermalState
from tests.llm.conftest import CATALOG, LLMHarness

MISTRAL = "mistral-7b-instruct"
HUGE = 99_999_999_999


def refusal(
    tier: int,
    input_tokens: int = 2,
    max_tokens: int | None = None,
    configured: set[str] | None = None,
    thermal: dict[str, ThermalView] | None = None,
    model: str | None = None,
) -> ApplicationError:
    """The refusal `llm.prepare` raises for such a request (same selection, same inputs)."""
    criteria = SelectionCriteria(
        task="chat",
        tenant_tier=tier,
        min_context_window=input_tokens + (max_tokens or 0),
        model=model,
    )
    selection = select_with_fallback(
        CATALOG, criteria, thermal or {}, {}, configured if configured is not None else set()
    )
    assert selection.choice is None, selection.choice
    return _refusal(CATALOG, model, selection.excluded, input_tokens, max_tokens)


def assert_short(message: str) -> None:
    assert "\n" not in message and len(message) < 500, (len(message), message)
    assert "more)" not in message  # no "(+41 more)" hiding the reason that matters


def test_tier_comes_before_unconfigured_providers():
    err = refusal(tier=1)
    msg = err.message
    assert err.type == "NoModelAvailable"
    assert msg.startswith(
        f"no model can serve this request: {MISTRAL}: needs tier 3, tenant is tier 1; "
    ), msg
    # every external model is excluded only because its provider has no key: one clause
    assert "46 external models: provider not configured (openai, anthropic, google," in msg, msg
    assert msg.count("not configured") == 1 and "OPENAI_API_KEY" not in msg, msg
    assert msg.index("llama-3-70b-instruct") < msg.index("not configured"), msg
    assert_short(msg)


@pytest.mark.parametrize(
    "input_tokens,max_tokens,reason",
    [
        (6002, None, "context window 4096 < 6002 needed"),  # an over-long prompt
        (2, 5000, "context window 4096 < 5002 needed"),  # --max-tokens 5000
    ],
)
def test_context_window_comes_before_unconfigured_providers(input_tokens, max_tokens, reason):
    msg = refusal(tier=3, input_tokens=input_tokens, max_tokens=max_tokens).message
    assert f"{MISTRAL}: {reason}" in msg and msg.index(MISTRAL) < msg.index("not configured"), msg
    if max_tokens:
        assert msg.startswith(
            "no model can serve this request (~2 input tokens plus max_tokens 5000): "
        ), msg
    assert_short(msg)


def test_an_off_model_is_named_before_unconfigured_providers():
    msg = refusal(tier=3, thermal={MISTRAL: ThermalView(state=ThermalState.OFF)}).message
    assert msg.startswith(f"no model can serve this request: {MISTRAL}: OFF in this app/"), msg
    assert_short(msg)


def test_configured_provider_models_excluded_for_the_request_are_named():
    """A configured provider's models excluded for the request's own reason (here: context
    window) are named; the unconfigured providers are still one clause."""
    msg = refusal(tier=3, input_tokens=200_000, configured={"deepseek"}).message
    assert "deepseek-chat, deepseek-reasoner: context window 128000 < 200000 needed" in msg, msg
    assert msg.index("deepseek-chat") < msg.index("not configured"), msg
    assert msg.count("not configured") == 1, msg
    assert "more excluded for other reasons" in msg, msg  # the rest are counted, not listed
    assert_short(msg)


def test_max_tokens_is_not_counted_as_input():
    err = refusal(tier=1, max_tokens=HUGE)
    assert err.type == "ContextWindowExceeded"
    assert err.message.startswith(
        f"the input (~2 tokens) plus max_tokens {HUGE} exceed the context window of every model "
        "that could serve it (the largest: "
    ), err.message
    assert str(2 + HUGE) not in err.message
    long_prompt = refusal(tier=3, input_tokens=3_000_000)
    assert long_prompt.message.startswith("the input (~3000000 tokens) exceeds the context window")


def test_pinned_model_context_window_says_how_max_tokens_counts():
    err = refusal(tier=3, max_tokens=5000, model=MISTRAL)
    assert err.type == "ContextWindowExceeded"
    assert err.message == (
        f"model {MISTRAL}: context window 4096 < 5002 needed (~2 input tokens plus max_tokens 5000)"
    )


# ----------------------------------------------------------------------------- through prepare


@pytest.fixture
def unconfigured_activities(llm: LLMHarness) -> LLMActivities:
    """The LLM activities of a worker with no provider key set (as `radiant llm` often runs)."""
    assert configured_providers(CATALOG, {}) == set()
    return LLMActivities(
        CATALOG,
        llm.engine,
        ThermalControl(llm.client, llm.task_queue),
        backend_kind="local",
        data_dir=llm.settings.data_dir,
        environ={},
    )


async def prepare_refusal(acts: LLMActivities, **request) -> ApplicationError:
    req = LLMRequest(
        request_id=uuid.uuid4().hex[:12],
        app_id=f"r{uuid.uuid4().hex[:8]}",
        environment="test",
        **request,
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.prepare, PrepareInput(kind="chat", request=req))
    assert err.value.non_retryable
    return err.value


@pytest.mark.slow
async def test_prepare_names_the_tier_for_a_tier_1_tenant(
    llm: LLMHarness, unconfigured_activities: LLMActivities
):
    err = await prepare_refusal(
        unconfigured_activities,
        tenant=llm.tenant("t1"),
        messages=[{"role": "user", "content": "hi"}],
    )
    assert err.message.startswith(
        f"no model can serve this request: {MISTRAL}: needs tier 3, tenant is tier 1; "
    ), err.message
    assert_short(err.message)


@pytest.mark.slow
async def test_prepare_words_max_tokens_apart_from_the_input(
    llm: LLMHarness, unconfigured_activities: LLMActivities
):
    err = await prepare_refusal(
        unconfigured_activities,
        tenant=llm.tenant("t1"),
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=HUGE,
    )
    assert err.type == "ContextWindowExceeded"
    found = re.match(rf"the input \(~(\d+) tokens\) plus max_tokens {HUGE} exceed ", err.message)
    assert found and int(found.group(1)) < 20, err.message  # "hi", not ~100000000007


# ----------------------------------------------------------------------------- fallbacks
@pytest.mark.parametrize(("hipaa", "expected"), [(False, ["openai-gpt-4o"]), (True, [])])
async def test_the_plan_keeps_only_fallbacks_that_pass_the_requests_checks(
    llm: LLMHarness, hipaa: bool, expected: list[str]
):
    """claude-opus-4 falls back to gpt-4o and gemini-1.5-pro in the catalog. A HIPAA request
    must not reach a provider without HIPAA when Anthropic fails; gemini: no key here."""
    acts = LLMActivities(
        CATALOG, llm.engine, ThermalControl(llm.client, llm.task_queue), backend_kind="local",
        data_dir=llm.settings.data_dir, environ={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"},
    )  # fmt: skip
    req = LLMRequest(
        request_id=uuid.uuid4().hex[:12], tenant=llm.tenant("t5"), app_id=llm.new_app(),
        environment="test", model="anthropic-claude-opus-4", require_hipaa=hipaa,
        messages=[{"role": "user", "content": "PHI: patient John Doe"}],
    )  # fmt: skip
    plan = await ActivityEnvironment().run(acts.prepare, PrepareInput(kind="chat", request=req))
    assert plan.model_id == "anthropic-claude-opus-4" and plan.fallbacks == expected
    call = LLMCallInput(
        kind="chat", model_id=plan.model_id, app_id=req.app_id, environment="test",
        messages=req.messages, fallbacks=plan.fallbacks,
    )  # fmt: skip
    model_list, _ = acts.model_list_for(call)
    assert sorted({d["model_name"] for d in model_list}) == sorted([plan.model_id, *expected])


async def test_an_embedding_batch_too_big_for_the_history_is_refused_before_any_call(
    llm: LLMHarness,
):
    acts = LLMActivities(
        CATALOG, llm.engine, ThermalControl(llm.client, llm.task_queue), backend_kind="local",
        data_dir=llm.settings.data_dir, environ={"OPENAI_API_KEY": "k"},
    )  # fmt: skip
    req = LLMRequest(
        request_id=uuid.uuid4().hex[:12], tenant=llm.tenant("t5"), app_id=llm.new_app(),
        environment="test", model="openai-text-embedding-3-small", input=["x"] * 17,
    )  # fmt: skip
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.prepare, PrepareInput(kind="embedding", request=req))
    assert err.value.type == "PayloadTooLarge" and err.value.non_retryable
    assert "17 inputs in one embedding request; at most 16" in err.value.message
