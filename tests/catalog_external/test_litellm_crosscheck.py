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

from activities.llm.pricing_check import compare_prices  # noqa: E402
from models_catalog.catalog import load_catalog  # noqa: E402
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


def test_price_drift_against_litellm_cost_map_is_reported():
    """The weekly pricing check's comparison (activities/llm/pricing_check.py), run at test time
    on the pinned release's map: differences are a warning in pytest's summary."""
    report = compare_prices(load_catalog(), litellm.model_cost)
    # Keep the report honest: the lookup must actually find and compare a good share of models.
    assert report.compared_models >= 20, f"cost-map lookup found only {report.compared_models}"
    assert report.compared_prices >= 30
    lines = [
        f"LiteLLM {version('litellm')} bundled cost map: {report.compared_models} models known, "
        f"{report.compared_prices} rates compared, {len(report.differences)} differ",
        *(
            f"{d.model_id} [{d.litellm_key}] {d.field}: ours {d.catalog:f} vs LiteLLM "
            f"{d.litellm:f} USD {d.unit} (cost, before markup)"
            for d in report.differences
        ),
        f"not in LiteLLM's cost map ({len(report.not_in_cost_map)}): "
        + ", ".join(report.not_in_cost_map),
    ]
    text = "\n".join(lines)
    print(text)
    if report.differences or report.not_in_cost_map:
        warnings.warn(LiteLLMPriceDrift(text), stacklevel=1)


def test_per_request_prices_are_compared_too():
    """Search APIs priced per request (Tavily) are compared with the map's per-query cost: the
    pinned release's map says 0.008 a query, the seed 0.001."""
    cost_map = {"tavily/search": {**litellm.model_cost["tavily/search"]}}
    [diff] = compare_prices(load_catalog(), cost_map).differences
    assert (diff.model_id, diff.field, diff.catalog) == (
        "tavily-search",
        "per_request",
        Decimal("0.001"),
    )
    cost_map["tavily/search"]["input_cost_per_query"] = 0.001
    assert compare_prices(load_catalog(), cost_map).differences == []


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
