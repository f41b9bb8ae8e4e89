"""The LiteLLM call activity without Temporal: a Router built from the catalog, routing to a
local OpenAI-compatible fake, a local SageMaker runtime fake and LiteLLM's mock responses;
fallbacks; the served deployment recorded; catalog cost versus LiteLLM's; error classes."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import litellm  # noqa: E402
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.llm  # noqa: F401 - LiteLLM's bundled cost map, before litellm is imported
from activities.backends.base import EndpointSpec
from activities.backends.local import LocalInstance, LocalRecord
from activities.llm import calls
from activities.llm.activities import LLMActivities
from activities.llm.deployments import (
    external_model_list,
    fallbacks_for,
    local_instances,
    self_hosted_endpoint,
)
from activities.llm.types import LLMCallInput, TokenUsage
from models_catalog.catalog import load_catalog
from models_catalog.pricing import to_ledger
from tests.llm.fakes import FakeBehaviour, fake_server

CAT = load_catalog()
ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant"}
MISTRAL = "mistral-7b-instruct"
HI = [{"role": "user", "content": "hi"}]


class _NoControl:  # the call activity never touches the thermal workflows
    client = None


def acts(
    tmp_path: Path,
    overrides: dict[str, dict[str, Any]],
    *,
    backend: str = "local",
    environ: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> LLMActivities:
    return LLMActivities(
        CAT,
        None,
        _NoControl(),  # type: ignore[arg-type]
        backend_kind=backend,
        data_dir=tmp_path,
        aws_region="us-east-1",
        environ=ENV if environ is None else environ,
        overrides=overrides,
        timeout_seconds=timeout,
    )


async def run_call(a: LLMActivities, **kw: Any):
    kw.setdefault("kind", "chat")
    kw.setdefault("app_id", "app")
    kw.setdefault("environment", "dev")
    if kw["kind"] == "chat":
        kw.setdefault("messages", HI)
    return await ActivityEnvironment().run(a.call, LLMCallInput(**kw))


def test_model_list_comes_from_the_catalog_and_skips_unconfigured_providers():
    deps = external_model_list(CAT, key_style="value", environ={"OPENAI_API_KEY": "k"})
    providers = {d["model_info"]["provider"] for d in deps}
    assert providers == {"openai", "openai-images", "openai-audio", "openai-embeddings"}
    assert {d["model_name"] for d in deps} == {
        m.id
        for m in CAT.external_models.values()
        if CAT.providers[m.provider_id].api_key_env == "OPENAI_API_KEY" and m.available
    }
    gpt4o = next(d for d in deps if d["model_name"] == "openai-gpt-4o")
    assert gpt4o["litellm_params"] == {"model": "gpt-4o-2024-08-06", "api_key": "k"}
    assert gpt4o["model_info"]["id"] == "openai-gpt-4o"
    # gpt-4o's fallbacks (claude, gemini) are unconfigured here: no fallback entry at all
    assert fallbacks_for(CAT, {d["model_name"] for d in deps}) == []
    everyone = external_model_list(CAT, key_style="env_ref")
    assert not any(
        CAT.providers[d["model_info"]["provider"]].litellm_provider is None for d in everyone
    )
    names = {d["model_name"] for d in everyone}
    assert {
        "openai-gpt-4o": ["anthropic-claude-sonnet-4", "google-gemini-2-flash"]
    } in fallbacks_for(CAT, names)


async def test_external_call_served_costed_and_crosschecked_with_litellm(tmp_path: Path):
    with fake_server(FakeBehaviour(prompt_tokens=1200, completion_tokens=345)) as fake:
        a = acts(tmp_path, {"openai-gpt-4o": {"api_base": fake.v1}})
        res = await run_call(a, model_id="openai-gpt-4o", max_tokens=50, temperature=0.2)
        sent = fake.posts()[-1]["json"]
    assert res.served_by == "openai-gpt-4o" and not res.fallback_used
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == (
        "gpt-4o-2024-08-06",
        50,
        0.2,
    )
    cost = Decimal(1200) / 1000 * Decimal("0.0025") + Decimal(345) / 1000 * Decimal("0.01")
    assert res.cost.internal_cost == to_ledger(cost)
    assert res.cost.billed == to_ledger(cost * Decimal("1.40"))
    assert res.cost.unit == "token" and res.cost.units == 1545
    # LiteLLM prices the same call from its cost map: the catalog agrees for gpt-4o.
    assert res.cost.litellm_cost is not None
    assert abs(res.cost.litellm_cost - res.cost.internal_cost) < Decimal("1e-9")


@pytest.mark.parametrize(
    "model_id",
    [
        "openai-gpt-4o",
        "openai-gpt-4o-mini",
        "anthropic-claude-sonnet-4-5",
        "anthropic-claude-haiku-4-5",
    ],
)
async def test_mock_response_cost_matches_litellm_completion_cost(tmp_path: Path, model_id: str):
    """LiteLLM's `mock_response` (10 prompt + 20 completion tokens) priced both ways."""
    a = acts(tmp_path, {model_id: {"mock_response": "mocked"}})
    res = await run_call(a, model_id=model_id)
    assert res.content == "mocked" and res.served_by == model_id
    route = CAT.external_models[model_id].litellm_route
    resp = await litellm.acompletion(model=route, messages=HI, mock_response="mocked", api_key="k")
    theirs = Decimal(repr(litellm.completion_cost(completion_response=resp)))
    assert res.usage.input_tokens == resp.usage.prompt_tokens
    assert res.usage.output_tokens == resp.usage.completion_tokens
    assert abs(res.cost.internal_cost - theirs) <= theirs * Decimal("0.001")
    assert res.cost.billed == to_ledger(res.cost.internal_cost * Decimal("1.40"))


