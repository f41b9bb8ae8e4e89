"""Scale-in and scale to zero take time, as in the workflow (workflows/thermal.py).

- A scale to zero is a DeleteEndpoint: the endpoint is Deleting for ``delete_s``, its instance
  is billed until then and serves nothing, and a create can only start once the name is free
  (``ensure_endpoint`` retries while Deleting): a caller arriving meanwhile waits for the rest
  of the delete and a full warm-up (a cold start).
- A scale-in is an UpdateEndpointWeightsAndCapacities: the endpoint is Updating for
  ``scale_in_s``, the removed instances are billed until then, and nothing else changes the
  endpoint meanwhile (a request needing more capacity queues). Under ``automatic`` it is the
  workflow's own capacity step, so a caller arriving during it waits for it (``warm_up`` waits
  for ``converging`` to end); SageMaker's autoscaler (``always-warm``, ``fixed``) holds none.
- 0 for both is the instant model of earlier versions, figure for figure.

Spec of every test: one instance serving one request at a time (unless said), warm-up 60 s,
keep-alive 15 min (fixed: checked every 5 minutes, on the clock), $3.60/h.
"""

from __future__ import annotations

import math

import pytest

from models_catalog.simulator import (
    DEFAULT_DELETE_S,
    DEFAULT_SCALE_IN_S,
    MAX_TEARDOWN_S,
    run_benchmark,
    simulate_model,
)
from models_catalog.tracegen import TraceRow
from tests.fixtures.simulated_model import DAY, spec

INSTANT = {"scale_in_s": 0.0, "delete_s": 0.0}

# ------------------------------------------------------------------ scale to zero (delete)


def test_a_request_during_a_delete_waits_for_it_and_then_a_full_create():
    # fixed, delete 120 s. 0: cold, ready 60, served 60..70; idle from 70 + 900 = 970 -> the
    # 1200 check scales to zero: Deleting 1200..1320, billed until 1320. 1250: no ready
    # instance (cold); the create waits for the name: 1320, ready 1380 -> wait 70 + 60 = 130.
    # Then served 1380..1390, idle to 2290 -> check 2400, Deleting until 2520.
    reqs = [(0.0, 10.0), (1250.0, 10.0)]
    r = simulate_model(spec(), reqs, "fixed", DAY, scale_in_s=0.0, delete_s=120.0)
    assert (r.cold_starts, r.failed, r.instance_starts) == (2, 0, 2)
    assert r.waits == [60.0, 130.0]
    assert r.billed_s == pytest.approx(1320.0 + (2520.0 - 1320.0))
    assert r.teardown_s == pytest.approx(2 * 120.0)
    assert r.warmup_s == pytest.approx(2 * 60.0)
    assert r.idle_s == pytest.approx(2520.0 - 20.0)  # the tail is idle, billed time
    # the instant model: down at 1200, 1250 creates at once (ready 1310, wait 60); the second
    # instance is up 1250..2400 (idle from 1320 + 900 = 2220 -> check 2400)
    i = simulate_model(spec(), reqs, "fixed", DAY, **INSTANT)
    assert i.waits == [60.0, 60.0]
    assert i.billed_s == pytest.approx(1200.0 + 1150.0)
    assert i.teardown_s == 0.0


def test_automatic_scale_to_zero_is_the_same_delete():
    # automatic, no history yet: keep-alive 900 s from the idle start (70): unload at 970,
    # Deleting until 1090. 1000: cold, create at 1090, ready 1150: wait 150. Then idle from
    # 1160 -> unload 2060, Deleting until 2180. Billed 0..1090 and 1090..2180.
    reqs = [(0.0, 10.0), (1000.0, 10.0)]
    r = simulate_model(spec(), reqs, "automatic", DAY, scale_in_s=0.0, delete_s=120.0)
    assert r.cold_starts == 2
    assert r.waits == [60.0, 150.0]
    assert r.billed_s == pytest.approx(2180.0)
    assert r.teardown_s == pytest.approx(240.0)


def test_the_deadline_bounds_the_wait_for_a_delete_and_create():
    # as the first test with a 100 s deadline: 1250's caller would wait 130 s (delete, then
    # warm-up) and gives up at 1350 (failed, wait counted 100). The create it asked for goes
    # on (1320..1380); its idle period runs from the failure (1350 + 900 = 2250 -> check 2400,
    # Deleting until 2520).
    reqs = [(0.0, 10.0), (1250.0, 10.0)]
    r = simulate_model(spec(), reqs, "fixed", DAY, delete_s=120.0, deadline_s=100.0)
    assert (r.cold_starts, r.failed) == (2, 1)
    assert r.waits == [60.0, 100.0]
    assert r.billed_s == pytest.approx(2520.0)


# ------------------------------------------------------------------ scale-in


