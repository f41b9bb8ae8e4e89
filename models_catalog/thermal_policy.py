"""Thermal policy: instance counts per thermal state and the AUTOMATIC (hybrid histogram) policy.

Pure functions only: no I/O, no clock reads, no randomness. Time is passed in as float seconds
(any epoch; the Temporal workflow passes ``workflow.now().timestamp()``, the simulator its event
clock). Every input and output is an immutable pydantic model, so the entity workflow can carry
:class:`TrafficStats` in its state and through continue-as-new with ``pydantic_data_converter``,
and the benchmark simulator (:mod:`models_catalog.simulator`) runs exactly the same code.

States (DESIGN section 3), see :func:`capacity_for_state`
-----------------------------------------------------------
- OFF: 0 / 0 / 0 (min / desired / max).
- COLD: 0 instances while idle, 1 desired while serving, autoscaling max = ``max_instances``.
- WARM: desired = autoscaling min = ``max(1, min_instances)``, max = ``max_instances``.
- HOT: desired = autoscaling min = ``max(2, min_instances + 1)`` capped at ``max_instances``.
- AUTOMATIC: min = ``min_instances``, max = ``max_instances``; the desired count comes from
  :func:`automatic_decision`, re-evaluated by the caller on every arrival, every completion and at
  the times the decision names (``prewarm_at``, ``keep_alive_until``, ``reevaluate_at``).

Traffic statistics (:class:`TrafficStats`, bounded, about 2 KB as JSON)
------------------------------------------------------------------------
- A *gap* is recorded at every arrival that ends an idle period (nothing was in flight): the
  time since the previous arrival. Arrivals that find the model busy end no idle period and add
  no sample. For the paper's sub-second functions this is its idle time (end of one execution to
  the start of the next); for GPU jobs of minutes, timing from the previous *arrival* keeps
  timer-driven traffic sharp (a 30-minute timer with 2-10 minute jobs gives 30-minute gaps,
  not 20-28-minute idle times), and the job's own run time is handled by conditioning (below).
- Gap histogram: ``N_BINS`` = 240 bins of ``BIN_SECONDS`` = 60 s (range 4 h, as in the paper);
  longer gaps are counted as out of bound (OOB). When the histogram holds more than
  ``MAX_HISTOGRAM_SAMPLES`` samples every count is halved (floor), so old traffic fades out
  (the paper starts a new histogram each day and keeps two weeks).
- The last ``RECENT_GAPS_KEEP`` gaps (OOB ones included) for the predictive fallback.
- Arrival and completion counts, last arrival, last completion, in-flight requests (accepted, not
  finished, held ones included), the start of the current idle period, and a time-decayed EWMA of
  the arrival rate (``r <- r * exp(-dt / tau) + 1 / tau``, tau = 1 h; arrivals per second).

AUTOMATIC policy (:func:`automatic_decision`)
---------------------------------------------
1. Concurrency: ``needed = ceil(in_flight / concurrency_per_instance)``, capped at
   ``max_instances``. While requests are in flight the desired count is
   ``max(needed, min_instances)``; surplus instances started for a burst are held until
   ``scale_in_delay_s`` (300 s) after the last arrival, then released. The decision never goes
   below ``min(instances_now, in_flight)`` (instances that may be serving in-flight work) nor
   below ``min_instances``.
2. Idle (nothing in flight since ``idle_since``): the gap histogram is classified as in the
   hybrid histogram policy (Shahrad et al., USENIX ATC 2020; the constants are those of the dslab
   reference reimplementation where the paper gives none). All windows are offsets from the last
   arrival:

   - *thin history* (fewer than ``min_samples`` = 8 gaps): fixed keep-alive, one instance for
     ``scale_to_zero_after_minutes`` after the idle period began (to the minute), then zero.
   - *OOB* (``oob_rate >= 0.5``, an infrequent model): predictive fallback. An AR(1) model on the
     logarithms of the recent gaps (the paper's ARIMA, in a form a workflow can afford) predicts
     the next gap ``p``. If its in-sample one-step error is small (log-residual std <=
     ``max_prediction_log_std`` = 0.25), the instance is unloaded, ready at ``p * (1 - 0.15)`` and
     kept until ``p * (1 + 0.15)``. Otherwise the prediction is not trusted and the cost-aware
     keep-alive below is used without pre-warm: the instance stays only for the short gaps the
     histogram has seen (follow-up requests) and is dropped right after.
   - *not representative* (coefficient of variation of the bin counts < ``cv_threshold`` = 2):
     fixed keep-alive as for thin history.
   - *representative*: head = 5th percentile bin, tail = 99th percentile bin. The instance must
     be *ready* at ``head_lower_edge * (1 - 0.10)`` (pre-warm window) and is kept until
     ``tail_upper_edge * (1 + 0.10)`` (keep-alive window). A head of 0 means "do not unload".
     The keep-alive end is capped by a cost-benefit scan of the histogram: extending the window
     past bin *k* costs instance time for every gap longer than *k* and saves a cold start,
     valued at ``penalty_factor`` (2) x the model's ``scale_to_zero_after_minutes`` of instance
     time, only for the gaps ending inside the extension; the cheapest end wins. For tight
     (periodic) histograms this is the paper's tail; for a diurnal mixture of short day gaps and
     long night gaps it stops the 99th percentile from holding a GPU for hours. The factor sets
     where the policy sits on the cold-start / idle-time frontier of memoryless (Poisson)
     traffic, where no keep-alive policy can win on both; it was chosen on seeds 7 and 11 of the
     synthetic traces (not on the seed-42 benchmark).
   - If the last request ran for a while (idle started after the last arrival), gaps shorter than
     that run are impossible now and are dropped before taking the windows (conditioning).

   GPU warm-up is minutes, not the paper's sub-second container load, so the pre-warm *starts*
   ``warmup_time_seconds + prewarm_lead_s`` (30 s) before the instance must be ready (Azure's
   production system fires 90 s before the head). If the unloaded stretch would be shorter than
   ``min_unload_s`` (120 s) the instance simply stays up (an unload + reload would save little and
   churn the endpoint). Windows are anchored to the last arrival and ``idle_since``, not to
   ``now``, so re-evaluating at any time gives the same plan; ``prewarm_at`` and
   ``keep_alive_until`` are the caller's timers.

Fixed baseline (:func:`fixed_decision`): the seed's COLD behaviour. An instance starts on a
request that finds none (cold start), concurrency scale-out as above, and the idleness check runs
only every ``FIXED_CHECK_INTERVAL_S`` (300 s, clock aligned), so the instance stays up
``scale_to_zero_after_minutes`` after the last request plus the wait for the next check.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

BIN_SECONDS = 60.0
N_BINS = 240
RECENT_GAPS_KEEP = 16
MAX_HISTOGRAM_SAMPLES = 4096
RATE_TAU_SECONDS = 3600.0
FIXED_CHECK_INTERVAL_S = 300.0
_EPS = 1e-6

THERMAL_STATES = ("OFF", "COLD", "WARM", "HOT", "AUTOMATIC")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ThermalLimits(_Frozen):
    """What the policy needs to know about one model (catalog-independent)."""

    default_state: str = "COLD"
    scale_to_zero_after_minutes: int = Field(default=15, ge=0)
    warmup_time_seconds: int = Field(default=60, ge=0)
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=1, ge=1)
    concurrency_per_instance: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> ThermalLimits:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances > max_instances")
        return self


class PolicyParams(_Frozen):
    """Tunables of the AUTOMATIC policy (defaults documented in the module docstring)."""

    head_percentile: float = 0.05
    tail_percentile: float = 0.99
    histogram_margin: float = 0.10
    prediction_margin: float = 0.15
    cv_threshold: float = 2.0
    oob_threshold: float = 0.5
    min_samples: int = 8
    max_prediction_log_std: float = 0.25
    cold_start_penalty_s: float | None = None  # None: penalty_factor * keep-alive of the model
    penalty_factor: float = 2.0
    prewarm_lead_s: float = 30.0
    min_unload_s: float = 120.0
    scale_in_delay_s: float = 300.0


DEFAULT_PARAMS = PolicyParams()


class Capacity(_Frozen):
    """Instance bounds for a state: autoscaling min, desired count now, autoscaling max."""

    min_instances: int
    desired: int
    max_instances: int


class TrafficStats(_Frozen):
    """Bounded per-model traffic statistics; update only via observe_arrival/observe_completion."""

    bin_seconds: float = BIN_SECONDS
    bins: tuple[int, ...] = (0,) * N_BINS
    oob_count: int = 0
    arrivals: int = 0
    completions: int = 0
    in_flight: int = 0
    last_arrival: float | None = None
    last_completion: float | None = None
    idle_since: float | None = None
    rate_ewma: float = 0.0
    recent_gaps: tuple[float, ...] = ()

    @property
    def gap_samples(self) -> int:
        return sum(self.bins) + self.oob_count

    @property
    def last_activity(self) -> float | None:
        times = [t for t in (self.last_arrival, self.last_completion) if t is not None]
        return max(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (workflow state, continue-as-new input)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrafficStats:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` gives empty stats."""
        return cls.model_validate(data or {})


