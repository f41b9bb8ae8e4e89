"""automatic_decision (hybrid histogram policy) and fixed_decision, on hand-built histories."""

from __future__ import annotations

import pytest

from models_catalog.thermal_policy import (
    Decision,
    PolicyParams,
    ThermalLimits,
    TrafficStats,
    automatic_decision,
    fixed_decision,
    observe_arrival,
    observe_completion,
)

LIM = ThermalLimits(scale_to_zero_after_minutes=15, warmup_time_seconds=60, max_instances=3)


def history(gaps: list[float], dur: float = 1.0, start: float = 0.0) -> TrafficStats:
    """Stats after one request at ``start`` and one after each gap (each served for ``dur``)."""
    s = TrafficStats()
    t = start
    for gap in [0.0, *gaps]:
        t += gap
        s = observe_completion(observe_arrival(s, t), t + dur)
    return s


def test_no_traffic_keeps_the_floor():
    assert automatic_decision(TrafficStats(), LIM, 0.0, 0).desired_instances == 0
    lim1 = LIM.model_copy(update={"min_instances": 1})
    assert automatic_decision(TrafficStats(), lim1, 0.0, 0).desired_instances == 1


def test_thin_history_falls_back_to_fixed_keep_alive():
    s = history([600.0, 600.0, 600.0])  # 3 gaps < min_samples
    idle = s.idle_since
    d = automatic_decision(s, LIM, idle, 1)
    assert d.mode == "fixed-fallback" and "thin history" in d.reason
    assert d.prewarm_at is None
    assert d.keep_alive_until == pytest.approx(idle + 15 * 60)
    assert d.desired_instances == 1
    assert automatic_decision(s, LIM, idle + 15 * 60 - 1, 1).desired_instances == 1
    assert automatic_decision(s, LIM, idle + 15 * 60, 1).desired_instances == 0


def test_representative_histogram_prewarms_at_head_and_keeps_to_tail():
    s = history([600.0] * 20)  # a 10-minute timer: every gap in bin 10
    last, idle = s.last_arrival, s.idle_since
    d = automatic_decision(s, LIM, idle, 1)
    assert d.mode == "histogram"
    # ready at head lower edge 600 s - 10 % = 540 s; start = 540 - warm-up 60 - lead 30 = 450 s
    assert d.prewarm_at == pytest.approx(last + 450.0)
    # keep-alive to tail upper edge 660 s + 10 % = 726 s
    assert d.keep_alive_until == pytest.approx(last + 726.0)
    assert d.desired_instances == 0  # unload now
    assert d.next_evaluation_at(idle) == pytest.approx(last + 450.0)
    assert automatic_decision(s, LIM, last + 450.0, 0).desired_instances == 1
    assert automatic_decision(s, LIM, last + 700.0, 1).desired_instances == 1
    assert automatic_decision(s, LIM, last + 726.0, 1).desired_instances == 0


def test_windows_use_percentiles_not_extremes():
    # 95 % of gaps at 10 min, 4 % at 12 min, 1 % at 30 min (the 99th percentile is 12 min)
    gaps = [600.0] * 95 + [720.0] * 4 + [1800.0]
    s = history(gaps)
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "histogram"
    assert d.prewarm_at == pytest.approx(s.last_arrival + 450.0)
    assert d.keep_alive_until == pytest.approx(s.last_arrival + 13 * 60 * 1.1)


def test_head_zero_means_stay_up():
    s = history([30.0] * 20 + [200.0] * 5)  # short gaps: head in bin 0
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "histogram" and d.prewarm_at is None
    assert d.desired_instances == 1
    assert d.keep_alive_until == pytest.approx(s.last_arrival + 4 * 60 * 1.1)


def test_too_short_unload_stays_up():
    s = history([300.0] * 20)  # 5-minute timer: ready at 240*0.9=216 s, start 126 s
    slow = LIM.model_copy(update={"warmup_time_seconds": 120})  # start 66 s: < min_unload
    assert automatic_decision(s, LIM, s.idle_since, 1).prewarm_at is not None
    d = automatic_decision(s, slow, s.idle_since, 1)
    assert d.prewarm_at is None and d.desired_instances == 1


def test_flat_histogram_is_not_representative():
    s = history([i * 60.0 + 30.0 for i in range(240)])  # one gap in every bin: CV 0
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "fixed-fallback" and "not representative" in d.reason
    assert d.keep_alive_until == pytest.approx(s.idle_since + 900.0)


def test_out_of_bound_regular_gaps_use_the_prediction():
    s = history([5 * 3600.0] * 10)  # every gap beyond the 4 h range, perfectly regular
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "predictive"
    last = s.last_arrival
    assert d.prewarm_at == pytest.approx(last + 18000 * 0.85 - 60 - 30)
    assert d.keep_alive_until == pytest.approx(last + 18000 * 1.15)
    assert d.desired_instances == 0
    assert automatic_decision(s, LIM, last + 16000.0, 0).desired_instances == 1


