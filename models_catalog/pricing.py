"""Pricing: what a call is billed, what it cost us, what endpoint uptime cost (pure, `Decimal`).

Every price in the catalog is a *billed* price (DESIGN 2): seed 000's per-unit and hourly model
prices already include the 75 % self-hosted markup, the services' unit prices already include
their 40 % markup, and external provider costs are turned into billed amounts by
`ExternalPricing.billed` (cost x (1 + 0.40)). So nothing here multiplies by a markup except
`external_charge`, which delegates to `models_catalog.external`. The `markup` fields are
informational (the margin the price was set with); they are never applied a second time.

Rules (digest 10 items 11-13 are gaps in the seeds; these are the project's decisions):

1. **Service charge** (what the tenant pays for a call through a mid-level service):
   service unit price for the operation's unit x units. Nothing else is billed for that call
   (no double billing: the models' prices are *not* added on top).
2. **Internal cost** (what serving the call cost, recorded beside the charge for margin reports):
   the model-level price of each model the call used, chosen in this order:

   a. the model's own price for the operation's unit (per_image, per_minute_audio, ...) x units;
   b. else the model's `per_request` price, once per invocation (units are in a unit the model
      does not price, so the invocation is the only countable thing);
   c. else, when the caller measured how long the invocation held an instance, the hourly rate
      prorated: hourly_rate x duration_seconds / 3600;
   d. else `PricingError`: no price is invented (DESIGN 1).

   Every model an operation of the bundled catalog may use (required or optional) prices the
   operation's unit, so (a) is the normal case; the tests check this against the catalog.
3. **Endpoint uptime**: instance_count x billed_hourly x hours the interval ran (an open interval
   runs until `now`), optionally clipped to a report window. Uptime is a platform cost per
   (app, environment, model); it is not billed to a tenant.
4. **External calls**: `ExternalModel.cost` computes provider cost and billed = cost x 1.40.

Precision: the ledger stores `NUMERIC(20,10)`. Amounts are computed in a 50-digit decimal
context (never float), then quantized *once* to 10 decimal places, ROUND_HALF_UP (which is what
PostgreSQL does when it stores a NUMERIC(20,10)), so the Decimal a caller holds is exactly the
value the ledger stores and reads back. Units are quantized the same way *before* multiplying,
so amount == to_ledger(unit_price x stored units) holds for every charge and unit-priced cost
(an hourly cost is computed from the exact duration, its stored hours are rounded).
Rounding to cents happens only for display (`display_money`), never in stored values.
"""

from __future__ import annotations

import decimal
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models_catalog.errors import CatalogError, UnknownOperationError
from models_catalog.external import ExternalCost, ExternalModel, ExternalUsage
from models_catalog.types import (
    UNIT_PRICE_FIELD,
    MidLevelService,
    ModelPricing,
    SelfHostedModel,
    ServiceOperation,
)

LEDGER_PLACES = 10
LEDGER_QUANTUM = Decimal(1).scaleb(-LEDGER_PLACES)  # 0.0000000001
# NUMERIC(20,10): at most 10 digits before the point.
LEDGER_LIMIT = Decimal(10) ** (20 - LEDGER_PLACES)
SECONDS_PER_HOUR = Decimal(3600)
_CONTEXT = decimal.Context(prec=50, rounding=ROUND_HALF_UP)

CostBasis = Literal["unit_price", "per_request", "hourly"]


class PricingError(CatalogError, ValueError):
    """A price cannot be computed (no price for the unit, bad quantity, out of range)."""


# ----------------------------------------------------------------------------- numbers


def to_ledger(amount: Decimal | int) -> Decimal:
    """`amount` quantized to the ledger's 10 decimal places (ROUND_HALF_UP), range-checked."""
    value = _exact(amount, "amount")
    # Checked before quantizing too: a value of more than 40 digits (1E+45) has no room for
    # 10 places in the context's 50 digits, and quantize trapped `decimal.InvalidOperation`
    # (not a ValueError: retried as if transient).
    if abs(value) >= LEDGER_LIMIT:
        raise PricingError(f"amount {value} does not fit NUMERIC(20,10) (limit {LEDGER_LIMIT})")
    with decimal.localcontext(_CONTEXT):
        out = value.quantize(LEDGER_QUANTUM)
    if abs(out) >= LEDGER_LIMIT:  # rounded up to the limit (9999999999.99999999995)
        raise PricingError(f"amount {value} does not fit NUMERIC(20,10) (limit {LEDGER_LIMIT})")
    return out