async def test_catalog_prices_what_litellm_cannot(tmp_path: Path):
    """LiteLLM 1.106's bundled map has no direct-Anthropic claude-sonnet-4 price (it reports 0):
    the bill comes from the catalog regardless."""
    a = acts(tmp_path, {"anthropic-claude-sonnet-4": {"mock_response": "x"}})
    res = await run_call(a, model_id="anthropic-claude-sonnet-4")
    assert res.cost.litellm_cost in (None, Decimal(0))
    assert res.cost.internal_cost == to_ledger(
        Decimal(10) / 1000 * Decimal("0.003") + Decimal(20) / 1000 * Decimal("0.015")
    )


# Anthropic prompt caching: 100 plain input tokens, 2000 written to the cache, 300 read from it.
CACHING = FakeBehaviour(
    prompt_tokens=100, completion_tokens=20, cache_creation_input_tokens=2000,
    cache_read_input_tokens=300,
)  # fmt: skip


def _caching_call_cost(model_id: str, write_rate: Decimal) -> Decimal:
    p = CAT.external_models[model_id].pricing
    assert p.input_per_1k is not None and p.output_per_1k is not None
    cached_rate = p.cached_input_per_1k or p.input_per_1k
    return to_ledger(
        Decimal(100) / 1000 * p.input_per_1k
        + Decimal(20) / 1000 * p.output_per_1k
        + Decimal(300) / 1000 * cached_rate
        + Decimal(2000) / 1000 * write_rate
    )


async def test_anthropic_cache_writes_are_billed_at_the_cache_write_rate(tmp_path: Path):
    """LiteLLM's Anthropic handler (a local Messages API fake) counts cache writes inside
    prompt_tokens: they are split out and priced at the catalog's cache write rate (1.25 x
    input), which is LiteLLM's own price for the call too. Before, they were input tokens."""
    model_id = "anthropic-claude-sonnet-4-5"
    with fake_server(dataclasses.replace(CACHING, requests=[])) as fake:
        a = acts(tmp_path, {model_id: {"api_base": fake.url}})
        res = await run_call(a, model_id=model_id, allow_fallbacks=False)
        assert [p["path"] for p in fake.posts()] == ["/v1/messages"]
    assert res.usage == TokenUsage(
        input_tokens=100, output_tokens=20, cached_input_tokens=300, cache_write_input_tokens=2000
    )
    p = CAT.external_models[model_id].pricing
    assert p.cache_write_input_per_1k == Decimal("0.00375")
    cost = _caching_call_cost(model_id, p.cache_write_input_per_1k)
    assert cost == Decimal("0.00819")  # 0.0003 + 0.0003 + 0.00009 + 0.0075
    assert res.cost.internal_cost == cost and res.cost.billed == to_ledger(cost * Decimal("1.40"))
    assert res.cost.units == 2420  # every token, as before
    assert res.cost.litellm_cost is not None
    assert abs(res.cost.litellm_cost - cost) < Decimal("1e-9")