def test_out_of_bound_irregular_gaps_drop_at_once():
    hours = [5, 9, 4.5, 20, 6, 12, 5.5, 30, 7, 16]
    s = history([h * 3600.0 for h in hours])
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "predictive-unreliable"
    assert d.prewarm_at is None
    assert d.desired_instances == 0


def test_long_run_conditions_the_histogram():
    # gaps: 90 % at 2 min, 10 % at 20 min. After a 10-minute request the 2-minute gaps are
    # impossible, so the plan is built on the 20-minute gaps only: a pre-warm, not "stay up".
    s = history([120.0] * 18 + [1200.0] * 2)
    assert automatic_decision(s, LIM, s.idle_since, 1).prewarm_at is None
    s_long = observe_completion(observe_arrival(s, s.idle_since + 120.0), s.idle_since + 720.0)
    d = automatic_decision(s_long, LIM, s_long.idle_since, 1)
    assert d.prewarm_at == pytest.approx(s_long.last_arrival + 1200 * 0.9 - 90)


def test_concurrency_scale_out_is_capped_at_max():
    s = TrafficStats()
    for i in range(10):
        s = observe_arrival(s, float(i))
    assert automatic_decision(s, LIM, 10.0, 1).desired_instances == 3  # ceil(10/4)=3 = max
    lim2 = LIM.model_copy(update={"max_instances": 2})
    assert automatic_decision(s, lim2, 10.0, 1).desired_instances == 2
    assert automatic_decision(s, LIM, 10.0, 0, in_flight=5).desired_instances == 2


def test_never_below_instances_serving_in_flight_work():
    s = TrafficStats()
    for _ in range(3):
        s = observe_arrival(s, 0.0)
    # 3 in flight fit on one instance (4/instance) but may be spread over 3 running instances
    assert automatic_decision(s, LIM, 1000.0, 3).desired_instances == 3


def test_surplus_held_after_a_burst_then_released():
    s = TrafficStats()
    for i in range(9):
        s = observe_arrival(s, float(i))
    for i in range(8):
        s = observe_completion(s, 20.0 + i)
    d = automatic_decision(s, LIM, 30.0, 3)  # 1 in flight, 3 up, last arrival at 8 s
    assert d.desired_instances == 3 and d.reevaluate_at == pytest.approx(308.0)
    d = automatic_decision(s, LIM, 308.0, 3)
    assert d.desired_instances == 1


def test_idle_floor_is_min_instances():
    lim1 = LIM.model_copy(update={"min_instances": 1})
    s = history([5 * 3600.0] * 10)
    assert automatic_decision(s, lim1, s.idle_since, 1).desired_instances == 1


def test_same_inputs_same_decision():
    s = history([600.0] * 20)
    a = automatic_decision(s, LIM, s.idle_since + 5, 1)
    b = automatic_decision(TrafficStats.from_dict(s.to_dict()), LIM, s.idle_since + 5, 1)
    assert a == b and isinstance(a, Decision)
    assert Decision.model_validate(a.model_dump(mode="json")) == a


def test_params_change_the_trade_off():
    s = history([120.0] * 20 + [1500.0] * 3)
    cheap = automatic_decision(s, LIM, s.idle_since, 1, PolicyParams(penalty_factor=0.5))
    keen = automatic_decision(s, LIM, s.idle_since, 1, PolicyParams(penalty_factor=8))
    assert cheap.keep_alive_until < keen.keep_alive_until


# ------------------------------------------------------------------------------- fixed


def test_fixed_keep_alive_rounds_up_to_the_five_minute_check():
    s = history([], dur=70.0, start=100.0)  # one request 100..170
    d = fixed_decision(s, LIM, 170.0, 1)
    # 170 + 15 min = 1070 -> next check at 1200
    assert d.keep_alive_until == 1200.0 and d.desired_instances == 1
    assert fixed_decision(s, LIM, 1199.0, 1).desired_instances == 1
    assert fixed_decision(s, LIM, 1200.0, 1).desired_instances == 0


def test_fixed_scales_out_at_once_and_in_only_at_checks():
    s = TrafficStats()
    for i in range(9):
        s = observe_arrival(s, 10.0 + i)
    assert fixed_decision(s, LIM, 20.0, 0).desired_instances == 3
    for i in range(8):
        s = observe_completion(s, 40.0 + i)
    d = fixed_decision(s, LIM, 50.0, 3)
    assert d.desired_instances == 3 and d.reevaluate_at == 300.0
    assert fixed_decision(s, LIM, 300.0, 3).desired_instances == 1