def display_money(amount: Decimal, places: int = 2) -> str:
    """An amount rounded for people (default cents), e.g. '0.06'. Never store this."""
    with decimal.localcontext(_CONTEXT):
        return str(amount.quantize(Decimal(1).scaleb(-places)))


def percent(part: Decimal, whole: Decimal, places: int = 2) -> Decimal:
    """`part` as a percentage of `whole`, rounded half up to `places` (for people, like
    `display_money`; never stored)."""
    with decimal.localcontext(_CONTEXT):
        return (part / whole * 100).quantize(Decimal(1).scaleb(-places))


def as_units(value: Decimal | int | str, what: str = "units") -> Decimal:
    """A non-negative quantity as a ledger-precision Decimal. Floats are refused."""
    qty = _exact(value, what)
    if qty < 0:
        raise PricingError(f"{what} must not be negative, got {qty}")
    return to_ledger(qty)


def _exact(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise PricingError(
            f"{what} must be a Decimal, int or decimal string, not {type(value).__name__} "
            f"({value!r}); floats cannot represent prices exactly"
        )
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, int | str):
        try:
            out = Decimal(value)
        except decimal.InvalidOperation:
            raise PricingError(f"{what} is not a number: {value!r}") from None
    else:
        raise PricingError(f"{what} must be a Decimal, got {type(value).__name__}")
    if not out.is_finite():
        raise PricingError(f"{what} must be finite, got {out}")
    return out


def _seconds(value: Decimal | int | float, what: str = "duration_seconds") -> Decimal:
    """A measured duration. Measurements (not money) may arrive as float; converted by repr."""
    if isinstance(value, float) and not isinstance(value, bool):
        value = Decimal(repr(value))
    secs = _exact(value, what)
    if secs < 0:
        raise PricingError(f"{what} must not be negative, got {secs}")
    return secs


# ----------------------------------------------------------------------------- service charge


class Charge(BaseModel):
    """What the tenant is billed for one call: unit_price x units = amount (ledger precision)."""

    model_config = ConfigDict(frozen=True)

    unit: str
    unit_price: Decimal
    units: Decimal
    amount: Decimal


def service_charge(
    service: MidLevelService, operation: ServiceOperation | str, units: Decimal | int | str
) -> Charge:
    """Rule 1: the service's unit price for the operation's unit x units."""
    op = _operation(service, operation)
    price = service.pricing.price_for(op.unit)
    if price is None:
        raise PricingError(
            f"service {service.id!r} has no {UNIT_PRICE_FIELD[op.unit]} price, but operation "
            f"{op.id!r} is billed per {op.unit}"
        )
    return charge_at(op.unit, price, units)


def charge_at(unit: str, unit_price: Decimal, units: Decimal | int | str) -> Charge:
    """unit_price x units at ledger precision (a job charges the price its plan quoted)."""
    qty = as_units(units)
    with decimal.localcontext(_CONTEXT):
        amount = to_ledger(unit_price * qty)
    return Charge(unit=unit, unit_price=unit_price, units=qty, amount=amount)


def _operation(service: MidLevelService, operation: ServiceOperation | str) -> ServiceOperation:
    if isinstance(operation, ServiceOperation):
        return operation
    op = service.find_operation(operation)
    if op is None:
        raise UnknownOperationError(service.id, operation, [o.id for o in service.operations])
    return op


# ----------------------------------------------------------------------------- internal cost


class ModelCost(BaseModel):
    """A model's internal cost for one invocation and the rule that produced it."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    basis: CostBasis
    rate: Decimal  # the price applied: per unit, per request, or per instance hour
    quantity: Decimal  # units, 1 request, or hours
    amount: Decimal


def model_cost(
    model: SelfHostedModel,
    unit: str,
    units: Decimal | int | str,
    *,
    duration_seconds: Decimal | int | float | None = None,
) -> ModelCost:
    """Rule 2 (a -> b -> c -> error) with its basis, for the ledger row's metadata."""
    return model_cost_at(model.id, model.pricing, unit, units, duration_seconds=duration_seconds)


