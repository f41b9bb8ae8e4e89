"""automatic_decision (hybrid histogram policy) and fixed_decision, on hand-built histories."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest

from models_catalog.thermal_policy import (
    Decision,
    PolicyParams,
    ThermalLimits,
    TrafficStats,
    automatic_decision,
    cold_start_penalty,
    fixed_decision,
    followers_within,
    hazard_table,
    observe_arrival,
    observe_completion,
    rate_calibration,
)
from models_catalog.thermal_predict import hazard_plan

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


def test_timer_is_phase_locked_and_prewarmed_for_the_next_tick():
    s = history([600.0] * 20)  # a 10-minute timer, no jitter: ticks at 0, 600, ... 12000
    last, idle = s.last_arrival, s.idle_since
    assert (last, idle) == (12000.0, 12001.0)
    d = automatic_decision(s, LIM, idle, 1)
    assert d.mode == "periodic"
    # next tick 12600, jitter 0: ready 2 s before (margin), kept 2 s after;
    # pre-warm starts warm-up 60 + lead 30 before the ready time
    assert d.prewarm_at == pytest.approx(12598.0 - 90.0)
    assert d.keep_alive_until == pytest.approx(12602.0)
    assert d.desired_instances == 0  # unload now
    assert d.next_evaluation_at(idle) == pytest.approx(12508.0)
    assert automatic_decision(s, LIM, 12508.0, 0).desired_instances == 1
    assert automatic_decision(s, LIM, 12601.0, 1).desired_instances == 1
    # the tick was missed: on to the next one (13200), unloaded until its pre-warm
    d = automatic_decision(s, LIM, 12602.0, 1)
    assert d.desired_instances == 0 and d.prewarm_at == pytest.approx(13198.0 - 90.0)


def test_timer_jitter_sets_the_window():
    # arrivals at k*600 + jitter; the jitter pattern is symmetric about the middle, so the
    # least-squares line has slope exactly 600 and passes 6 s above the ticks: residuals -6..6,
    # and the window is 12 s + 2 * (2 s + 10 % of 12 s)
    half = [0.0, 12.0, 4.0, 8.0, 0.0, 12.0, 4.0, 8.0]
    jit = half + half[::-1]
    times = [k * 600.0 + j for k, j in enumerate(jit)]
    s = TrafficStats()
    for t in times:
        s = observe_completion(observe_arrival(s, t), t + 1.0)
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "periodic"
    window = d.keep_alive_until - (d.prewarm_at + 90.0)
    assert window == pytest.approx(12.0 + 2 * (2.0 + 1.2), abs=1e-6)
    # the window covers every jitter offset of the next tick (9600 .. 9612)
    assert d.prewarm_at + 90.0 == pytest.approx(9606.0 - 6.0 - 3.2)
    assert d.keep_alive_until == pytest.approx(9606.0 + 6.0 + 3.2)


def test_timer_is_detected_from_six_gaps_and_dropped_when_it_stops():
    s = history([1800.0] * 6)  # 6 gaps < min_samples 8, but a clean timer
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "periodic" and d.desired_instances == 0
    assert d.prewarm_at == pytest.approx(s.last_arrival + 1800.0 - 2.0 - 90.0)
    # 3 ticks missed (3.5 periods later): no timer any more; thin history -> fixed fallback
    late = s.last_arrival + 3.5 * 1800.0 + 1.0
    assert automatic_decision(s, LIM, late, 0).mode == "fixed-fallback"


def test_timer_needs_regular_gaps():
    s = history([600.0] * 10 + [900.0])  # 900 s is 1.5 periods: not a timer
    assert automatic_decision(s, LIM, s.idle_since, 1).mode != "periodic"


HIST_ONLY = PolicyParams(burst_multiplicity=False, rate_predictor=False)


def test_hazard_plan_keeps_for_follow_ups_then_prewarms_for_the_long_gaps():
    # 40 gaps of 30 s (bin 0) and 10 of 3 h (bin 180). Cold start worth 0.9 * 15 min = 810 s.
    # Bin 0: p = 40/50 = 0.8, net = 0.8*810 - 60*(1 - 0.4) = 612 > 0 -> up through bin 0.
    # Bins 1..179: empty blocks, p = 0.5 / (width * 10 survivors) -> not worth it.
    # Bin 180: p = 10/10 = 1, net = 810 - 30 > 0, and 0.2 * 780 pays the 0.2 * 60 s warm-up.
    # So: up to 60 s after the last arrival, down, ready again at 180 min, kept to 181 min.
    s = history([30.0] * 40 + [3 * 3600.0] * 10)
    last = s.last_arrival
    d = automatic_decision(s, LIM, s.idle_since, 1, HIST_ONLY)
    assert d.mode == "histogram" and d.desired_instances == 1
    assert d.prewarm_at is None and d.keep_alive_until == pytest.approx(last + 60.0)
    d = automatic_decision(s, LIM, last + 60.0, 1, HIST_ONLY)
    assert d.desired_instances == 0
    assert d.prewarm_at == pytest.approx(last + 180 * 60.0 - 90.0)
    assert d.keep_alive_until == pytest.approx(last + 181 * 60.0)
    assert automatic_decision(s, LIM, last + 180 * 60.0 - 90.0, 0, HIST_ONLY).desired_instances == 1
    # a cold start worth 50 s: bin 180 nets 50 - 30 = 20, 0.2 * 20 < 0.2 * 60 s of warm-up
    cheap = PolicyParams(burst_multiplicity=False, rate_predictor=False, cold_start_penalty_s=50)
    d = automatic_decision(s, LIM, last + 60.0, 1, cheap)
    assert d.desired_instances == 0 and d.prewarm_at is None


def with_bursts(s: TrafficStats) -> TrafficStats:
    """10 more 3-h gaps, each ending in a burst of 9 requests 10 s apart."""
    t = s.last_arrival
    for _ in range(10):
        t += 3 * 3600.0
        for k in range(9):
            s = observe_completion(observe_arrival(s, t + 10.0 * k), t + 10.0 * k + 1.0)
        t += 80.0
    return s


def test_burst_multiplicity_makes_long_waits_worth_it():
    # same histogram, cold start worth 50 s: lone requests are not worth a pre-warm ...
    cheap = PolicyParams(rate_predictor=False, cold_start_penalty_s=50)
    s = history([30.0] * 40 + [3 * 3600.0] * 10)
    lone = automatic_decision(s, LIM, s.last_arrival + 60.0, 1, cheap)
    # ... but after 10 more 3-h gaps, each ending in 9 requests 10 s apart, a cold start lets
    # about 3 requests in during the warm-up (60 s) and the long gap is worth waiting for
    b = with_bursts(s)
    assert followers_within(b, 60.0) > 2.5
    burst = automatic_decision(b, LIM, b.last_arrival + 60.0, 1, cheap)
    assert lone.prewarm_at is None and burst.prewarm_at is not None


def test_flat_histogram_goes_down_when_no_bin_pays():
    s = history([i * 60.0 + 30.0 for i in range(240)])  # one gap in every bin, increasing
    d = automatic_decision(s, LIM, s.idle_since, 1, HIST_ONLY)
    assert d.mode == "histogram"  # drifting gaps are not a timer
    # blocks of 8 bins: hazard 8 / (8 bins x ~240 survivors), about 1/240 per bin at first,
    # worth 810/240 = 3.4 s against 60 s: down now; it rises as the survivors run out.
    assert d.desired_instances == 0


def test_out_of_bound_regular_gaps_are_a_timer():
    s = history([5 * 3600.0] * 10)  # every gap beyond the 4 h range, perfectly regular
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "periodic"
    last = s.last_arrival
    assert d.prewarm_at == pytest.approx(last + 18000 - 2 - 60 - 30)
    assert d.keep_alive_until == pytest.approx(last + 18002)
    assert d.desired_instances == 0
    assert automatic_decision(s, LIM, last + 17950.0, 0).desired_instances == 1


def test_out_of_bound_irregular_gaps_drop_at_once():
    hours = [5, 9, 4.5, 20, 6, 12, 5.5, 30, 7, 16]
    s = history([h * 3600.0 for h in hours])
    # past the range the hazard is 1 / (mean excess 7.5 h): 60 s x 1/27000 s x 810 s << 60 s
    assert s.oob_excess_s == pytest.approx(sum(h - 4 for h in hours) * 3600.0)
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.prewarm_at is None
    assert d.desired_instances == 0


def test_long_run_conditions_the_histogram():
    # gaps: 90 % at 2 min, 10 % at 20 min. After a 10-minute request the 2-minute gaps are
    # impossible, so the plan starts at the elapsed bin: a pre-warm, not "stay up".
    s = history([120.0] * 90 + [1200.0] * 10)
    assert automatic_decision(s, LIM, s.idle_since, 1, HIST_ONLY).prewarm_at is None
    s_long = observe_completion(observe_arrival(s, s.idle_since + 120.0), s.idle_since + 720.0)
    d = automatic_decision(s_long, LIM, s_long.idle_since, 1, HIST_ONLY)
    # bins 10..19 form an empty block (not worth it), bin 20 holds the 10 long gaps
    assert d.desired_instances == 0
    assert d.prewarm_at == pytest.approx(s_long.last_arrival + 1200.0 - 90.0)
    assert d.keep_alive_until == pytest.approx(s_long.last_arrival + 1260.0)


def test_poisson_traffic_uses_the_rate_predictor():
    rng = random.Random(1)
    s = history([rng.expovariate(1 / 300.0) for _ in range(60)])
    assert s.score_rate > s.score_hist
    d = automatic_decision(s, LIM, s.idle_since, 1)
    assert d.mode == "rate" and d.desired_instances == 1
    r = rate_calibration(s) * s.rate_ewma
    m = 1.0 + followers_within(s, 60.0)
    pf = PolicyParams().penalty_factor
    expected = s.last_arrival + 3600.0 * math.log(r * m * pf * 900.0)
    assert d.keep_alive_until == pytest.approx(expected)
    # much later the decayed rate is not worth an instance
    assert automatic_decision(s, LIM, expected + 1.0, 1).desired_instances == 0


def test_hazard_table_by_hand():
    bins = (40, 0, 0, 0, 0, 10) + (0,) * 10
    probs, surv = hazard_table(bins, 0)
    # survivors: 50, 10, 10, 10, 10, 10, 0...; bins 1-4 are one empty block (4 x 10 survivor
    # bins, half a gap), bins 0 and 5 are dense enough to stand alone
    assert probs[:6] == pytest.approx([0.8, 0.5 / 40, 0.5 / 40, 0.5 / 40, 0.5 / 40, 1.0])
    assert probs[6:] == [0.0] * 10
    assert surv[:7] == pytest.approx([1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.0])
    # OOB: constant hazard 1 - exp(-60 / mean excess) past the range
    probs, surv = hazard_table((0,) * 4, 2, 3600.0)
    q = 1 - math.exp(-60 / 3600)
    assert (
        len(probs) == 4 + 1200 and probs[4] == pytest.approx(q) and surv[5] == pytest.approx(1 - q)
    )


def test_hazard_plan_by_hand():
    probs = [0.8, 0.0, 0.0, 0.0, 0.0, 1.0]
    surv = [1.0, 0.2, 0.2, 0.2, 0.2, 0.2]
    # net: bin 0 = 0.8*600 - 60*0.6 = 444; bins 1-4 = -60; bin 5 = 600 - 30 = 570
    assert hazard_plan(probs, surv, 0, 60.0, 600.0, 60.0, 0.0, True) == (None, 60.0)
    assert hazard_plan(probs, surv, 1, 60.0, 600.0, 60.0, 0.0, True) == (300.0, 360.0)
    # a down stretch of 4 bins (240 s) shorter than min_down 300 s is bridged
    assert hazard_plan(probs, surv, 0, 60.0, 600.0, 60.0, 300.0, True) == (None, 360.0)
    # bin 5 does not pay a warm-up of 3000 s (0.2*570 < 0.2*3000): down for the whole range
    assert hazard_plan(probs, surv, 1, 60.0, 600.0, 3000.0, 0.0, True) == (360.0, 360.0)


def test_followers_count_requests_after_an_episode_head():
    s = TrafficStats()
    for t in (0.0, 10.0, 40.0, 100.0):  # the first arrival is a head
        s = observe_completion(observe_arrival(s, t), t + 1.0)
    assert s.heads == 1
    assert s.followers[:5] == (1, 2, 2, 3, 3)  # within 30, 60, 90, 120, 180 s
    assert followers_within(s, 45.0) == pytest.approx(1.5)
    assert followers_within(s, 150.0) == pytest.approx(3.0)
    assert followers_within(TrafficStats(), 90.0) == 0.0


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
    rng = random.Random(3)
    p = history([rng.expovariate(1 / 600.0) for _ in range(60)])
    cheap = automatic_decision(p, LIM, p.idle_since, 1, PolicyParams(penalty_factor=0.5))
    keen = automatic_decision(p, LIM, p.idle_since, 1, PolicyParams(penalty_factor=8))
    assert cheap.keep_alive_until < keen.keep_alive_until


def test_cold_start_penalty_is_priced_by_the_hourly_rate():
    base = PolicyParams().penalty_factor * 15 * 60.0
    assert cold_start_penalty(LIM) == pytest.approx(base)  # unpriced: instance-seconds as before
    ref = PolicyParams().reference_hourly_rate
    at_ref = LIM.model_copy(update={"hourly_rate": Decimal(str(ref))})
    assert cold_start_penalty(at_ref) == pytest.approx(base)
    dear = LIM.model_copy(update={"hourly_rate": Decimal("35.63")})
    cheap = LIM.model_copy(update={"hourly_rate": Decimal("1.30")})
    assert cold_start_penalty(dear) == pytest.approx(base * ref / 35.63)  # dollars for dollars
    assert cold_start_penalty(cheap) == pytest.approx(base * ref / 1.30)
    half = PolicyParams(rate_elasticity=0.5)
    assert cold_start_penalty(dear, half) == pytest.approx(base * math.sqrt(ref / 35.63))
    assert cold_start_penalty(dear, PolicyParams(rate_elasticity=0)) == pytest.approx(base)
    override = PolicyParams(cold_start_penalty_s=100.0)
    assert cold_start_penalty(dear, override) == pytest.approx(100.0 * ref / 35.63)
    assert cold_start_penalty(LIM.model_copy(update={"hourly_rate": Decimal(0)})) == base


def test_expensive_models_go_cold_sooner():
    rng = random.Random(1)
    poisson = history([rng.expovariate(1 / 300.0) for _ in range(60)])
    follow_ups = history([120.0] * 20 + [1500.0] * 3)
    dear = LIM.model_copy(update={"hourly_rate": Decimal("35.63")})
    cheap = LIM.model_copy(update={"hourly_rate": Decimal("1.30")})
    for s in (poisson, follow_ups):
        d_plain = automatic_decision(s, LIM, s.idle_since, 1)
        d_dear = automatic_decision(s, dear, s.idle_since, 1)
        d_cheap = automatic_decision(s, cheap, s.idle_since, 1)
        assert d_dear.mode == d_plain.mode and d_dear.mode in ("rate", "histogram")
        assert d_dear.keep_alive_until < d_plain.keep_alive_until < d_cheap.keep_alive_until
    # the Poisson keep-alive ends where rate x multiplicity x penalty = 1, in dollars
    d = automatic_decision(poisson, dear, poisson.idle_since, 1)
    r = rate_calibration(poisson) * poisson.rate_ewma
    m = 1.0 + followers_within(poisson, 60.0)
    p = PolicyParams()
    value = m * p.penalty_factor * 900.0 * p.reference_hourly_rate / 35.63
    end = poisson.last_arrival + max(0.0, 3600.0 * math.log(r * value))
    assert d.keep_alive_until == pytest.approx(max(poisson.idle_since, end))


def test_limits_carry_the_catalog_hourly_rate():
    from models_catalog.catalog import load_catalog
    from models_catalog.simulator import specs_from_catalog
    from models_catalog.thermal_policy import limits_from_model

    catalog = load_catalog()
    model = catalog.model("llama-3-70b-instruct")
    assert limits_from_model(model).hourly_rate == model.pricing.hourly_rate
    spec = specs_from_catalog(catalog, warmup_override=5)["llama-3-70b-instruct"]
    assert spec.hourly_rate == spec.limits.hourly_rate == model.pricing.hourly_rate


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


def test_multiplicity_counts_the_warm_up_only_unless_with_lead():
    # bursts of 9 requests 10 s apart after 3-h gaps: within the 60-s warm-up about 3 follow a
    # head, within warm-up + 30-s lead about 5 (the first priced version; versioned runs keep it)
    s = with_bursts(history([30.0] * 40 + [3 * 3600.0] * 10))
    assert followers_within(s, 90.0) > followers_within(s, 60.0)
    now = s.last_arrival + 60.0
    new = automatic_decision(s, LIM, now, 1, PolicyParams(rate_predictor=False))
    old = automatic_decision(
        s, LIM, now, 1, PolicyParams(rate_predictor=False, multiplicity_with_lead=True)
    )
    m_new = 1.0 + followers_within(s, 60.0)
    m_old = 1.0 + followers_within(s, 90.0)
    assert f"{m_new:.1f} cold starts" in new.reason
    assert f"{m_old:.1f} cold starts" in old.reason
