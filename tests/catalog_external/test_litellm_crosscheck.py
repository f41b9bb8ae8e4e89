"""The catalog against the LiteLLM release we pin (bundled cost map, no network).

- Price differences between our provider costs and LiteLLM's cost map are *reported* (as a
  warning, shown in pytest's summary), never failed: the seed is our price list, LiteLLM's map
  only a second opinion, and prices drift.
- A model whose provider we say LiteLLM serves must resolve through `litellm.get_llm_provider`
  to that provider. That fails: it means the generated proxy config would not route.
"""

from __future__ import annotations

import os
import warnings
from decimal import Decimal
from importlib.metadata import version

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from litellm.types.utils import SearchProviders  # noqa: E402

from models_catalog.external import ExternalModel, Provider, load_external_catalog  # noqa: E402

CATALOG = load_external_catalog()
LITELLM_PROVIDERS = {getattr(p, "value", p) for p in litellm.provider_list}
SEARCH_PROVIDERS = {p.value for p in SearchProviders}
# get_llm_provider names the chat route of a provider differently for some providers.
EQUIVALENT = {"cohere": {"cohere", "cohere_chat"}}


class LiteLLMPriceDrift(UserWarning):
    """Our price for a model differs from LiteLLM's bundled cost map."""


def _provider(model: ExternalModel) -> Provider:
    return CATALOG.provider_of(model)


def _cost_map_entry(model: ExternalModel) -> tuple[str, dict] | None:
    """LiteLLM's cost-map entry for the model, if the map has one for the same provider."""
    lp = _provider(model).litellm_provider
    if lp is None:
        return None
    route = model.litellm_route
    candidates = [route]
    prefix, _, bare = route.partition("/")
    if bare and prefix == lp:
        candidates.append(bare)
    for key in candidates:
        entry = litellm.model_cost.get(key)
        if entry and entry.get("litellm_provider") in EQUIVALENT.get(lp, {lp}):
            return key, entry
    return None


def _pairs(model: ExternalModel, entry: dict) -> list[tuple[str, Decimal, str, Decimal, str]]:
    """(our field, our rate, LiteLLM field, factor from LiteLLM's unit to ours, unit label)."""
    p = model.pricing
    out: list[tuple[str, Decimal, str, Decimal, str]] = []
    k = Decimal(1000)
    if p.type == "per_token" and p.input_per_1k is not None:
        if p.input_unit == "characters":
            out.append(("input_per_1k", p.input_per_1k, "input_cost_per_character", k, "/1K chars"))
        else:
            out.append(("input_per_1k", p.input_per_1k, "input_cost_per_token", k, "/1K tokens"))
        if p.output_per_1k is not None:
            out.append(("output_per_1k", p.output_per_1k, "output_cost_per_token", k, "/1K tokens"))
        if p.cached_input_per_1k is not None:
            cached = p.cached_input_per_1k
            out.append(
                ("cached_input_per_1k", cached, "cache_read_input_token_cost", k, "/1K tokens")
            )
    if p.per_image is not None:
        field = (
            "output_cost_per_image" if "output_cost_per_image" in entry else "input_cost_per_image"
        )
        out.append(("per_image", p.per_image, field, Decimal(1), "/image"))
    if p.per_second is not None:
        out.append(("per_second", p.per_second, "output_cost_per_second", Decimal(1), "/second"))
    if p.per_minute is not None:
        out.append(("per_minute", p.per_minute, "input_cost_per_second", Decimal(60), "/minute"))
    if p.per_request is not None and p.type == "per_request":
        out.append(("per_request", p.per_request, "input_cost_per_query", Decimal(1), "/request"))
    return out


def _close(ours: Decimal, theirs: Decimal) -> bool:
    # The cost map stores rounded floats (deepgram's $0.0043/min is 7.167e-05/s): 0.1 % absorbs
    # that rounding; real price changes are far larger.
    return abs(ours - theirs) <= max(abs(ours), abs(theirs)) * Decimal("0.001")


def test_price_drift_against_litellm_cost_map_is_reported():
    known, unknown, drift, compared = [], [], [], 0
    for model in CATALOG.models.values():
        if _provider(model).litellm_provider is None:
            continue
        hit = _cost_map_entry(model)
        if hit is None:
            unknown.append(model.id)
            continue
        key, entry = hit
        known.append(model.id)
        for ours_field, ours, theirs_field, factor, unit in _pairs(model, entry):
            theirs_raw = entry.get(theirs_field)
            if theirs_raw is None:
                continue
            compared += 1
            theirs = Decimal(repr(theirs_raw)) * factor
            if not _close(ours, theirs):
                drift.append(
                    f"{model.id} [{key}] {ours_field}: ours {ours:f} vs LiteLLM "
                    f"{theirs.normalize():f} USD{unit} (cost, before markup)"
                )

    # Keep the report honest: the lookup must actually find and compare a good share of models.
    assert len(known) >= 20, f"cost-map lookup found only {known}"
    assert compared >= 30
    lines = [
        f"LiteLLM {version('litellm')} bundled cost map: "
        f"{len(known)} models known, {compared} rates compared, {len(drift)} differ",
        *drift,
        f"not in LiteLLM's cost map ({len(unknown)}): {', '.join(unknown)}",
    ]
    report = "\n".join(lines)
    print(report)
    if drift or unknown:
        warnings.warn(LiteLLMPriceDrift(report), stacklevel=1)


ROUTABLE = [m for m in CATALOG.models.values() if _provider(m).litellm_provider is not None]
UNROUTABLE = [m for m in CATALOG.models.values() if _provider(m).litellm_provider is None]


@pytest.mark.parametrize("provider", list(CATALOG.providers.values()), ids=lambda p: p.id)
def test_litellm_provider_names_are_real(provider: Provider):
    if provider.litellm_provider is None:
        return
    assert provider.litellm_provider in LITELLM_PROVIDERS | SEARCH_PROVIDERS


@pytest.mark.parametrize("model", ROUTABLE, ids=lambda m: m.id)
def test_routable_models_resolve_in_litellm(model: ExternalModel):
    expected = _provider(model).litellm_provider
    assert expected is not None
    route = model.litellm_route
    if model.litellm_mode == "search":
        # litellm.search(search_provider=...) takes the provider, not a model string
        assert expected in SEARCH_PROVIDERS
        assert route.partition("/")[0] == expected
        return
    _name, resolved, _key, _base = litellm.get_llm_provider(route)
    assert resolved in EQUIVALENT.get(expected, {expected}), f"{route} resolves to {resolved}"


def test_unroutable_models_are_reported_if_litellm_learns_them():
    learned = []
    for model in UNROUTABLE:
        try:
            _n, resolved, _k, _b = litellm.get_llm_provider(model.litellm_route)
        except Exception:  # LiteLLM's BadRequestError: the expected outcome
            continue
        learned.append(f"{model.id} -> {resolved}")
    assert UNROUTABLE, "expected some providers without a LiteLLM adapter (seed 002)"
    if learned:
        warnings.warn(
            LiteLLMPriceDrift(
                "LiteLLM now resolves models marked unroutable: " + ", ".join(learned)
            ),
            stacklevel=1,
        )