def model_cost_at(
    model_id: str,
    p: ModelPricing,
    unit: str,
    units: Decimal | int | str,
    *,
    duration_seconds: Decimal | int | float | None = None,
) -> ModelCost:
    """`model_cost` at given prices (a job's plan keeps the prices it was planned with)."""
    if unit not in UNIT_PRICE_FIELD:
        raise PricingError(f"unknown billing unit {unit!r} (known: {', '.join(UNIT_PRICE_FIELD)})")
    qty = as_units(units)
    with decimal.localcontext(_CONTEXT):
        unit_price = p.price_for(unit)
        if unit_price is not None:
            return ModelCost(
                model_id=model_id, basis="unit_price", rate=unit_price, quantity=qty,
                amount=to_ledger(unit_price * qty),
            )  # fmt: skip
        if p.per_request is not None:
            return ModelCost(
                model_id=model_id, basis="per_request", rate=p.per_request,
                quantity=Decimal(1), amount=to_ledger(p.per_request),
            )  # fmt: skip
        if duration_seconds is not None:
            hours = _seconds(duration_seconds) / SECONDS_PER_HOUR
            return ModelCost(
                model_id=model_id, basis="hourly", rate=p.hourly_rate, quantity=hours,
                amount=to_ledger(p.hourly_rate * hours),
            )  # fmt: skip
    raise PricingError(
        f"model {model_id!r} has no {UNIT_PRICE_FIELD[unit]} or per_request price and no "
        "measured duration was given: its internal cost cannot be computed"
    )


def model_internal_cost(
    model: SelfHostedModel,
    unit: str,
    units: Decimal | int | str,
    *,
    duration_seconds: Decimal | int | float | None = None,
) -> Decimal:
    """Rule 2: the model-level price of one invocation (see `model_cost` for the basis)."""
    return model_cost(model, unit, units, duration_seconds=duration_seconds).amount


# ----------------------------------------------------------------------------- uptime


def uptime_hours(
    started_at: datetime,
    ended_at: datetime | None,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
) -> Decimal:
    """Exact hours an interval ran: open intervals up to `now`, clipped to start at `since`."""
    for name, value in (("started_at", started_at), ("ended_at", ended_at), ("now", now),
                        ("since", since)):  # fmt: skip
        if value is not None and value.utcoffset() is None:
            raise PricingError(f"{name} must be timezone-aware, got {value!r}")
    end = ended_at if ended_at is not None else (now or datetime.now(UTC))
    if end < started_at:
        if ended_at is not None:
            raise PricingError(f"interval ends ({end}) before it starts ({started_at})")
        return Decimal(0)  # an interval opened after `now` (clock skew): nothing ran yet
    start = max(started_at, since) if since is not None else started_at
    if end <= start:
        return Decimal(0)
    delta = end - start
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    with decimal.localcontext(_CONTEXT):
        return Decimal(micros) / Decimal(1_000_000) / SECONDS_PER_HOUR


def uptime_cost(
    instance_count: int,
    billed_hourly: Decimal,
    started_at: datetime,
    ended_at: datetime | None,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
) -> Decimal:
    """Rule 3: instance_count x billed_hourly x hours (ledger precision)."""
    if isinstance(instance_count, bool) or not isinstance(instance_count, int):
        raise PricingError(f"instance_count must be an int, got {instance_count!r}")
    if instance_count < 0:
        raise PricingError(f"instance_count must not be negative, got {instance_count}")
    rate = _exact(billed_hourly, "billed_hourly")
    if rate < 0:
        raise PricingError(f"billed_hourly must not be negative, got {rate}")
    hours = uptime_hours(started_at, ended_at, now=now, since=since)
    with decimal.localcontext(_CONTEXT):
        return to_ledger(instance_count * rate * hours)


# ----------------------------------------------------------------------------- external


def external_billed(cost: ExternalCost) -> Decimal:
    """Rule 4: the billed amount of an external call (cost x (1 + markup)), ledger precision."""
    return to_ledger(cost.billed)


def external_charge(model: ExternalModel, usage: ExternalUsage) -> ExternalCost:
    """`ExternalModel.cost` with cost and billed quantized to ledger precision."""
    raw = model.cost(usage)
    return ExternalCost(cost=to_ledger(raw.cost), billed=to_ledger(raw.billed), markup=raw.markup)
