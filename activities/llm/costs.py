"""The catalog price of one LLM call (what the ledger records), and LiteLLM's for comparison.

External: provider cost from the catalog's per-token prices, billed = cost x (1 + markup)
(`models_catalog.pricing.external_charge`). Self-hosted: the model's billed per-request price
(seed 000 prices already include the 75 % markup); its GPU time is metered separately as endpoint
uptime, so no internal cost is attributed to the single call. LiteLLM's `response_cost` (from its
bundled cost map) is kept beside it as a cross-check, never billed.
"""

from __future__ import annotations

import math
from decimal import Decimal

from activities.llm.types import LLMCost, TokenUsage
from models_catalog.catalog import Catalog
from models_catalog.external import ExternalUsage
from models_catalog.pricing import as_units, external_charge, model_cost


def litellm_cost(value: object) -> Decimal | None:
    """LiteLLM's float cost as a Decimal (via repr: the shortest exact decimal of the float)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return Decimal(repr(float(value)))
    return None


def price_call(
    catalog: Catalog, model_id: str, usage: TokenUsage, reported: Decimal | None = None
) -> LLMCost:
    if model_id in catalog.external_models:
        charge = external_charge(
            catalog.external_models[model_id],
            ExternalUsage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cache_write_input_tokens=usage.cache_write_input_tokens,
                cache_write_1h_input_tokens=usage.cache_write_1h_input_tokens,
            ),
        )
        return LLMCost(
            billed=charge.billed,
            internal_cost=charge.cost,
            unit="token",
            units=as_units(usage.total),
            markup=charge.markup,
            litellm_cost=reported,
        )
    own = catalog.models[model_id]
    per_request = model_cost(own, "request", 1)
    return LLMCost(
        billed=per_request.amount,
        internal_cost=None,
        unit="request",
        units=per_request.quantity,
        unit_price=per_request.rate,
        markup=own.pricing.markup,
        litellm_cost=reported,
    )
