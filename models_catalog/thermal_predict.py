"""Pure prediction helpers of the AUTOMATIC thermal policy (see :mod:`thermal_policy`).

- :func:`periodic_fit`: phase-locked timer detection on the recent gaps.
- :func:`hazard_plan`: cost-aware up/down plan from per-bin conditional arrival probabilities.
- :func:`decaying_rate_end`: keep-alive end for a Poisson-like model whose rate is the decayed
  EWMA of the arrival rate.

No I/O, no clock, no randomness; every function is a deterministic function of its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PeriodicFit:
    """Arrivals fit ``a = alpha + period * k`` (k a tick index) with residuals in [rmin, rmax]."""

    period: float
    alpha: float  # predicted time of tick index 0 (the last arrival's tick)
    rmin: float
    rmax: float
    samples: int

    def window(self, after: float, margin: float) -> tuple[float, float, int]:
        """(ready, end, ticks ahead): the first tick window whose end is after ``after``."""
        k = max(1, math.ceil((after - self.alpha - self.rmax - margin) / self.period - 1e-9))
        while self.alpha + k * self.period + self.rmax + margin <= after:
            k += 1
        base = self.alpha + k * self.period
        return base + self.rmin - margin, base + self.rmax + margin, k


def periodic_fit(
    recent: Sequence[float],
    last_arrival: float,
    *,
    min_samples: int = 8,
    tolerance: float = 0.05,
    min_period: float = 60.0,
) -> PeriodicFit | None:
    """Detect a timer in the recent gaps (oldest first) ending at ``last_arrival``.

    The period estimate is the median gap; every gap must be within ``tolerance`` of a whole
    multiple (1, 2, 3: missed ticks are allowed) of it. The arrival times are rebuilt backwards
    from ``last_arrival``, each gets a tick index, and a least-squares line (index -> time) gives
    the period and phase. The residual range is the jitter the next tick is expected within; a
    range over ``2 * tolerance`` of the period (drifting gaps) is not a timer.
    """
    gaps = [g for g in recent if g > 0]
    if len(gaps) < min_samples:
        return None
    srt = sorted(gaps)
    p0 = srt[len(srt) // 2]
    if p0 < min_period:
        return None
    ticks: list[int] = []
    for g in gaps:
        m = round(g / p0)
        if m < 1 or m > 3 or abs(g - m * p0) > tolerance * p0:
            return None
        ticks.append(m)
    # rebuild (index, time) pairs backwards from the last arrival (index 0)
    xs = [0.0]
    ys = [last_arrival]
    idx = 0
    t = last_arrival
    for g, m in zip(reversed(gaps), reversed(ticks), strict=True):
        idx -= m
        t -= g
        xs.append(float(idx))
        ys.append(t)
    n = len(xs)
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    beta = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    alpha = my - beta * mx
    res = [y - (alpha + beta * x) for x, y in zip(xs, ys, strict=True)]
    if max(res) - min(res) > 2.0 * tolerance * beta:  # drifting, not a timer
        return None
    return PeriodicFit(period=beta, alpha=alpha, rmin=min(res), rmax=max(res), samples=n)


def hazard_plan(
    probs: Sequence[float],
    survival: Sequence[float],
    start_bin: int,
    bin_s: float,
    value_s: float,
    warmup_cost_s: float,
    min_down_s: float,
    up_now: bool,
) -> tuple[float | None, float]:
    """First worthwhile up-interval at or after ``start_bin``: (ready offset or None, end offset).

    ``probs[k]``: probability that the next arrival falls in bin k given none before it;
    ``survival[k]``: probability that none came before bin k (relative weights only).
    Keeping an instance up through bin k is worth ``probs[k] * value_s`` (the instance-seconds a
    cold start costs, times the cold starts it brings) and costs ``bin_s * (1 - probs[k] / 2)``
    (the instance waits half a bin on average when the arrival falls inside the bin). Bins with a
    positive net value form the up-intervals. The first interval is taken if its survival-
    weighted net value pays for the warm-up (``warmup_cost_s``, not paid if ``up_now`` and the
    interval starts at ``start_bin``); down stretches shorter than ``min_down_s`` are bridged.

    Returns ``(None, end)`` to stay up until ``end`` from now, ``(ready, end)`` to be ready at
    ``ready`` and stay to ``end``; ``(ready, ready)`` (an empty interval) means stay down for the
    whole range: the caller re-plans at ``ready``.
    """
    n = len(probs)
    net = [probs[k] * value_s - bin_s * (1.0 - probs[k] / 2.0) for k in range(n)]
    k = start_bin
    while k < n:
        while k < n and net[k] <= 0:
            k += 1
        if k >= n:
            break
        a = k
        b = k
        while True:
            while b < n and net[b] > 0:
                b += 1
            # bridge a short down stretch followed by more positive bins
            c = b
            while c < n and net[c] <= 0 and (c - b + 1) * bin_s < min_down_s:
                c += 1
            if b < c < n and net[c] > 0:
                b = c
                continue
            break
        total = sum(survival[j] * net[j] for j in range(a, b))
        free = up_now and a == start_bin
        if free or total > survival[a] * warmup_cost_s:
            return (None if free else a * bin_s), b * bin_s
        k = b
    return n * bin_s, n * bin_s


def decaying_rate_end(rate0: float, tau: float, value_s: float) -> float:
    """Offset after which ``rate0 * exp(-x / tau) * value_s < 1`` (0 if already below).

    A Poisson-like model with arrival rate ``r(x)`` (per second): staying up for dx saves
    ``r(x) dx`` cold starts worth ``value_s`` instance-seconds each and costs ``dx``.
    """
    v = rate0 * value_s
    if v <= 1.0:
        return 0.0
    return tau * math.log(v)
