"""TrafficStats: pure updates, bounded size, JSON round trip."""

from __future__ import annotations

import json

import pytest

from models_catalog.thermal_policy import (
    MAX_HISTOGRAM_SAMPLES,
    N_BINS,
    RECENT_GAPS_KEEP,
    TrafficStats,
    current_rate,
    observe_arrival,
    observe_completion,
)


def serve(stats: TrafficStats, t: float, dur: float = 1.0) -> TrafficStats:
    return observe_completion(observe_arrival(stats, t), t + dur)


def test_updates_do_not_mutate_and_track_in_flight():
    s0 = TrafficStats()
    s1 = observe_arrival(s0, 10.0)
    assert s0.arrivals == 0 and s0.in_flight == 0
    assert (s1.arrivals, s1.in_flight, s1.last_arrival, s1.idle_since) == (1, 1, 10.0, None)
    s2 = observe_completion(s1, 12.0)
    assert (s2.in_flight, s2.completions, s2.idle_since, s2.last_completion) == (0, 1, 12.0, 12.0)
    assert s2.gap_samples == 0  # the first arrival ends no idle period


def test_gap_recorded_from_previous_arrival_only_when_idle():
    s = serve(TrafficStats(), 0.0, 30.0)  # busy 0..30
    s = serve(s, 600.0)  # idle arrival: gap 600 s from the previous arrival -> bin 10
    assert s.bins[10] == 1 and s.gap_samples == 1
    s = observe_arrival(s, 1200.0)
    s = observe_arrival(s, 1210.0)  # arrives while busy: no sample
    assert s.gap_samples == 2 and s.in_flight == 2
    s = observe_completion(observe_completion(s, 1220.0), 1230.0)
    assert s.idle_since == 1230.0
    s = serve(s, 5 * 3600.0)  # beyond the 4 h range: out of bound
    assert s.oob_count == 1
    assert s.recent_gaps[-1] == 5 * 3600.0 - 1210.0


def test_bounded_histogram_and_recent_window():
    s = TrafficStats()
    t = 0.0
    for i in range(MAX_HISTOGRAM_SAMPLES + 500):
        s = serve(s, t)
        t += 60.0 * (1 + i % 7)
    assert len(s.bins) == N_BINS
    assert s.gap_samples <= MAX_HISTOGRAM_SAMPLES
    assert len(s.recent_gaps) == RECENT_GAPS_KEEP
    assert s.arrivals == MAX_HISTOGRAM_SAMPLES + 500


def test_json_round_trip():
    s = TrafficStats()
    for t in (0.0, 300.0, 900.0, 20000.0):
        s = serve(s, t)
    s = observe_arrival(s, 20500.0)
    data = json.loads(json.dumps(s.to_dict()))
    back = TrafficStats.from_dict(data)
    assert back == s
    assert TrafficStats.from_dict({}) == TrafficStats() == TrafficStats.from_dict(None)
    assert len(json.dumps(data)) < 4000


def test_rate_ewma_decays():
    s = TrafficStats()
    for i in range(60):
        s = serve(s, i * 60.0)  # one a minute for an hour
    r_now = current_rate(s, 3600.0)
    assert 0.5 / 60 < r_now < 1.0 / 60
    assert current_rate(s, 3600.0 * 5) < r_now / 10


def test_old_stats_dicts_still_load():
    # a dict written by the first version (no episode, score or OOB-excess fields)
    s = TrafficStats()
    for t in (0.0, 300.0, 900.0, 20000.0):
        s = serve(s, t)
    old = s.to_dict()
    for key in (
        "oob_excess_s",
        "head_at",
        "heads",
        "followers",
        "score_hist",
        "score_rate",
        "rate_calib_obs",
        "rate_calib_exp",
    ):
        old.pop(key)
    back = TrafficStats.from_dict(old)
    assert back.bins == s.bins and back.heads == 0 and back.followers == ()
    # and it keeps working: the next arrival starts counting followers
    nxt = serve(back, 20010.0)
    assert nxt.arrivals == s.arrivals + 1


def test_oob_excess_and_heads_are_tracked():
    s = serve(TrafficStats(), 0.0)  # the first arrival is an episode head
    assert s.heads == 1 and s.head_at == 0.0
    s = serve(s, 20.0)  # a follower within 30 s
    assert s.followers[0] == 1 and s.heads == 1
    s = serve(s, 5 * 3600.0)  # an OOB gap 1 h past the 4 h range, and a new head
    assert s.oob_count == 1 and s.oob_excess_s == pytest.approx(3600.0 - 20.0)
    assert s.heads == 2 and s.head_at == 5 * 3600.0
    s = serve(s, 5 * 3600.0 + 100.0)  # within 120 s of the new head, not within 90 s
    assert s.followers[:5] == (1, 1, 1, 2, 2)


def test_stats_stay_small_after_a_long_history():
    s = TrafficStats()
    t = 0.0
    for i in range(3000):
        s = serve(s, t)
        t += 30.0 if i % 10 else 5 * 3600.0
    assert len(json.dumps(s.to_dict())) < 4000