async def test_cache_writes_without_a_write_rate_cost_what_they_did(tmp_path: Path):
    """claude-sonnet-4 has no cache write rate (neither the seed nor LiteLLM's map gives one):
    its cache writes are counted apart but still billed at the input rate, as before."""
    model_id = "anthropic-claude-sonnet-4"
    p = CAT.external_models[model_id].pricing
    assert p.cache_write_input_per_1k is None and p.input_per_1k is not None
    with fake_server(dataclasses.replace(CACHING, requests=[])) as fake:
        a = acts(tmp_path, {model_id: {"api_base": fake.url}})
        res = await run_call(a, model_id=model_id, allow_fallbacks=False)
    assert (res.usage.input_tokens, res.usage.cache_write_input_tokens) == (100, 2000)
    assert res.cost.internal_cost == _caching_call_cost(model_id, p.input_per_1k)
    assert res.cost.units == 2420


async def test_anthropic_1h_cache_writes_are_billed_at_the_1h_rate(tmp_path: Path):
    """Writes to Anthropic's 1-hour cache (`ttl: 1h`) cost 2 x input, not 1.25 x: of the 2000
    written, 500 went to the 1-hour cache. LiteLLM prices the call the same."""
    model_id = "anthropic-claude-haiku-4-5"
    behaviour = dataclasses.replace(CACHING, requests=[], cache_creation_1h_input_tokens=500)
    with fake_server(behaviour) as fake:
        a = acts(tmp_path, {model_id: {"api_base": fake.url}})
        res = await run_call(a, model_id=model_id, allow_fallbacks=False)
    assert res.usage == TokenUsage(
        input_tokens=100,
        output_tokens=20,
        cached_input_tokens=300,
        cache_write_input_tokens=2000,
        cache_write_1h_input_tokens=500,
    )
    p = CAT.external_models[model_id].pricing
    assert (p.cache_write_input_per_1k, p.cache_write_1h_input_per_1k) == (
        Decimal("0.00125"),
        Decimal("0.002"),
    )
    # 0.1 x 0.001 + 0.02 x 0.005 + 0.3 x 0.0001 + 1.5 x 0.00125 + 0.5 x 0.002
    assert res.cost.internal_cost == Decimal("0.003105")
    assert res.cost.litellm_cost is not None
    assert abs(res.cost.litellm_cost - res.cost.internal_cost) < Decimal("1e-9")


def test_bedrock_cache_writes_are_split_out_too():
    """Bedrock Converse (Claude on Bedrock) reports cacheWriteInputTokens; LiteLLM's Usage for it
    has the same shape as Anthropic's."""
    from litellm.llms.bedrock.chat.converse_transformation import AmazonConverseConfig

    usage = AmazonConverseConfig().transform_usage(
        {"inputTokens": 100, "outputTokens": 20, "totalTokens": 2420,
         "cacheReadInputTokens": 300, "cacheWriteInputTokens": 2000}  # type: ignore[typeddict-item]
    )  # fmt: skip
    assert usage.prompt_tokens == 2400
    assert calls._usage(usage) == TokenUsage(
        input_tokens=100, output_tokens=20, cached_input_tokens=300, cache_write_input_tokens=2000
    )
    # OpenAI-style usage (reads only, no writes) splits as before
    openai = litellm.Usage(
        prompt_tokens=50, completion_tokens=5, prompt_tokens_details={"cached_tokens": 20}
    )
    assert calls._usage(openai) == TokenUsage(
        input_tokens=30, output_tokens=5, cached_input_tokens=20
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "rate"),
    [
        ("cache_write_input_per_1k", "cache_creation_input_token_cost", Decimal("0.00375")),
        (
            "cache_write_1h_input_per_1k",
            "cache_creation_input_token_cost_above_1hr",
            Decimal("0.006"),
        ),
    ],
)
def test_pricing_check_compares_the_cache_write_rates(ours: str, theirs: str, rate: Decimal):
    """The weekly check compares the cache write rates with the cost map's, as it compares
    the cache read rate."""
    from activities.llm.pricing_check import compare_prices

    fields = [
        (d.model_id, d.field) for d in compare_prices(CAT).differences
    ]  # the bundled map agrees with every write rate the catalog has
    assert not [f for f in fields if f[1] == ours]
    key = "claude-sonnet-4-5-20250929"
    cost_map = {**litellm.model_cost, key: {**litellm.model_cost[key], theirs: 9e-06}}
    diffs = [d for d in compare_prices(CAT, cost_map).differences if d.field == ours]
    assert [(d.model_id, d.catalog, d.litellm) for d in diffs] == [
        ("anthropic-claude-sonnet-4-5", rate, Decimal("0.009"))
    ]


