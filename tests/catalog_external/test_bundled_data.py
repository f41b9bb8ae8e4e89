"""The bundled models_catalog/data/external.yaml loads and keeps the seed-002 decisions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models_catalog.external import DEFAULT_DATA_DIR, load_external, load_external_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_external_catalog()


def test_load_external_signature():
    providers, models = load_external(DEFAULT_DATA_DIR)
    assert providers and models
    assert all(m.provider_id in providers for m in models.values())


def test_every_seed_provider_once(catalog):
    # digest 6.1: 29 provider objects, 28 distinct ids (perplexity twice)
    assert len(catalog.providers) == 28


def test_perplexity_is_one_provider_with_the_union_of_its_models(catalog):
    models = catalog.models_of("perplexity")
    # text file: sonar-huge/-pro/-online (3), search file: sonar-pro, sonar (2)
    assert len(models) == 5
    assert {m.litellm_id for m in models} == {
        "perplexity/sonar-huge-online",
        "perplexity/sonar-pro-online",
        "perplexity/sonar-online",
        "perplexity/sonar-pro",
        "perplexity/sonar",
    }


def test_seed_external_models_all_present(catalog):
    # digest 6.2: 81 objects (79 ids + 2 renamed perplexity duplicates) + 3 models that only the
    # seed's LiteLLM yaml lists (gpt-4o-mini, o1, gemini-1.5-pro)
    assert len(catalog.models) == 81 + 3
    seed_refs = [m.seed_ref for m in catalog.models.values()]
    assert all(seed_refs) and len(set(seed_refs)) == len(seed_refs)


def test_litellm_ids_unique_and_dall_e_hd_distinct(catalog):
    ids = [m.litellm_id for m in catalog.models.values()]
    assert len(ids) == len(set(ids))
    std, hd = catalog.models["openai-dall-e-3"], catalog.models["openai-dall-e-3-hd"]
    assert std.litellm_route == hd.litellm_route == "dall-e-3"
    assert (std.litellm_params, hd.litellm_params) == ({"quality": "standard"}, {"quality": "hd"})
    assert hd.pricing.per_image > std.pricing.per_image


def test_markup_is_forty_percent_everywhere(catalog):
    assert catalog.markup == Decimal("0.40")
    assert {m.pricing.markup for m in catalog.models.values()} == {Decimal("0.40")}


def test_prices_are_decimals(catalog):
    for model in catalog.models.values():
        for value in model.pricing.rates().values():
            assert isinstance(value, Decimal)


def test_seed_fallbacks_by_their_litellm_yaml_names(catalog):
    def ids(*names: str) -> list[str]:
        return [catalog.get(n).id for n in names]

    assert catalog.fallbacks == {
        catalog.get("gpt-4o").id: ids("claude-sonnet-4", "gemini-2.0-flash"),
        catalog.get("claude-opus-4").id: ids("gpt-4o", "gemini-1.5-pro"),
    }


def test_hipaa_claims_are_the_conservative_intersection(catalog):
    assert {p.id for p in catalog.providers.values() if p.hipaa_compliant} == {
        "anthropic",
        "deepgram",
    }


def test_external_models_open_to_every_tier(catalog):
    assert {m.min_tier for m in catalog.models.values()} == {1}


def test_credentials_are_environment_variable_names(catalog):
    openai_family = {p.api_key_env for p in catalog.providers.values() if p.id.startswith("openai")}
    assert openai_family == {"OPENAI_API_KEY"}
    assert catalog.providers["veo"].api_key_env == catalog.providers["google"].api_key_env
