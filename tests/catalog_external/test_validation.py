"""Broken external.yaml documents: each rule fails loudly, with every problem listed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from models_catalog.errors import CatalogValidationError
from models_catalog.external import ExternalCatalogError, load_external, load_external_catalog


def _problems(write, doc: dict[str, Any] | str) -> list[str]:
    with pytest.raises(ExternalCatalogError) as info:
        load_external(write(doc))
    assert info.value.problems, "an invalid catalog must list its problems"
    return info.value.problems


def _one(problems: list[str], *needles: str) -> str:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no problem mentions {needles}; got:\n" + "\n".join(problems)
    return hits[0]


def test_base_document_is_valid(write, doc):
    providers, models = load_external(write(doc))
    assert set(providers) == {"acme", "pixo"}
    assert models["acme-chat"].fallbacks == ["acme-chat-mini"]
    # the file-level markup reaches every model that does not set its own
    assert {m.pricing.markup for m in models.values()} == {Decimal("0.40")}


def test_unknown_provider_reference(write, doc):
    doc["models"][0]["provider_id"] = "nope"
    _one(_problems(write, doc), "acme-chat", "unknown provider 'nope'")


def test_duplicate_model_id(write, doc):
    doc["models"][1]["id"] = "acme-chat"
    _one(_problems(write, doc), "duplicate model id 'acme-chat'")


def test_duplicate_provider_id(write, doc):
    doc["providers"][1]["id"] = "acme"
    _one(_problems(write, doc), "duplicate provider id 'acme'")


def test_duplicate_litellm_id(write, doc):
    # the seed's dall-e-3 / dall-e-3-hd mistake
    doc["models"][1]["litellm_id"] = "openai/chat-1"
    _one(_problems(write, doc), "duplicate litellm_id 'openai/chat-1'", "acme-chat")


def test_same_route_and_params_is_a_duplicate_deployment(write, doc):
    doc["models"][1]["litellm_model"] = "openai/chat-1"
    _one(_problems(write, doc), "same LiteLLM model and parameters")
    doc["models"][1]["litellm_params"] = {"quality": "hd"}  # distinct call: allowed
    load_external(write(doc))


@pytest.mark.parametrize(
    "field",
    [
        "input_per_1k",
        "output_per_1k",
        "cached_input_per_1k",
        "cache_write_input_per_1k",
        "cache_write_1h_input_per_1k",
    ],
)
def test_negative_price(write, doc, field):
    doc["models"][0]["pricing"][field] = "-0.001"
    _one(_problems(write, doc), "acme-chat", f"pricing.{field}", "greater than or equal to 0")


def test_float_price_is_rejected(write, doc):
    doc["models"][3]["pricing"]["per_image"] = 0.04  # dumped unquoted: YAML float
    _one(_problems(write, doc), "pixo-image", "pricing.per_image", "quoted decimal string")


def test_pricing_type_needs_its_rate(write, doc):
    del doc["models"][3]["pricing"]["per_image"]
    _one(_problems(write, doc), "pixo-image", "per_image")


@pytest.mark.parametrize("markup", ["1.40", "-0.1"])
def test_markup_must_be_a_fraction(write, doc, markup):
    doc["markup"] = markup
    _one(_problems(write, doc), "markup must be a fraction")


def test_model_markup_as_multiplier(write, doc):
    doc["models"][0]["pricing"]["markup"] = "1.40"
    _one(_problems(write, doc), "acme-chat", "multiplier")


def test_missing_markup(write, doc):
    del doc["markup"]
    _one(_problems(write, doc), "missing `markup:`")


def test_fallback_to_unknown_model(write, doc):
    doc["fallbacks"]["acme-chat"] = ["acme-chat-mini", "ghost"]
    _one(_problems(write, doc), "fallbacks[acme-chat]", "unknown model 'ghost'")


def test_fallback_from_unknown_model(write, doc):
    doc["fallbacks"]["ghost"] = ["acme-chat"]
    _one(_problems(write, doc), "fallbacks[ghost]", "unknown model 'ghost'")


def test_fallback_by_alias_is_rejected_with_a_hint(write, doc):
    doc["fallbacks"] = {"acme-chat-mini": ["chat"]}
    _one(_problems(write, doc), "alias of 'acme-chat'")


def test_fallback_to_itself(write, doc):
    doc["fallbacks"]["acme-chat"] = ["acme-chat"]
    _one(_problems(write, doc), "cannot fall back to itself")


def test_fallback_across_modes(write, doc):
    doc["fallbacks"]["acme-chat"] = ["pixo-image"]
    _one(_problems(write, doc), "cannot stand in for")


def test_fallback_to_deprecated_model(write, doc):
    doc["models"][1]["status"] = "deprecated"
    _one(_problems(write, doc), "'acme-chat-mini' is deprecated")


def test_fallbacks_only_in_their_section(write, doc):
    doc["models"][0]["fallbacks"] = ["acme-chat-mini"]
    _one(_problems(write, doc), "top-level `fallbacks:` section")


def test_alias_collides_with_id(write, doc):
    doc["models"][1]["aliases"] = ["acme-chat"]
    _one(_problems(write, doc), "alias 'acme-chat' is already taken")


def test_unknown_successor(write, doc):
    doc["models"][1]["successor"] = "ghost"
    _one(_problems(write, doc), "unknown successor 'ghost'")


def test_unknown_field_is_rejected(write, doc):
    doc["models"][0]["contextWindow"] = 1000  # seed spelling, not ours
    _one(_problems(write, doc), "acme-chat", "contextWindow", "Extra inputs are not permitted")


def test_unknown_top_level_key(write, doc):
    doc["router_settings"] = {}
    _one(_problems(write, doc), "unknown top-level key 'router_settings'")


def test_bad_api_key_env(write, doc):
    doc["providers"][0]["api_key_env"] = "acme-key"
    _one(_problems(write, doc), "providers[0]", "api_key_env")


def test_all_problems_are_reported_together(write, doc):
    doc["providers"][1]["id"] = "acme"
    doc["models"][0]["pricing"]["input_per_1k"] = "-1"
    doc["fallbacks"]["acme-chat-mini"] = ["ghost"]
    problems = _problems(write, doc)
    _one(problems, "duplicate provider id")
    _one(problems, "greater than or equal to 0")
    _one(problems, "unknown model 'ghost'")


def test_not_yaml(write):
    _one(_problems(write, "providers: [unclosed\n"), "not valid YAML")


def test_missing_file(tmp_path):
    with pytest.raises(ExternalCatalogError, match="cannot read"):
        load_external(tmp_path)


def test_error_is_the_catalog_validation_error(write, doc):
    doc["models"][0]["provider_id"] = "nope"
    with pytest.raises(CatalogValidationError, match="unknown provider") as info:
        load_external_catalog(write(doc))
    assert isinstance(info.value, ValueError)


def test_too_many_fallbacks(write, doc, monkeypatch):
    """Each deployment tried gets the Router's timeout within one call activity: the catalog
    bounds the chain (MAX_FALLBACKS, lowered here so the small test catalog exceeds it)."""
    from models_catalog import external

    monkeypatch.setattr(external, "MAX_FALLBACKS", 0)
    _one(_problems(write, doc), "fallbacks[acme-chat]", "at most 0 fallbacks per model, got 1")