async def test_fallback_serves_when_the_primary_fails_and_is_recorded(tmp_path: Path):
    with fake_server(FakeBehaviour(status=503)) as down:
        a = acts(
            tmp_path,
            {
                "openai-gpt-4o": {"api_base": down.v1},
                "anthropic-claude-sonnet-4": {"mock_response": "from claude"},
            },
        )
        res = await run_call(a, model_id="openai-gpt-4o")
        assert len(down.posts()) == 1  # no LiteLLM retries: Temporal owns them
    assert res.fallback_used and res.model_id == "anthropic-claude-sonnet-4"
    assert res.served_by == "anthropic-claude-sonnet-4" and res.provider_id == "anthropic"
    assert res.content == "from claude"
    p = CAT.external_models["anthropic-claude-sonnet-4"].pricing
    assert p.input_per_1k is not None and p.output_per_1k is not None
    assert res.cost.internal_cost == to_ledger(
        Decimal(10) / 1000 * p.input_per_1k + Decimal(20) / 1000 * p.output_per_1k
    )


async def test_mock_testing_fallbacks_picks_the_next_configured_fallback(tmp_path: Path):
    """LiteLLM's own fallback test switch, through the catalog's chain: gpt-4o -> claude."""
    a = acts(
        tmp_path,
        {
            "openai-gpt-4o": {"mock_testing_fallbacks": True},
            "anthropic-claude-sonnet-4": {"mock_response": "fb"},
        },
    )
    res = await run_call(a, model_id="openai-gpt-4o")
    assert res.fallback_used and res.served_by == "anthropic-claude-sonnet-4"


async def test_no_fallbacks_when_refused(tmp_path: Path):
    a = acts(tmp_path, {})
    inp = LLMCallInput(
        kind="chat",
        model_id="openai-gpt-4o",
        app_id="a",
        environment="e",
        messages=HI,
        allow_fallbacks=False,
    )
    model_list, fallbacks = a.model_list_for(inp)
    assert [d["model_name"] for d in model_list] == ["openai-gpt-4o"] and fallbacks == []
    model_list, fallbacks = a.model_list_for(inp.model_copy(update={"allow_fallbacks": True}))
    assert [d["model_name"] for d in model_list] == ["openai-gpt-4o", "anthropic-claude-sonnet-4"]
    assert fallbacks == [{"openai-gpt-4o": ["anthropic-claude-sonnet-4"]}]  # gemini: no key


