"""Cost, billing, lookups and configuration on a synthetic catalog."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models_catalog.external import ExternalUsage, load_external_catalog


@pytest.fixture
def catalog(write, doc):
    return load_external_catalog(write(doc))


def test_per_token_cost_and_billed(catalog):
    model = catalog.models["acme-chat"]
    got = model.cost(ExternalUsage(input_tokens=1500, output_tokens=250, cached_input_tokens=2000))
    # 1.5 x 0.002 + 0.25 x 0.008 + 2 x 0.0005 (cached rate)
    assert got.cost == Decimal("0.006")
    assert got.billed == Decimal("0.0084")  # x 1.40, exactly
    assert got.margin == Decimal("0.0024")
    assert isinstance(got.billed, Decimal)


def test_cached_tokens_fall_back_to_the_input_rate(catalog):
    got = catalog.models["acme-chat-mini"].cost(ExternalUsage(cached_input_tokens=1000))
    assert got.cost == Decimal("0.0001")


def test_cache_writes_are_priced_at_the_cache_write_rate(write, doc):
    doc["models"][0]["pricing"]["cache_write_input_per_1k"] = "0.0025"
    model = load_external_catalog(write(doc)).models["acme-chat"]
    got = model.cost(ExternalUsage(input_tokens=1000, cache_write_input_tokens=2000))
    assert got.cost == Decimal("0.007")  # 1 x 0.002 + 2 x 0.0025 (write rate)
    assert model.pricing.billed_rates()["cache_write_input_per_1k"] == Decimal("0.0035")


def test_cache_writes_fall_back_to_the_input_rate(catalog):
    """No write rate: a cache write costs what it cost before writes were split out."""
    model = catalog.models["acme-chat"]
    split = model.cost(ExternalUsage(input_tokens=500, cache_write_input_tokens=1500))
    assert split.cost == model.cost(ExternalUsage(input_tokens=2000)).cost == Decimal("0.004")


def test_1h_cache_writes_are_priced_at_their_rate(write, doc):
    pricing = doc["models"][0]["pricing"]
    pricing["cache_write_input_per_1k"], pricing["cache_write_1h_input_per_1k"] = "0.0025", "0.004"
    model = load_external_catalog(write(doc)).models["acme-chat"]
    usage = ExternalUsage(cache_write_input_tokens=3000, cache_write_1h_input_tokens=1000)
    assert model.cost(usage).cost == Decimal("0.009")  # 2 x 0.0025 + 1 x 0.004 (1-hour rate)
    del pricing["cache_write_1h_input_per_1k"]  # no 1-hour rate: the write rate
    model = load_external_catalog(write(doc)).models["acme-chat"]
    assert model.cost(usage).cost == Decimal("0.0075")


def test_1h_cache_writes_are_part_of_the_writes():
    with pytest.raises(ValueError, match="include them"):
        ExternalUsage(cache_write_input_tokens=10, cache_write_1h_input_tokens=11)


def test_per_request_fee_is_added_to_tokens(catalog):
    got = catalog.models["acme-search"].cost(ExternalUsage(input_tokens=1000, output_tokens=1000))
    assert got.cost == Decimal("0.007")  # 0.001 + 0.001 + 0.005 search fee
    two = catalog.models["acme-search"].cost(ExternalUsage(requests=2))
    assert two.cost == Decimal("0.010")


def test_per_image(catalog):
    got = catalog.models["pixo-image"].cost(ExternalUsage(images=3))
    assert (got.cost, got.billed) == (Decimal("0.12"), Decimal("0.168"))


def test_per_character_pricing_ignores_tokens(catalog):
    model = catalog.models["pixo-voice"]
    assert model.cost(ExternalUsage(input_tokens=10_000)).cost == 0
    assert model.cost(ExternalUsage(characters=2000)).cost == Decimal("0.030")


def test_billed_rates(catalog):
    rates = catalog.models["acme-chat"].pricing.billed_rates()
    assert rates == {
        "input_per_1k": Decimal("0.0028"),
        "output_per_1k": Decimal("0.0112"),
        "cached_input_per_1k": Decimal("0.0007"),
    }


def test_model_markup_override(write, doc):
    doc["models"][0]["pricing"]["markup"] = "0.25"
    catalog = load_external_catalog(write(doc))
    assert catalog.models["acme-chat"].pricing.billed(Decimal("1")) == Decimal("1.25")
    assert catalog.models["acme-chat-mini"].pricing.markup == Decimal("0.40")


def test_lookup_by_id_alias_and_litellm_id(catalog):
    assert catalog.get("acme-chat").id == "acme-chat"
    assert catalog.get("chat").id == "acme-chat"
    assert catalog.get("openai/chat-mini").id == "acme-chat-mini"
    assert catalog.by_litellm_id("pixo/img-1").id == "pixo-image"
    assert catalog.get("ghost") is None


def test_derived_flags(catalog):
    chat = catalog.models["acme-chat"]
    assert chat.supports_functions and chat.supports_streaming and not chat.supports_vision
    assert chat.primary_mode == "chat" and chat.litellm_mode == "chat"
    assert catalog.models["pixo-image"].primary_mode == "image"
    assert catalog.models["pixo-voice"].litellm_mode == "audio_speech"
    assert chat.min_tier == 1
    assert catalog.providers["acme"].hipaa_compliant
    assert not catalog.providers["pixo"].hipaa_compliant


def test_configured_only_when_the_key_variable_is_set(catalog):
    acme = catalog.providers["acme"]
    assert not acme.is_configured({})
    assert not acme.is_configured({"ACME_API_KEY": "  "})
    assert acme.is_configured({"ACME_API_KEY": "sk-test"})
    env = {"ACME_API_KEY": "sk-test", "PIXO_API_KEY": "k"}
    assert [p.id for p in catalog.configured_providers(env)] == ["acme", "pixo"]
    # pixo has no LiteLLM adapter: configured, but its models are not routable
    assert {m.id for m in catalog.routable_models(env)} == {
        "acme-chat",
        "acme-chat-mini",
        "acme-search",
    }


def test_is_configured_reads_the_process_environment(catalog, monkeypatch):
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    assert not catalog.providers["acme"].is_configured()
    monkeypatch.setenv("ACME_API_KEY", "sk-test")
    assert catalog.providers["acme"].is_configured()


def test_catalog_objects_are_frozen(catalog):
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen
        catalog.models["acme-chat"].litellm_id = "x"  # type: ignore[misc]
