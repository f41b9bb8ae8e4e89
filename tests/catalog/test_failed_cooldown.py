"""Review finding: one failed warm-up made its model unavailable (and its service OFFLINE)
until an admin acted, since every later job was refused before it could give the thermal
workflow the new intent that retries. A failure now counts only for FAILED_COOLDOWN after it
was recorded; then the model is available on demand again (the next job's warm-up retries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.service_state import (
    FAILED_COOLDOWN,
    ModelThermalRow,
    failure_problem,
    model_availability,
    service_status,
)
from models_catalog.types import ServiceState, ThermalState

CATALOG = load_catalog()
PERCEPTION = CATALOG.service("perception")
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def failed(target: ThermalState = ThermalState.COLD, **over: object) -> ModelThermalRow:
    base: dict[str, object] = {
        "target_state": target,
        "instance_count": 0,
        "last_error": "EndpointFailed: container did not pass its health check",
        "current_state": ThermalState.COLD,
        "updated_at": T0,
    }
    return ModelThermalRow(**{**base, **over})  # type: ignore[arg-type]


def test_the_default_cool_down_is_five_minutes() -> None:
    assert FAILED_COOLDOWN == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("after", "available"),
    [
        (timedelta(0), False),  # just recorded
        (timedelta(minutes=4, seconds=59), False),
        (FAILED_COOLDOWN - timedelta(microseconds=1), False),
        (FAILED_COOLDOWN, True),  # the boundary: available again
        (FAILED_COOLDOWN + timedelta(seconds=1), True),
        (timedelta(days=3), True),
    ],
)
@pytest.mark.parametrize("target", [ThermalState.COLD, ThermalState.AUTOMATIC, ThermalState.WARM])
def test_a_failure_counts_only_within_the_cool_down(
    after: timedelta, available: bool, target: ThermalState
) -> None:
    thermal = {"yolov8m": failed(target)}
    ok, why = model_availability(CATALOG, "yolov8m", thermal, T0 + after)
    assert ok is available
    if not available:
        assert why.startswith("yolov8m failed: EndpointFailed") and "try it again in" in why
    state = service_status(CATALOG, PERCEPTION, thermal, False, T0 + after).state
    assert state == (ServiceState.RUNNING if available else ServiceState.OFFLINE)


def test_now_defaults_to_when_the_row_was_read() -> None:
    recent = failed(read_at=T0 + timedelta(minutes=1))
    old = failed(read_at=T0 + FAILED_COOLDOWN)
    assert not model_availability(CATALOG, "yolov8m", {"yolov8m": recent})[0]
    assert model_availability(CATALOG, "yolov8m", {"yolov8m": old})[0]
    assert service_status(CATALOG, PERCEPTION, {"yolov8m": old}, False).state == (
        ServiceState.RUNNING
    )


def test_a_failure_of_unknown_age_counts_as_recent() -> None:
    assert failure_problem(failed(updated_at=None), T0 + timedelta(days=1)) is not None
    assert failure_problem(failed()) is not None  # no `now`, no read_at


def test_the_cool_down_is_a_parameter() -> None:
    row = failed()
    short = timedelta(seconds=10)
    assert failure_problem(row, T0 + timedelta(seconds=9), short) is not None
    assert failure_problem(row, T0 + timedelta(seconds=10), short) is None
    ok, _ = model_availability(CATALOG, "yolov8m", {"yolov8m": row}, T0, cooldown=timedelta(0))
    assert ok


def test_no_failure_without_an_error_or_with_instances() -> None:
    assert failure_problem(failed(last_error=None), T0) is None
    assert failure_problem(failed(instance_count=1), T0) is None  # it serves


def test_off_stays_unavailable_after_the_cool_down() -> None:
    row = failed(ThermalState.OFF)
    ok, why = model_availability(CATALOG, "yolov8m", {"yolov8m": row}, T0 + timedelta(days=1))
    assert (ok, why) == (False, "yolov8m is OFF")


def test_an_optional_model_degrades_only_within_the_cool_down() -> None:
    thermal = {"sam2": failed()}
    assert service_status(CATALOG, PERCEPTION, thermal, False, T0).state == ServiceState.DEGRADED
    later = T0 + FAILED_COOLDOWN
    assert service_status(CATALOG, PERCEPTION, thermal, False, later).state == (
        ServiceState.RUNNING
    )
