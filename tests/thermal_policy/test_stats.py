"""TrafficStats: pure updates, bounded size, JSON round trip."""

from __future__ import annotations

import json

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