def test_scale_in_bills_until_it_ends_and_holds_up_a_scale_out():
    # always-warm, up to 2 instances. 1000: two requests of 100 s; the base instance serves
    # one (1000..1100), the autoscaler starts a second for the other (ready 1060, 1060..1160).
    # 1160: idle, the second is scaled in: Updating until 1460, billed 1000..1460.
    # 1200: two more; the base serves one (1200..1300). The other needs a second instance, but
    # the endpoint is Updating: it queues for the base instance, free at 1300 (wait 100).
    reqs = [(1000.0, 100.0)] * 2 + [(1200.0, 100.0)] * 2
    r = simulate_model(spec(max_i=2), reqs, "always-warm", DAY, scale_in_s=300.0, delete_s=0.0)
    assert r.cold_starts == 0
    assert r.waits == [0.0, 60.0, 0.0, 100.0]
    assert r.instance_starts == 1
    assert r.billed_s == pytest.approx(DAY + 460.0)
    assert r.teardown_s == pytest.approx(300.0)
    # instant: the second instance goes at 1160; 1200 starts a new one (ready 1260: wait 60),
    # removed at 1360 when its request ends: billed 160 + 160 beside the base instance
    i = simulate_model(spec(max_i=2), reqs, "always-warm", DAY, **INSTANT)
    assert i.waits == [0.0, 60.0, 0.0, 60.0]
    assert i.instance_starts == 2
    assert i.billed_s == pytest.approx(DAY + 320.0)


def test_an_automatic_scale_in_holds_callers_the_autoscaler_does_not():
    # automatic, up to 2 instances. 1000: two requests, the create (ready 1060) serves one
    # 1060..1160, then a scale-out (ready 1120) the other 1120..1220. 1200: two more, one per
    # instance free by then (1200..1300 on instance 0, 1220..1320 on instance 1: wait 20).
    # 1320: the second instance is idle and scaled in: the workflow's capacity step, Updating
    # until 1620. 1400: a caller arrives with instance 0 ready and idle, but `warm_up` waits
    # for the step to end: served at 1620 (wait 220; not a cold start).
    reqs = [(1000.0, 100.0)] * 2 + [(1200.0, 100.0)] * 2 + [(1400.0, 10.0)]
    a = simulate_model(spec(max_i=2), reqs, "automatic", DAY, scale_in_s=300.0, delete_s=0.0)
    assert a.cold_starts == 2
    assert a.waits == [60.0, 120.0, 0.0, 20.0, 220.0]
    assert a.teardown_s == pytest.approx(300.0)
    assert simulate_model(spec(max_i=2), reqs, "automatic", DAY, **INSTANT).waits[4] == 0.0
    # always-warm: SageMaker's autoscaler scales in (1160..1460 as above); no caller waits
    w = simulate_model(spec(max_i=2), reqs, "always-warm", DAY, scale_in_s=300.0, delete_s=0.0)
    assert w.waits[4] == 0.0


# ------------------------------------------------------------------ 0 = the previous model


def test_zero_reproduces_the_instant_model_and_the_defaults_add_the_tails():
    # a request of 1 s every 30 min, 96 of them; the horizon ends with the last (171001).
    # Instant, by hand (the figures of the replay before the tails were modelled):
    #   fixed: each request cold, warm-up 60 + 1 + keep-alive 900 -> down at the next check,
    #          1200 s after the arrival; the last is billed 171000..171061 (it ends then)
    #   automatic: 6 x 961 (keep-alive) + 61 (timer known: unload at once) + 88 x 93
    #          (pre-warmed 92 s ahead) + the last, 93 s up to its end at the horizon
    #   always-warm: one instance over the whole horizon
    rows = [TraceRow("m", i * 1800.0, 1.0) for i in range(96)]
    old = run_benchmark(rows, {"m": spec()}, **INSTANT)
    billed = {p: r.models[0].billed_s for p, r in old.policies.items()}
    assert billed == pytest.approx(
        {
            "fixed": 95 * 1200.0 + 61.0,
            "automatic": 6 * 961.0 + 61.0 + 88 * 93.0 + 93.0,
            "always-warm": 171001.0,
        }
    )
    assert {p: r.cold_starts for p, r in old.policies.items()} == {
        "fixed": 96,
        "automatic": 7,
        "always-warm": 0,
    }
    assert old.policies["fixed"].models[0].waits == [60.0] * 96
    assert str(old.policies["fixed"].cost) == "114.06"  # 114061 s at $3.60/h
    assert str(old.policies["automatic"].cost) == "14.10"
    assert all(r.teardown_hours == 0.0 for r in old.policies.values())
    # the defaults (scale-in 300 s, delete 120 s): every delete but the last (cut by the end of
    # the replay) bills 120 s more; the same decisions, cold starts and waits
    new = run_benchmark(rows, {"m": spec()})
    assert (DEFAULT_SCALE_IN_S, DEFAULT_DELETE_S) == (300.0, 120.0)
    billed = {p: r.models[0].billed_s for p, r in new.policies.items()}
    assert billed == pytest.approx(
        {
            "fixed": 95 * 1320.0 + 61.0,
            "automatic": 6 * 1081.0 + 181.0 + 88 * 213.0 + 93.0,
            "always-warm": 171001.0,
        }
    )
    assert new.policies["fixed"].models[0].teardown_s == pytest.approx(95 * 120.0)
    assert new.policies["automatic"].models[0].teardown_s == pytest.approx(95 * 120.0)
    assert {p: r.cold_starts for p, r in new.policies.items()} == {
        p: r.cold_starts for p, r in old.policies.items()
    }
    assert new.to_dict()["policies"]["fixed"]["teardown_instance_hours"] == round(
        95 * 120.0 / 3600, 3
    )


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, MAX_TEARDOWN_S + 1])
def test_durations_are_checked(bad):
    with pytest.raises(ValueError, match="scale_in_s"):
        simulate_model(spec(), [(0.0, 1.0)], "fixed", DAY, scale_in_s=bad)
    with pytest.raises(ValueError, match="delete_s"):
        run_benchmark([TraceRow("m", 0.0, 1.0)], {"m": spec()}, delete_s=bad)