async def test_sagemaker_backend_routes_to_the_endpoint(tmp_path: Path):
    """`sagemaker/<endpoint>` through a local SageMaker runtime fake (sagemaker_base_url):
    TGI body, SigV4-signed with dummy credentials, per-request price."""
    endpoint = self_hosted_endpoint("app", "dev", MISTRAL)
    with fake_server(FakeBehaviour(text="tgi says hi")) as sm:
        extra = {
            "sagemaker_base_url": f"{sm.url}/endpoints/{endpoint}/invocations",
            "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": "secret",
        }
        a = acts(tmp_path, {MISTRAL: extra}, backend="sagemaker")
        res = await run_call(a, model_id=MISTRAL, max_tokens=16)
        post = sm.posts()[-1]
    assert res.served_by == f"{MISTRAL}@{endpoint}" and res.hosting == "self_hosted"
    assert res.content == "tgi says hi"
    assert post["path"] == f"/endpoints/{endpoint}/invocations"
    assert "inputs" in post["json"] and post["json"]["parameters"]["max_new_tokens"] == 16
    assert post["headers"]["authorization"].startswith("AWS4-HMAC-SHA256")
    assert res.cost.billed == CAT.models[MISTRAL].pricing.per_request
    assert res.cost.internal_cost is None and res.cost.unit == "request"


def _write_local_record(data_dir: Path, endpoint: str, ports: list[int]) -> None:
    from datetime import UTC, datetime

    spec = EndpointSpec(endpoint_name=endpoint, model_id=MISTRAL, image="img", instance_type="x")
    now = datetime.now(UTC)
    rec = LocalRecord(
        endpoint_name=endpoint,
        model_id=MISTRAL,
        spec=spec,
        config_hash=spec.config_hash(),
        status="InService",
        created_at=now,
        updated_at=now,
        desired_instance_count=len(ports),
        min_instances=1,
        max_instances=3,
        instances=[
            LocalInstance(
                instance_id=f"i-{n}", pid=1, port=p, config_hash=spec.config_hash(), started_at=now
            )
            for n, p in enumerate(ports)
        ],
    )
    root = data_dir / "local_endpoints"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{endpoint}.json").write_text(rec.model_dump_json())


async def test_local_backend_routes_to_the_stand_in_instances(tmp_path: Path):
    """Each running stand-in instance is one `openai/<model>` deployment at its /v1 base."""
    endpoint = self_hosted_endpoint("app", "dev", MISTRAL)
    with fake_server(FakeBehaviour(text="one")) as i0, fake_server(FakeBehaviour(text="two")) as i1:
        _write_local_record(
            tmp_path, endpoint, [int(i0.url.rsplit(":", 1)[1]), int(i1.url.rsplit(":", 1)[1])]
        )
        assert [b for _, b in local_instances(tmp_path, endpoint)] == [i0.v1, i1.v1]
        a = acts(tmp_path, {})
        seen = {(await run_call(a, model_id=MISTRAL)).served_by for _ in range(8)}
        comp = await run_call(a, kind="completion", model_id=MISTRAL, prompt="hello")
        assert comp.content in ("one", "two")
        assert [
            p["json"]["prompt"] for p in i0.posts() + i1.posts() if p["path"] == "/v1/completions"
        ] == ["hello"]
        sent = (i0.posts() + i1.posts())[0]["json"]
    assert sent["model"] == MISTRAL
    assert seen <= {f"{MISTRAL}@{endpoint}/i-0", f"{MISTRAL}@{endpoint}/i-1"} and seen


async def test_unconfigured_and_unreachable(tmp_path: Path):
    a = acts(tmp_path, {}, environ={})
    with pytest.raises(ApplicationError) as err:
        await run_call(a, model_id="openai-gpt-4o")
    assert err.value.type == "ModelUnavailable" and err.value.non_retryable
    assert "OPENAI_API_KEY unset" in err.value.message
    with pytest.raises(ApplicationError) as err:  # local model with no running instance
        await run_call(a, model_id=MISTRAL)
    assert err.value.type == "NoDeployment" and not err.value.non_retryable


@pytest.mark.parametrize(
    "status,err_type,retryable",
    [
        (401, "ProviderRejected", False),
        (400, "ProviderRejected", False),
        (404, "ProviderRejected", False),
        (429, "ProviderUnavailable", True),
        (500, "ProviderUnavailable", True),
        (503, "ProviderUnavailable", True),
    ],
)
async def test_provider_errors_are_classified(tmp_path: Path, status, err_type, retryable):
    with fake_server(FakeBehaviour(status=status)) as fake:
        a = acts(tmp_path, {"openai-gpt-4o": {"api_base": fake.v1}})
        with pytest.raises(ApplicationError) as err:
            await run_call(a, model_id="openai-gpt-4o", allow_fallbacks=False)
        assert len(fake.posts()) == 1
    assert err.value.type == err_type and err.value.non_retryable is not retryable


