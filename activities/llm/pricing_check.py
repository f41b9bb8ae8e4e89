"""Weekly pricing check: catalog provider costs against LiteLLM's bundled cost map.

Differences are *reported* (registry_sync_log details) for a person to review, never applied:
the catalog is the price list the tenants are billed from (DESIGN 1-2); LiteLLM's map is a second
opinion that drifts with its releases. The seed's pricing sync was a no-op; this one compares.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from models_catalog.catalog import Catalog
from models_catalog.external import ExternalModel

# get_llm_provider names the chat route of some providers differently.
_EQUIVALENT = {"cohere": {"cohere", "cohere_chat"}}
TOLERANCE = Decimal("0.001")  # the cost map stores rounded floats (0.1 % absorbs that)


class PriceDifference(BaseModel):
    model_id: str
    litellm_key: str
    field: str
    catalog: Decimal  # provider cost, our unit
    litellm: Decimal  # converted to our unit
    unit: str


class PricingReport(BaseModel):
    compared_models: int
    compared_prices: int
    not_in_cost_map: list[str]
    differences: list[PriceDifference]


def _entry(
    catalog: Catalog, model: ExternalModel, cost_map: dict[str, Any]
) -> tuple[str, dict] | None:
    lp = catalog.providers[model.provider_id].litellm_provider
    if lp is None:
        return None
    route = model.litellm_route
    prefix, _, bare = route.partition("/")
    for key in [route, bare] if bare and prefix == lp else [route]:
        entry = cost_map.get(key)
        if entry and entry.get("litellm_provider") in _EQUIVALENT.get(lp, {lp}):
            return key, entry
    return None


def _pairs(model: ExternalModel, entry: dict) -> list[tuple[str, Decimal, str, Decimal, str]]:
    """(our field, our rate, cost-map field, factor from its unit to ours, unit label)."""
    p, k, out = model.pricing, Decimal(1000), []
    if p.type == "per_token" and p.input_per_1k is not None:
        field = (
            "input_cost_per_character" if p.input_unit == "characters" else "input_cost_per_token"
        )
        out.append(("input_per_1k", p.input_per_1k, field, k, "per 1K"))
        if p.output_per_1k is not None:
            out.append(("output_per_1k", p.output_per_1k, "output_cost_per_token", k, "per 1K"))
        for ours, rate, theirs in (
            ("cached_input_per_1k", p.cached_input_per_1k, "cache_read_input_token_cost"),
            (
                "cache_write_input_per_1k",
                p.cache_write_input_per_1k,
                "cache_creation_input_token_cost",
            ),
            (
                "cache_write_1h_input_per_1k",
                p.cache_write_1h_input_per_1k,
                "cache_creation_input_token_cost_above_1hr",
            ),
        ):
            if rate is not None:
                out.append((ours, rate, theirs, k, "per 1K"))
    if p.per_image is not None:
        field = (
            "output_cost_per_image" if "output_cost_per_image" in entry else "input_cost_per_image"
        )
        out.append(("per_image", p.per_image, field, Decimal(1), "per image"))
    if p.per_second is not None:
        out.append(("per_second", p.per_second, "output_cost_per_second", Decimal(1), "per second"))
    if p.per_minute is not None:
        out.append(("per_minute", p.per_minute, "input_cost_per_second", Decimal(60), "per minute"))
    if p.type == "per_request" and p.per_request is not None:  # search APIs (Perplexity's fee
        # on top of tokens has no cost-map field)
        out.append(
            ("per_request", p.per_request, "input_cost_per_query", Decimal(1), "per request")
        )
    return out


def compare_prices(catalog: Catalog, cost_map: dict[str, Any] | None = None) -> PricingReport:
    if cost_map is None:
        import litellm

        cost_map = litellm.model_cost
    missing: list[str] = []
    diffs: list[PriceDifference] = []
    models = prices = 0
    for model in catalog.external_models.values():
        if catalog.providers[model.provider_id].litellm_provider is None:
            continue
        hit = _entry(catalog, model, cost_map)
        if hit is None:
            missing.append(model.id)
            continue
        key, entry = hit
        models += 1
        for field, ours, theirs_field, factor, unit in _pairs(model, entry):
            raw = entry.get(theirs_field)
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                continue
            prices += 1
            theirs = Decimal(repr(raw)) * factor
            if abs(ours - theirs) > max(abs(ours), abs(theirs)) * TOLERANCE:
                diffs.append(
                    PriceDifference(
                        model_id=model.id,
                        litellm_key=key,
                        field=field,
                        catalog=ours,
                        litellm=theirs.normalize(),
                        unit=unit,
                    )
                )
    return PricingReport(
        compared_models=models, compared_prices=prices, not_in_cost_map=missing, differences=diffs
    )