class Decision(_Frozen):
    """What the caller should run now, and when to ask again."""

    desired_instances: int
    keep_alive_until: float | None = None
    prewarm_at: float | None = None
    reevaluate_at: float | None = None
    mode: str = ""
    reason: str = ""

    def next_evaluation_at(self, now: float) -> float | None:
        """Earliest named time strictly after ``now`` (the caller's next timer)."""
        times = [
            t
            for t in (self.prewarm_at, self.keep_alive_until, self.reevaluate_at)
            if t is not None and t > now + _EPS
        ]
        return min(times) if times else None


# --------------------------------------------------------------------------------------------
# Thermal states
# --------------------------------------------------------------------------------------------


def _state_name(state: Any) -> str:
    name = str(getattr(state, "value", state)).upper()
    if name not in THERMAL_STATES:
        raise ValueError(f"unknown thermal state {state!r}")
    return name


def capacity_for_state(state: Any, limits: ThermalLimits, *, serving: bool = False) -> Capacity:
    """Instance bounds for a thermal state (DESIGN section 3).

    ``state`` is a ``ThermalState`` or its string value. ``serving`` only matters for COLD:
    1 instance is desired while requests are in flight, 0 while idle. For AUTOMATIC ``desired`` is
    the floor (``min_instances``); the live count comes from :func:`automatic_decision`.
    """
    name = _state_name(state)
    mx = limits.max_instances
    if name == "OFF":
        return Capacity(min_instances=0, desired=0, max_instances=0)
    if name == "COLD":
        return Capacity(min_instances=0, desired=1 if serving else 0, max_instances=mx)
    if name == "WARM":
        d = min(max(1, limits.min_instances), mx)
        return Capacity(min_instances=d, desired=d, max_instances=mx)
    if name == "HOT":
        d = min(max(2, limits.min_instances + 1), mx)
        return Capacity(min_instances=d, desired=d, max_instances=mx)
    return Capacity(
        min_instances=limits.min_instances, desired=limits.min_instances, max_instances=mx
    )