async def test_slow_provider_times_out_retryably(tmp_path: Path):
    """The fake answers after 3 s: with the 0.5 s timeout the call gives up (without it, the
    answer would come and nothing would be raised)."""
    with fake_server(FakeBehaviour(delay=3.0)) as slow:
        a = acts(tmp_path, {"openai-gpt-4o": {"api_base": slow.v1}}, timeout=0.5)
        with pytest.raises(ApplicationError) as err:
            await run_call(a, model_id="openai-gpt-4o", allow_fallbacks=False)
    assert err.value.type == "ProviderUnavailable" and not err.value.non_retryable
    assert "Timeout" in err.value.message


def test_context_window_error_class():
    exc = litellm.ContextWindowExceededError(
        message="too long", model="gpt-4o", llm_provider="openai"
    )
    mapped = calls.as_application_error(exc)
    assert mapped.type == "ContextWindowExceeded" and mapped.non_retryable


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (422, False), (429, True),
                                                   (408, True), (502, True)])  # fmt: skip
def test_a_generic_api_error_is_classified_by_its_status(status: int, retryable: bool):
    """LiteLLM's catch-all APIError with a 4xx is a refusal: the same request fails again."""
    exc = litellm.APIError(status_code=status, message="no", llm_provider="openai", model="m")
    assert calls.as_application_error(exc).non_retryable is not retryable


def test_error_messages_name_the_class_once():
    exc = litellm.AuthenticationError(message="bad key", llm_provider="openai", model="gpt-4o")
    assert calls.as_application_error(exc).message.count("AuthenticationError") == 1
    assert calls.as_application_error(TimeoutError("slow")).message == "TimeoutError: slow"


async def test_router_cache_reuses_and_refreshes():
    cache = calls.RouterCache(size=2)
    ml: list[dict[str, Any]] = [
        {
            "model_name": "m",
            "litellm_params": {"model": "gpt-4o", "api_key": "k", "mock_response": "x"},
            "model_info": {"id": "m"},
        }
    ]
    r1 = cache.get(ml, [])
    assert cache.get(ml, []) is r1
    ml2 = [{**ml[0], "litellm_params": {**ml[0]["litellm_params"], "api_key": "k2"}}]
    assert cache.get(ml2, []) is not r1
    assert r1.num_retries == 0
    await asyncio.sleep(0)


@pytest.mark.parametrize("kind", ["chat", "embedding"])
async def test_one_provider_call_per_activity_attempt(tmp_path: Path, kind: str):
    """Temporal owns retries: a failing provider is called once per attempt, embeddings too
    (LiteLLM's OpenAI embedding handler turned max_retries=0 into its default of 2)."""
    model = "openai-gpt-4o" if kind == "chat" else "openai-text-embedding-3-small"
    with fake_server(FakeBehaviour(status=500)) as down:
        a = acts(tmp_path, {model: {"api_base": down.v1}})
        extra: dict[str, Any] = {"input": ["hello"]} if kind == "embedding" else {}
        with pytest.raises(ApplicationError) as err:
            await run_call(a, kind=kind, model_id=model, allow_fallbacks=False, **extra)
        assert not err.value.non_retryable  # a 500: Temporal retries the activity
        assert len(down.posts()) == 1


async def test_a_response_without_usage_is_billed_on_a_token_count(tmp_path: Path):
    """A provider (or proxy) that reports no usage: LiteLLM's count bills the call, marked as
    estimated, instead of a free answer."""
    with fake_server(FakeBehaviour(prompt_tokens=0, completion_tokens=0)) as fake:
        a = acts(tmp_path, {"openai-gpt-4o": {"api_base": fake.v1}})
        res = await run_call(a, model_id="openai-gpt-4o", allow_fallbacks=False)
    assert res.usage.estimated and res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert res.cost.billed > 0
