"""The simulator does what the thermal workflow (workflows/thermal.py) does, where it matters.

- One transition at a time: the workflow's loop runs one converge step (create / scale-out,
  which returns once the endpoint is InService again) and decides again only after it; arrivals
  and completions meanwhile update the statistics and are acted on when it is over.
- A caller's warm-up wait (`warm_up`: ready *and* no converge under way) is what the deadline
  bounds; queueing for a slot of a ready instance is not.
- The horizon is the trace's end, not rounded up to whole days.
"""

from __future__ import annotations

import pytest

from models_catalog.simulator import default_horizon, run_benchmark, simulate_model
from models_catalog.tracegen import TraceRow
from tests.fixtures.simulated_model import DAY, spec

# ------------------------------------------------------------------ 1. no decision mid-warm-up


def test_arrivals_during_a_warm_up_are_decided_on_when_it_is_over():
    # cold model, one slot per instance, up to 3 instances, warm-up 60 s.
    # 100: no instance -> create one (ready 160). 110, 120 arrive during that warm-up: the
    # workflow records them (leases, statistics) but starts nothing until the create is
    # InService. 160: req 0 is served at once; the policy now sees 3 in flight -> 2 more
    # instances, ready 220, where reqs 1 and 2 start (waits 110 and 100).
    # (Deciding mid-warm-up, as the simulator did, started them at 110 and 120: waits 60.)
    reqs = [(100.0, 1000.0), (110.0, 1000.0), (120.0, 1000.0)]
    r = simulate_model(spec(max_i=3), reqs, "fixed", DAY)
    assert r.cold_starts == 3
    assert r.waits == [60.0, 110.0, 100.0]
    assert r.instance_starts == 3
    assert r.warmup_s == pytest.approx(3 * 60.0)


def test_callers_wait_for_a_scale_out_under_way():
    # automatic, 2 slots per instance, up to 2 instances, warm-up 60 s. 0: cold, create,
    # ready 60 (req 0 served 60..130). 100: req 1 takes the second slot. 110: no slot; req 2
    # is admitted (ready, no converge under way), queues, and the policy scales out
    # (instance 1 ready at 170). 120: req 3's caller arrives while the scale-out runs:
    # `warm_up` waits for "ready and not converging", so it starts at 170 (wait 50), although
    # req 2 takes req 0's slot at 130 (wait 20) and leaves one free from 140.
    reqs = [(0.0, 70.0), (100.0, 500.0), (110.0, 10.0), (120.0, 10.0)]
    r = simulate_model(spec(max_i=2, conc=2), reqs, "automatic", DAY)
    assert r.cold_starts == 1  # a ready instance was up at the later arrivals
    assert r.waits == [60.0, 0.0, 20.0, 50.0]
    assert r.instance_starts == 2


def test_autoscaler_scale_out_holds_no_caller():
    # The same under always-warm (WARM/HOT; instance 0 up from time 0): the scale-out at 1110
    # (ready 1170) is SageMaker's autoscaler, the workflow runs no step, so req 3 (1120) is
    # admitted at once: req 2 takes req 0's slot at 1130 (wait 20), req 3 the one it frees at
    # 1140 (wait 20).
    reqs = [(1000.0, 130.0), (1100.0, 500.0), (1110.0, 10.0), (1120.0, 10.0)]
    r = simulate_model(spec(max_i=2, conc=2), reqs, "always-warm", DAY)
    assert r.cold_starts == 0
    assert r.waits == [0.0, 0.0, 20.0, 20.0]
    assert r.instance_starts == 1


# ------------------------------------------------------------------ 2. what the deadline bounds


def test_queueing_on_a_ready_instance_is_not_bounded_by_the_warm_up_deadline():
    # no warm-up, one slot: 0..80, 80..160, 160..240. The third waits 160 s > deadline 100,
    # but behind busy requests of a ready instance, not for a warm-up: it is served.
    reqs = [(0.0, 80.0), (0.0, 80.0), (0.0, 80.0)]
    r = simulate_model(spec(warm=0), reqs, "fixed", DAY, deadline_s=100.0)
    assert r.failed == 0
    assert r.waits == [0.0, 80.0, 160.0]


def test_a_warm_up_longer_than_the_deadline_fails_its_callers():
    # warm-up 120 s, deadline 100 s: the caller gives up at 100 (failed, its wait counted as
    # 100); the instance still comes up at 120 and serves the request arriving at 110.
    r = simulate_model(spec(warm=120), [(0.0, 10.0), (110.0, 10.0)], "fixed", DAY, deadline_s=100.0)
    assert (r.failed, r.cold_starts) == (1, 2)
    assert r.waits == [100.0, 10.0]


# ------------------------------------------------------------------ 3. the horizon


def test_horizon_is_the_end_of_the_trace_not_whole_days():
    # the last request ends at 1.1 days: always-warm is billed 1.1 days, not 2
    rows = [TraceRow("m", 0.0, 10.0), TraceRow("m", 1.1 * DAY - 10.0, 10.0)]
    res = run_benchmark(rows, {"m": spec()}, policies=("always-warm",))
    assert res.horizon_s == pytest.approx(1.1 * DAY)
    assert res.policies["always-warm"].billed_hours == pytest.approx(1.1 * 24.0)
    # the end is that of the request that ends last, not of the last arrival
    assert default_horizon([TraceRow("m", 0.0, 5000.0), TraceRow("m", 100.0, 1.0)]) == 5000.0
    assert default_horizon([]) == 0.0
