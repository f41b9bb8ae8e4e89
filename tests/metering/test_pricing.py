"""Pricing rules, table-driven with hand-computed values.

Prices in the tables are made up (synthetic pricing on copies of catalog entries), so the tests
hold no second copy of catalog facts; the last tests check rules against the real catalog.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.errors import UnknownOperationError
from models_catalog.external import ExternalPricing, ExternalUsage
from models_catalog.pricing import (
    LEDGER_QUANTUM,
    PricingError,
    display_money,
    external_billed,
    external_charge,
    model_cost,
    model_internal_cost,
    service_charge,
    to_ledger,
    uptime_cost,
    uptime_hours,
)
from models_catalog.types import ModelPricing, ServiceOperation, ServicePricing

D = Decimal
CAT = load_catalog()
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def _service(unit: str, **prices: str):  # type: ignore[no-untyped-def]
    """A copy of a catalog service with one synthetic operation billed per `unit`."""
    base = next(iter(CAT.services.values()))
    op = ServiceOperation.model_validate({
        "id": "op", "path": "/x/op", "description": "synthetic", "required_models": ["m"],
        "unit": unit, "content_types": ["image/png"], "output_formats": ["application/json"],
    })  # fmt: skip
    pricing = ServicePricing.model_validate({"markup": "0.40", **prices})
    return base.model_copy(update={"pricing": pricing, "operations": [op]}), op


def _model(**prices: str):  # type: ignore[no-untyped-def]
    base = next(iter(CAT.models.values()))
    pricing = ModelPricing.model_validate({"markup": "0.75", **prices})
    return base.model_copy(update={"pricing": pricing})


# ----------------------------------------------------------------------------- service charge

SERVICE_CASES = [
    # unit, prices, units, unit_price, stored units, amount (hand-computed)
    ("image", {"per_image": "0.02"}, 3, "0.02", "3", "0.06"),
    ("audio_minute", {"per_minute_audio": "0.08"}, D("2.5"), "0.08", "2.5", "0.2"),
    ("3d_model", {"per_3d_model": "8.00"}, 1, "8.00", "1", "8"),
    ("request", {"per_request": "0.50"}, 0, "0.50", "0", "0"),
    ("video_minute", {"per_minute_video": "0.50"}, D("0.1"), "0.50", "0.1", "0.05"),
    ("3d_model", {"per_3d_model": "8.00"}, 1_000_000, "8.00", "1000000", "8000000"),
    # units 1/3 are stored as 0.3333333333; 0.0015 x 0.3333333333 = 0.00049999999995 -> HALF_UP
    ("image", {"per_image": "0.0015"}, D(1) / D(3), "0.0015", "0.3333333333", "0.0005"),
    ("image", {"per_image": "0.001"}, "7", "0.001", "7", "0.007"),
]


@pytest.mark.parametrize(("unit", "prices", "units", "price", "stored", "amount"), SERVICE_CASES)
def test_service_charge(unit, prices, units, price, stored, amount) -> None:  # type: ignore[no-untyped-def]
    service, op = _service(unit, **prices)
    charge = service_charge(service, op, units)
    assert charge.unit == unit
    assert charge.unit_price == D(price)
    assert charge.units == D(stored)
    assert charge.amount == D(amount)
    # Ledger precision: exactly 10 places, so what is sent is what NUMERIC(20,10) stores.
    assert charge.amount.as_tuple().exponent == -10
    assert charge.units.as_tuple().exponent == -10
    assert charge.amount == to_ledger(charge.unit_price * charge.units)


def test_service_charge_by_operation_id() -> None:
    service, _ = _service("image", per_image="0.02")
    assert service_charge(service, "op", 2).amount == D("0.04")
    with pytest.raises(UnknownOperationError):
        service_charge(service, "nope", 1)


@pytest.mark.parametrize(
    ("units", "message"),
    [
        (0.1, "float"),
        (True, "bool"),
        (D(-1), "negative"),
        (D("NaN"), "finite"),
        ("abc", "not a number"),
    ],
)
def test_service_charge_rejects_bad_units(units, message) -> None:  # type: ignore[no-untyped-def]
    service, op = _service("image", per_image="0.02")
    with pytest.raises(PricingError, match=message):
        service_charge(service, op, units)


def test_service_without_price_for_unit() -> None:
    service, op = _service("audio_minute", per_image="0.02")
    with pytest.raises(PricingError, match="per_minute_audio"):
        service_charge(service, op, 1)


# ----------------------------------------------------------------------------- internal cost

MODEL_CASES = [
    # prices, unit, units, duration, basis, rate, quantity, amount
    ({"hourly_rate": "2.47", "per_image": "0.004"}, "image", 3, None, "unit_price",
     "0.004", "3", "0.012"),
    ({"hourly_rate": "2.47", "per_image": "0.004"}, "image", 3, 90, "unit_price",
     "0.004", "3", "0.012"),  # a unit price wins over a measured duration
    ({"hourly_rate": "2.47", "per_minute_audio": "0.04"}, "audio_minute", D("1.5"), None,
     "unit_price", "0.04", "1.5", "0.06"),
    ({"hourly_rate": "2.47", "per_request": "0.005"}, "image", 4, None, "per_request",
     "0.005", "1", "0.005"),  # no per_image: one invocation at per_request
    ({"hourly_rate": "2.47"}, "image", 1, 90, "hourly", "2.47", "0.025", "0.06175"),
    # 1.30 / 3600 = 0.000361111... -> 0.0003611111
    ({"hourly_rate": "1.30"}, "video_minute", 1, 1, "hourly", "1.30", None, "0.0003611111"),
    ({"hourly_rate": "3.55"}, "3d_model", 1, D("1800.5"), "hourly", "3.55", None,
     "1.7754930556"),  # 3.55 x 1800.5 / 3600 = 1.77549305555...
    ({"hourly_rate": "2.00"}, "image", 1, 0.25, "hourly", "2.00", None, "0.0001388889"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prices", "unit", "units", "duration", "basis", "rate", "quantity", "amount"), MODEL_CASES
)
def test_model_internal_cost(prices, unit, units, duration, basis, rate, quantity, amount) -> None:  # type: ignore[no-untyped-def]
    model = _model(**prices)
    cost = model_cost(model, unit, units, duration_seconds=duration)
    assert (cost.basis, cost.rate, cost.amount) == (basis, D(rate), D(amount))
    if quantity is not None:
        assert cost.quantity == D(quantity)
    assert model_internal_cost(model, unit, units, duration_seconds=duration) == D(amount)


def test_model_without_any_applicable_price() -> None:
    model = _model(hourly_rate="2.47")
    with pytest.raises(PricingError, match="no per_image or per_request price"):
        model_internal_cost(model, "image", 1)
    with pytest.raises(PricingError, match="unknown billing unit"):
        model_internal_cost(model, "token", 1)
    with pytest.raises(PricingError, match="negative"):
        model_internal_cost(model, "image", 1, duration_seconds=-1)


# ----------------------------------------------------------------------------- uptime

UPTIME_CASES = [
    # count, rate, start offset, end offset (None: open, up to NOW), since offset, cost
    (2, "2.47", timedelta(0), timedelta(minutes=30), None, "2.47"),
    (1, "1.30", timedelta(0), timedelta(seconds=1), None, "0.0003611111"),
    (3, "3.55", timedelta(0), timedelta(hours=1, minutes=30), None, "15.975"),
    (1, "35.63", timedelta(0), timedelta(days=2), None, "1710.24"),
    (2, "1.00", timedelta(0), None, None, "4"),  # open: 2 h until NOW
    (1, "1.00", timedelta(0), timedelta(hours=2), timedelta(hours=1), "1"),  # clipped
    (1, "1.00", timedelta(0), timedelta(hours=2), timedelta(hours=3), "0"),  # ended before
    (1, "1.00", timedelta(0), timedelta(hours=2), -timedelta(hours=3), "2"),  # since earlier
    (0, "2.47", timedelta(0), timedelta(hours=1), None, "0"),
    (1, "2.47", timedelta(0), timedelta(microseconds=1), None, "0.0000000007"),  # 6.86e-10
]
NOW = T0 + timedelta(hours=2)


@pytest.mark.parametrize(("count", "rate", "start", "end", "since", "cost"), UPTIME_CASES)
def test_uptime_cost(count, rate, start, end, since, cost) -> None:  # type: ignore[no-untyped-def]
    got = uptime_cost(
        count,
        D(rate),
        T0 + start,
        None if end is None else T0 + end,
        now=NOW,
        since=None if since is None else T0 + since,
    )
    assert got == D(cost)


def test_uptime_hours_exact() -> None:
    assert uptime_hours(T0, T0 + timedelta(minutes=45)) == D("0.75")
    # Other time zones are the same instant.
    est = T0.astimezone(timezone(timedelta(hours=-5)))
    assert est.utcoffset() != timedelta(0)
    assert uptime_hours(est, T0 + timedelta(hours=1)) == D(1)
    # An interval that opened "after now" (clock skew) has not run yet.
    assert uptime_hours(NOW + timedelta(seconds=5), None, now=NOW) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, D("1"), T0, T0 - timedelta(seconds=1)), "before it starts"),
        ((1, D("1"), T0.replace(tzinfo=None), T0), "timezone-aware"),
        ((-1, D("1"), T0, T0), "negative"),
        ((1, 1.5, T0, T0), "float"),
        ((1.0, D("1"), T0, T0), "int"),
    ],
)
def test_uptime_cost_rejects(args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PricingError, match=message):
        uptime_cost(*args)


# ----------------------------------------------------------------------------- external


def test_external_billed_delegates_to_external_pricing() -> None:
    base = next(m for m in CAT.external_models.values() if m.pricing.type == "per_token")
    pricing = ExternalPricing.model_validate(
        {"type": "per_token", "input_per_1k": "0.0025", "output_per_1k": "0.01", "markup": "0.40"}
    )
    model = base.model_copy(update={"pricing": pricing})
    # 1000 in x 0.0025/1k + 500 out x 0.01/1k = 0.0025 + 0.005 = 0.0075; x 1.40 = 0.0105
    cost = external_charge(model, ExternalUsage(input_tokens=1000, output_tokens=500))
    assert (cost.cost, cost.billed, cost.markup) == (D("0.0075"), D("0.0105"), D("0.40"))
    assert cost.billed.as_tuple().exponent == -10
    assert external_billed(model.cost(ExternalUsage(input_tokens=1))) == D("0.0000035")


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (D("0.001"), "0.0010000000"),
        (D("0.00000000005"), "0.0000000001"),  # half up, as PostgreSQL rounds NUMERIC
        (D("0.000000000049"), "0.0000000000"),
        (D("9999999999.9999999999"), "9999999999.9999999999"),
        (7, "7.0000000000"),
    ],
)
def test_to_ledger(value, stored) -> None:  # type: ignore[no-untyped-def]
    out = to_ledger(value)
    assert format(out, "f") == stored
    assert out.as_tuple().exponent == LEDGER_QUANTUM.as_tuple().exponent


def test_to_ledger_range_and_display() -> None:
    with pytest.raises(PricingError, match="NUMERIC"):
        to_ledger(D("10000000000"))
    for huge in (D("1E+45"), 10**40):  # no room for 10 places in 50 digits: was InvalidOperation
        with pytest.raises(PricingError, match="NUMERIC"):
            to_ledger(huge)
    assert display_money(D("0.0450000000")) == "0.05"
    assert display_money(D("0.0049999999"), 4) == "0.0050"


# ----------------------------------------------------------------------------- real catalog


def test_every_catalog_operation_is_priced_by_its_service_and_models() -> None:
    """Each operation bills its unit, and each model it may use (required or optional) prices
    that unit (rule 2a), so the fallback rules are never needed with the bundled catalog."""
    for svc, op in CAT.operations():
        charge = service_charge(svc, op, 1)
        price = svc.pricing.price_for(op.unit)
        assert price is not None and charge.amount == price > 0, (svc.id, op.id)
        for model_id in op.models:
            cost = model_cost(CAT.model(model_id), op.unit, 1)
            assert cost.basis == "unit_price", (svc.id, op.id, model_id)