# --------------------------------------------------------------------------------------------
# Traffic statistics
# --------------------------------------------------------------------------------------------


def _record_gap(stats: TrafficStats, gap: float) -> dict[str, Any]:
    bins = stats.bins
    oob = stats.oob_count
    idx = int(gap // stats.bin_seconds)
    if idx < len(bins):
        bins = bins[:idx] + (bins[idx] + 1,) + bins[idx + 1 :]
    else:
        oob += 1
    if sum(bins) + oob > MAX_HISTOGRAM_SAMPLES:
        bins = tuple(b // 2 for b in bins)
        oob //= 2
    recent = (stats.recent_gaps + (round(gap, 3),))[-RECENT_GAPS_KEEP:]
    return {"bins": bins, "oob_count": oob, "recent_gaps": recent}


def observe_arrival(stats: TrafficStats, t: float) -> TrafficStats:
    """A request arrived at ``t``. Returns new stats (the input is not modified)."""
    update: dict[str, Any] = {}
    if stats.in_flight == 0 and stats.idle_since is not None and stats.last_arrival is not None:
        update.update(_record_gap(stats, max(0.0, t - stats.last_arrival)))
    if stats.last_arrival is None:
        rate = 1.0 / RATE_TAU_SECONDS
    else:
        dt = max(0.0, t - stats.last_arrival)
        rate = stats.rate_ewma * math.exp(-dt / RATE_TAU_SECONDS) + 1.0 / RATE_TAU_SECONDS
    update.update(
        arrivals=stats.arrivals + 1,
        in_flight=stats.in_flight + 1,
        last_arrival=t if stats.last_arrival is None else max(t, stats.last_arrival),
        idle_since=None,
        rate_ewma=rate,
    )
    return stats.model_copy(update=update)


def observe_completion(stats: TrafficStats, t: float) -> TrafficStats:
    """A request finished (or failed, or was rejected) at ``t``. Returns new stats."""
    in_flight = max(0, stats.in_flight - 1)
    last = t if stats.last_completion is None else max(t, stats.last_completion)
    return stats.model_copy(
        update={
            "completions": stats.completions + 1,
            "in_flight": in_flight,
            "last_completion": last,
            "idle_since": last if in_flight == 0 else None,
        }
    )


def _with_in_flight(stats: TrafficStats, in_flight: int | None) -> TrafficStats:
    """Stats with the caller's own in-flight count (idle from the last activity if it is 0)."""
    if in_flight is None or in_flight == stats.in_flight:
        return stats
    update: dict[str, Any] = {"in_flight": max(0, in_flight)}
    if in_flight <= 0 and stats.idle_since is None:
        update["idle_since"] = stats.last_activity
    elif in_flight > 0:
        update["idle_since"] = None
    return stats.model_copy(update=update)


def current_rate(stats: TrafficStats, now: float) -> float:
    """EWMA arrival rate (per second) decayed to ``now``."""
    if stats.last_arrival is None:
        return 0.0
    return stats.rate_ewma * math.exp(-max(0.0, now - stats.last_arrival) / RATE_TAU_SECONDS)


# --------------------------------------------------------------------------------------------
# Histogram analysis (memoised: pure function of hashable inputs)
# --------------------------------------------------------------------------------------------


def _percentile_bin(cum: list[int], total: int, p: float) -> int:
    target = p * total
    for i, c in enumerate(cum):
        if c >= target - 1e-9:
            return i
    return len(cum) - 1


def histogram_cv(bins: tuple[int, ...]) -> float:
    """Coefficient of variation of the bin counts (sample std / mean), 0 for an empty histogram."""
    n = len(bins)
    total = sum(bins)
    if total == 0 or n < 2:
        return 0.0
    mean = total / n
    sq = sum(b * b for b in bins)
    var = max(0.0, (sq - n * mean * mean) / (n - 1))
    return math.sqrt(var) / mean


def _cost_aware_end(
    bins: tuple[int, ...], oob: int, bin_s: float, ready_at: float, penalty: float
) -> float:
    """Keep-alive end (offset from the last arrival, a bin upper edge): min idle + penalty*colds.

    Gaps shorter than ``ready_at`` are cold whatever the end is, so only longer ones count.
    Each gap is taken at its bin midpoint. Candidate ends: ``ready_at`` itself (no keep-alive)
    and every bin upper edge above it.
    """
    n = len(bins)
    start_bin = min(n, int(ready_at // bin_s))
    counts = list(bins[start_bin:])
    beyond = sum(counts) + oob
    best_end = ready_at
    best_cost = penalty * beyond
    idle_inside = 0.0
    for j, cnt in enumerate(counts, start=start_bin):
        end = (j + 1) * bin_s
        if cnt:
            mid = max(ready_at, (j + 0.5) * bin_s)
            idle_inside += cnt * (mid - ready_at)
            beyond -= cnt
        cost = idle_inside + beyond * (end - ready_at + penalty)
        if cost < best_cost - 1e-9:
            best_cost = cost
            best_end = end
    return best_end


def _ar1_log_prediction(samples: tuple[float, ...]) -> tuple[float, float]:
    """AR(1) on log gaps: (predicted next gap in s, in-sample one-step log-residual std)."""
    xs = [math.log(max(1.0, s)) for s in samples]
    n = len(xs)
    mean = sum(xs) / n
    dev = [x - mean for x in xs]
    den = sum(d * d for d in dev)
    phi = 0.0
    if den > 1e-12 and n >= 3:
        phi = sum(dev[i] * dev[i - 1] for i in range(1, n)) / den
        phi = max(-0.9, min(0.9, phi))
    residuals = [dev[i] - phi * dev[i - 1] for i in range(1, n)]
    std = math.sqrt(sum(r * r for r in residuals) / len(residuals)) if residuals else float("inf")
    return math.exp(mean + phi * dev[-1]), std


@lru_cache(maxsize=8192)
def _idle_windows(
    bins: tuple[int, ...],
    oob: int,
    recent: tuple[float, ...],
    bin_s: float,
    penalty_s: float,
    params: PolicyParams,
    elapsed_bins: int = 0,
) -> tuple[str, float | None, float | None, str]:
    """(mode, ready offset, keep-alive end offset, reason), offsets from the last arrival.

    ``ready`` is when an instance should be ready for the next arrival (None: no pre-warm, stay
    up); ``end`` when to give up waiting (None: use the fixed keep-alive from the idle start).
    ``elapsed_bins``: whole bins between the last arrival and the idle start (a long request);
    the next gap is known to be at least that long, so the windows come from the histogram
    conditioned on it (shorter gaps dropped). The pattern test uses the whole histogram.
    """
    in_range = sum(bins)
    total = in_range + oob
    if total < params.min_samples:
        return "fixed-fallback", None, None, f"thin history ({total} < {params.min_samples} gaps)"
    oob_rate = oob / total
    if oob_rate >= params.oob_threshold:
        if len(recent) >= 4:
            pred, err = _ar1_log_prediction(recent)
            if err <= params.max_prediction_log_std:
                return (
                    "predictive",
                    pred * (1.0 - params.prediction_margin),
                    pred * (1.0 + params.prediction_margin),
                    f"OOB rate {oob_rate:.2f}: AR(1) predicts the next arrival {pred:.0f}s "
                    f"after the last (log err {err:.2f})",
                )
        end = _cost_aware_end(bins, oob, bin_s, 0.0, penalty_s) * (1.0 + params.histogram_margin)
        return (
            "predictive-unreliable",
            None,
            end,
            f"OOB rate {oob_rate:.2f}, next arrival not predictable: keep-alive {end:.0f}s",
        )
    cv = histogram_cv(bins)
    if cv < params.cv_threshold:
        return (
            "fixed-fallback",
            None,
            None,
            f"histogram not representative (CV {cv:.2f} < {params.cv_threshold})",
        )
    if elapsed_bins > 0:
        k = min(elapsed_bins, len(bins))
        bins = (0,) * k + bins[k:]
        in_range = sum(bins)
        if in_range == 0:  # every gap seen so far is shorter than this request's run
            end = _cost_aware_end(bins, oob, bin_s, 0.0, penalty_s)
            return "histogram", None, end, "all recorded gaps shorter than the last run"
    cum = list(accumulate(bins))
    head = _percentile_bin(cum, in_range, params.head_percentile)
    tail = _percentile_bin(cum, in_range, params.tail_percentile)
    ready = head * bin_s * (1.0 - params.histogram_margin)
    tail_end = (tail + 1) * bin_s
    cost_end = _cost_aware_end(bins, oob, bin_s, ready, penalty_s)
    end = max(ready, min(tail_end, cost_end) * (1.0 + params.histogram_margin))
    return (
        "histogram",
        ready if head > 0 else None,
        end,
        f"head {head}m, tail {tail}m, cost cap {cost_end / 60:.0f}m (CV {cv:.1f})",
    )


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


def _busy_decision(
    stats: TrafficStats,
    limits: ThermalLimits,
    now: float,
    instances_now: int,
    base: int,
    delay_s: float,
) -> Decision:
    needed = min(limits.max_instances, -(-stats.in_flight // limits.concurrency_per_instance))
    serving_floor = min(instances_now, stats.in_flight)
    desired = max(needed, base, serving_floor)
    reevaluate = None
    if instances_now > desired and stats.last_arrival is not None:
        hold_until = stats.last_arrival + delay_s
        if now < hold_until - _EPS:
            desired = min(instances_now, limits.max_instances)
            reevaluate = hold_until
    desired = max(desired, serving_floor)
    return Decision(
        desired_instances=desired,
        reevaluate_at=reevaluate,
        mode="busy",
        reason=f"{stats.in_flight} in flight, {needed} needed at "
        f"{limits.concurrency_per_instance}/instance",
    )


def automatic_decision(
    stats: TrafficStats,
    limits: ThermalLimits,
    now: float,
    instances_now: int,
    params: PolicyParams = DEFAULT_PARAMS,
    *,
    in_flight: int | None = None,
) -> Decision:
    """AUTOMATIC: desired instance count now, plus pre-warm / keep-alive times (module docstring).

    ``in_flight`` overrides ``stats.in_flight`` when the caller counts in-flight work itself
    (e.g. live leases); an idle period still starts at ``stats.idle_since``.
    """
    stats = _with_in_flight(stats, in_flight)
    floor = limits.min_instances
    if stats.in_flight > 0:
        return _busy_decision(stats, limits, now, instances_now, floor, params.scale_in_delay_s)
    if stats.idle_since is None:
        return Decision(desired_instances=floor, mode="no-traffic", reason="no traffic seen yet")
    s = stats.idle_since
    anchor = stats.last_arrival if stats.last_arrival is not None else s
    penalty = (
        params.cold_start_penalty_s
        if params.cold_start_penalty_s is not None
        else params.penalty_factor * limits.scale_to_zero_after_minutes * 60.0
    )
    mode, ready_off, end_off, why = _idle_windows(
        stats.bins,
        stats.oob_count,
        stats.recent_gaps,
        stats.bin_seconds,
        penalty,
        params,
        int(max(0.0, s - anchor) // stats.bin_seconds),
    )
    if end_off is None:  # fixed keep-alive, counted from the idle start (to the minute)
        keep_until = s + limits.scale_to_zero_after_minutes * 60.0
    else:
        keep_until = max(s, anchor + end_off)
    prewarm_at = None
    if ready_off is not None:
        start = anchor + ready_off - limits.warmup_time_seconds - params.prewarm_lead_s
        if start - s >= params.min_unload_s:
            prewarm_at = start
    if prewarm_at is not None and now < prewarm_at - _EPS:
        up = False
    else:
        up = now < keep_until - _EPS
    desired = max(floor, 1 if up else 0)
    if end_off is None:
        plan = f"keep-alive {keep_until - s:.0f}s from the idle start"
    elif prewarm_at is not None:
        plan = (
            f"unloaded, warm from {prewarm_at - anchor:.0f}s to {keep_until - anchor:.0f}s "
            "after the last arrival"
        )
    else:
        plan = f"up until {keep_until - anchor:.0f}s after the last arrival"
    return Decision(
        desired_instances=min(desired, limits.max_instances),
        keep_alive_until=keep_until,
        prewarm_at=prewarm_at,
        mode=mode,
        reason=f"{why}; {plan}",
    )


def _ceil_to_check(t: float, interval: float) -> float:
    return math.ceil(t / interval - 1e-9) * interval


def fixed_decision(
    stats: TrafficStats,
    limits: ThermalLimits,
    now: float,
    instances_now: int,
    check_interval_s: float = FIXED_CHECK_INTERVAL_S,
    *,
    in_flight: int | None = None,
) -> Decision:
    """Seed COLD baseline: fixed keep-alive after the last request, checked every 5 minutes.

    Scale-out on concurrency happens at once; scale-in (to 1 and, after the keep-alive, to 0)
    only at clock-aligned checks every ``check_interval_s``.
    """
    stats = _with_in_flight(stats, in_flight)
    floor = limits.min_instances
    k = round(now / check_interval_s)
    at_check = abs(now - k * check_interval_s) < 1e-6
    next_check = (k + 1) * check_interval_s if at_check else _ceil_to_check(now, check_interval_s)
    if stats.in_flight > 0:
        needed = min(limits.max_instances, -(-stats.in_flight // limits.concurrency_per_instance))
        minimum = max(needed, floor, min(instances_now, stats.in_flight))
        desired = minimum if at_check else max(minimum, min(instances_now, limits.max_instances))
        return Decision(
            desired_instances=desired,
            reevaluate_at=next_check if instances_now > minimum else None,
            mode="fixed-busy",
            reason=f"{stats.in_flight} in flight",
        )
    last = stats.last_activity
    if last is None:
        return Decision(desired_instances=floor, mode="fixed", reason="no traffic seen yet")
    expiry = _ceil_to_check(last + limits.scale_to_zero_after_minutes * 60.0, check_interval_s)
    if now >= expiry - 1e-6:
        return Decision(
            desired_instances=floor,
            keep_alive_until=expiry,
            mode="fixed",
            reason="idle past keep-alive at the 5-minute check",
        )
    desired = max(floor, min(instances_now, 1) if at_check else instances_now)
    return Decision(
        desired_instances=desired,
        keep_alive_until=expiry,
        reevaluate_at=next_check if instances_now > max(1, floor) else None,
        mode="fixed",
        reason=f"keep-alive until the check at {expiry:.0f}",
    )


def always_warm_decision(
    stats: TrafficStats, limits: ThermalLimits, now: float, instances_now: int
) -> Decision:
    """Benchmark reference: max(1, min_instances) always up, concurrency scale-out on top."""
    base = max(1, limits.min_instances)
    if stats.in_flight > 0:
        return _busy_decision(
            stats, limits, now, instances_now, base, DEFAULT_PARAMS.scale_in_delay_s
        )
    return Decision(desired_instances=base, mode="always-warm", reason="always warm")


# --------------------------------------------------------------------------------------------
# Catalog adapter
# --------------------------------------------------------------------------------------------


def limits_from_model(model: Any, *, concurrency_per_instance: int = 4) -> ThermalLimits:
    """ThermalLimits from a catalog ``SelfHostedModel`` (only ``model.thermal`` is read)."""
    th = model.thermal
    return ThermalLimits(
        default_state=_state_name(th.default_state),
        scale_to_zero_after_minutes=int(th.scale_to_zero_after_minutes),
        warmup_time_seconds=int(th.warmup_time_seconds),
        min_instances=int(th.min_instances),
        max_instances=int(th.max_instances),
        concurrency_per_instance=concurrency_per_instance,
    )
