"""Simulator on tiny traces whose answers are worked out by hand in the comments."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models_catalog.simulator import percentile, run_benchmark, simulate_model
from models_catalog.tracegen import TraceRow
from tests.fixtures.simulated_model import DAY, spec


def test_one_request_on_a_cold_model():
    # arrival 100, warm-up 60 -> ready 160, served 160..170; wait 60, one cold start.
    r = simulate_model(spec(), [(100.0, 10.0)], "fixed", DAY)
    assert (r.requests, r.cold_starts, r.failed) == (1, 1, 0)
    assert r.waits == [60.0]
    # last activity 170 + 15 min = 1070 -> next 5-minute check 1200 deletes the endpoint,
    # Deleting for the default 120 s: billed 100..1320 (test_simulator_teardown.py)
    assert r.billed_s == pytest.approx(1220.0)
    assert r.teardown_s == pytest.approx(120.0)
    assert r.busy_s == pytest.approx(10.0)
    assert r.warmup_s == pytest.approx(60.0)
    assert r.idle_s == pytest.approx(1210.0)
    assert r.cost == Decimal("1.22")  # 1220 s x $3.60/h
    # automatic with no history: fixed keep-alive to the minute from the idle start (170 + 900)
    # then the 120 s delete
    a = simulate_model(spec(), [(100.0, 10.0)], "automatic", DAY)
    assert (a.cold_starts, a.waits) == (1, [60.0])
    assert a.billed_s == pytest.approx(970.0 + 120.0)
    # always-warm: up (ready) the whole day, no cold start, no wait
    w = simulate_model(spec(), [(100.0, 10.0)], "always-warm", DAY)
    assert (w.cold_starts, w.waits, w.billed_s) == (0, [0.0], DAY)


def test_two_requests_within_keep_alive_one_cold_start():
    r = simulate_model(spec(), [(100.0, 10.0), (500.0, 10.0)], "fixed", DAY)
    assert r.cold_starts == 1
    assert r.waits == [60.0, 0.0]
    # last activity 510 + 900 = 1410 -> check at 1500, Deleting until 1620; billed 100..1620
    assert r.billed_s == pytest.approx(1520.0)


def test_gap_beyond_keep_alive_is_a_second_cold_start():
    # first: 0..70 (ready 60), deleted at the 1200 check (gone at 1320); second at 2000 finds
    # nothing
    r = simulate_model(spec(), [(0.0, 10.0), (2000.0, 10.0)], "fixed", DAY)
    assert r.cold_starts == 2
    assert r.waits == [60.0, 60.0]
    assert r.instance_starts == 2
    # billed 0..1320 and 2000..(2070+900=2970 -> 3000, Deleting until 3120)
    assert r.billed_s == pytest.approx(1320.0 + 1120.0)


def test_requests_during_warm_up_are_cold_and_queue():
    # concurrency 1, one instance: both arrive at 100, ready at 160; second starts at 170
    r = simulate_model(spec(), [(100.0, 10.0), (100.0, 10.0)], "fixed", DAY)
    assert r.cold_starts == 2
    assert sorted(r.waits) == [60.0, 70.0]


def test_concurrency_per_instance_serves_in_parallel():
    r = simulate_model(spec(conc=2), [(100.0, 10.0), (100.0, 10.0)], "fixed", DAY)
    assert r.waits == [60.0, 60.0]


def test_request_waiting_past_the_deadline_fails():
    # warm-up 120 s > deadline 100 s: all three callers give up at 100 (waits counted as 100).
    # Queueing on a ready instance is not bounded (test_simulator_fidelity.py).
    reqs = [(0.0, 80.0), (0.0, 80.0), (0.0, 80.0)]
    r = simulate_model(spec(warm=120), reqs, "fixed", DAY, deadline_s=100.0)
    assert r.failed == 3
    assert r.waits == [100.0, 100.0, 100.0]


def test_automatic_learns_a_timer_and_prewarms():
    # a request every 30 min for 2 days (96 requests). Fixed: 30 min > 15 min keep-alive (+ check
    # rounding), so every request is cold. Automatic: the first 7 are cold (a timer is trusted
    # from 6 gaps on); then the instance is unloaded after each request and started
    # 60 + 30 + 2 = 92 s before the next tick (warm-up, lead, margin): ready 2 s early.
    # (Instant scale to zero; the 120 s delete adds 120 s per unload: test_simulator_teardown.)
    reqs = [(i * 1800.0, 1.0) for i in range(96)]
    instant = {"scale_in_s": 0.0, "delete_s": 0.0}
    f = simulate_model(spec(), reqs, "fixed", 2 * DAY, **instant)
    a = simulate_model(spec(), reqs, "automatic", 2 * DAY, **instant)
    assert f.cold_starts == 96
    assert a.cold_starts == 7
    assert a.waits[7:] == [0.0] * 89
    # billing by hand:
    #   requests 0-5: fixed fallback, warm-up 60 + busy 1 + keep-alive 900     = 6 x 961 s
    #   request 6: its arrival adds the 6th gap, so at its completion the timer is known:
    #              unload at once                                              = 61 s
    #   requests 7-95: pre-warm 92 s before the tick, served tick..tick+1      = 89 x 93 s
    #   after request 95 the next pre-warm starts at 172708, 92 s before the 2-day horizon
    assert a.billed_s == pytest.approx(6 * 961.0 + 61.0 + 89 * 93.0 + 92.0)
    assert a.billed_s < f.billed_s / 8


def test_always_warm_scales_out_for_concurrency():
    # conc 1, max 3, three requests at 1000 on the base instance: the first is served, the
    # second queues and starts a second instance (ready 1060); the third arrives during that
    # scale-out, so nothing more is decided until it ends. At 1060 the policy sees 3 in flight
    # and starts a third instance (ready 1120), but the base instance frees at 1100 first:
    # waits 0, 60, 100.
    reqs = [(1000.0, 100.0)] * 3
    r = simulate_model(spec(max_i=3), reqs, "always-warm", DAY)
    assert r.cold_starts == 0
    assert r.waits == [0.0, 60.0, 100.0]
    assert r.instance_starts == 2


def test_run_benchmark_aggregates_and_ratios():
    specs = {"m": spec()}
    rows = [TraceRow("m", i * 1800.0, 1.0) for i in range(96)]
    res = run_benchmark(rows, specs)
    assert set(res.policies) == {"always-warm", "fixed", "automatic"}
    assert res.horizon_s == 95 * 1800.0 + 1.0  # the last request's end
    ratios = res.ratios()
    assert ratios["cold_starts"] == pytest.approx(7 / 96, abs=1e-4)
    assert ratios["idle_instance_hours"] < 0.5
    d = res.to_dict()
    assert d["policies"]["fixed"]["failed"] == 0
    assert d["policies"]["automatic"]["cold_starts"] == 7
    assert isinstance(d["policies"]["fixed"]["billed_gpu_cost"], str)
    with pytest.raises(KeyError):
        run_benchmark([TraceRow("nope", 0.0, 1.0)], specs)


def test_replay_is_deterministic():
    rows = [TraceRow("m", t, 2.0) for t in (5.0, 400.0, 410.0, 4000.0, 9000.0, 9001.0)]
    a = run_benchmark(rows, {"m": spec(conc=1, max_i=2)}).to_dict(per_model=True)
    b = run_benchmark(list(reversed(rows)), {"m": spec(conc=1, max_i=2)}).to_dict(per_model=True)
    assert a == b


def test_percentile_nearest_rank():
    assert percentile([], 99) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
