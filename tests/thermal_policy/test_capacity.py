"""capacity_for_state: DESIGN section 3, every state and its edge cases."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models_catalog.thermal_policy import (
    Capacity,
    ThermalLimits,
    autoscaling_bounds,
    capacity_for_state,
)
from models_catalog.types import ThermalState


def lim(min_i: int = 0, max_i: int = 3) -> ThermalLimits:
    return ThermalLimits(min_instances=min_i, max_instances=max_i)


def cap(state, limits, **kw) -> tuple[int, int, int]:
    c = capacity_for_state(state, limits, **kw)
    assert isinstance(c, Capacity)
    return c.min_instances, c.desired, c.max_instances


def test_off_is_nothing():
    assert cap(ThermalState.OFF, lim(2, 5)) == (0, 0, 0)


def test_cold_zero_idle_one_while_serving():
    assert cap(ThermalState.COLD, lim(0, 3)) == (0, 0, 3)
    assert cap(ThermalState.COLD, lim(0, 3), serving=True) == (0, 1, 3)


@pytest.mark.parametrize(("min_i", "max_i", "want"), [(0, 3, 1), (2, 3, 2), (3, 3, 3), (0, 1, 1)])
def test_warm_at_least_one(min_i, max_i, want):
    assert cap(ThermalState.WARM, lim(min_i, max_i)) == (want, want, max_i)


@pytest.mark.parametrize(
    ("min_i", "max_i", "want"),
    [(0, 3, 2), (1, 3, 2), (2, 5, 3), (2, 3, 3), (3, 3, 3), (0, 1, 1), (1, 1, 1), (0, 2, 2)],
)
def test_hot_headroom_capped_at_max(min_i, max_i, want):
    assert cap(ThermalState.HOT, lim(min_i, max_i)) == (want, want, max_i)


def test_automatic_bounds_are_min_and_max():
    assert cap(ThermalState.AUTOMATIC, lim(0, 3)) == (0, 0, 3)
    assert cap(ThermalState.AUTOMATIC, lim(1, 2)) == (1, 1, 2)


def test_plain_strings_accepted_and_unknown_rejected():
    assert cap("warm", lim()) == cap(ThermalState.WARM, lim())
    with pytest.raises(ValueError, match="unknown thermal state"):
        capacity_for_state("LUKEWARM", lim())


def test_limits_validate_bounds():
    with pytest.raises(ValidationError):
        ThermalLimits(min_instances=3, max_instances=2)
    with pytest.raises(ValidationError):
        ThermalLimits(max_instances=0)


def test_limits_from_catalog_model():
    from models_catalog.catalog import load_catalog
    from models_catalog.thermal_policy import limits_from_model

    model = load_catalog().deployable_models()[0]
    limits = limits_from_model(model)
    assert limits.warmup_time_seconds == model.thermal.warmup_time_seconds
    assert limits.scale_to_zero_after_minutes == model.thermal.scale_to_zero_after_minutes
    assert (limits.min_instances, limits.max_instances) == (
        model.thermal.min_instances,
        model.thermal.max_instances,
    )
    assert limits.default_state == model.thermal.default_state.value


async def test_workflow_limits_match_the_catalog_adapter():
    """The workflow's AUTOMATIC limits price cold starts like the benchmark (same catalog rate)."""
    from activities.thermal_activities import RecordKey, ThermalActivities
    from models_catalog.catalog import load_catalog
    from models_catalog.thermal_policy import limits_from_model
    from workflows.thermal import ModelThermalWorkflow
    from workflows.thermal_types import ModelThermalInput

    catalog = load_catalog()
    model = catalog.model("qwen-72b-instruct")
    wf = ModelThermalWorkflow(ModelThermalInput(app_id="a", environment="e", model_id=model.id))
    # The spec the workflow really gets: the describe_model activity (no backend or DB needed).
    wf.spec = await ThermalActivities(catalog, backend=None, engine=None).describe_model(  # type: ignore[arg-type]
        RecordKey(app_id="a", environment="e", model_id=model.id)
    )
    limits = wf._limits()
    assert limits.hourly_rate == model.pricing.hourly_rate
    expected = limits_from_model(model)
    assert limits.model_dump(exclude={"default_state"}) == expected.model_dump(
        exclude={"default_state"}
    )


def test_autoscaling_bounds_keep_the_floor_and_the_desired_count():
    one_to_three = lim(1, 3)
    assert autoscaling_bounds("WARM", one_to_three, 1) == (1, 3)
    assert autoscaling_bounds("HOT", one_to_three, 2) == (2, 3)
    assert autoscaling_bounds("COLD", one_to_three, 1) == (1, 3)  # serving: one up to max
    assert autoscaling_bounds("AUTOMATIC", one_to_three, 0) == (0, 3)
    assert autoscaling_bounds("AUTOMATIC", one_to_three, 5) == (1, 5)  # never excludes it
