"""Discrete-event replay of a request trace through the thermal policies (the thermal benchmark).

Each model is simulated on its own event clock (a heap of ready / completion / deadline / timer
events, arrivals merged in from the sorted trace); models share nothing, so the result does not
depend on the order in which they are replayed. The replay is deterministic: no randomness, no
wall clock, ties broken by event kind then insertion order.

Model of one model's endpoint
-----------------------------
- Instances. Starting an instance takes ``warmup_time_seconds`` before it is ready (InService).
  An instance is billed from its start to its removal (warm-up included) at the model's billed
  hourly rate. Instances that a policy wants at time 0 are already up (ready) at time 0.
- Concurrency. An instance serves up to ``concurrency_per_instance`` requests at once (default 4,
  like SageMaker's per-instance concurrency for batching servers such as TGI) and a request's
  service time is its trace ``duration_s`` whatever else runs beside it. Admitted requests
  (below) that find no free slot on a ready instance wait in a FIFO queue for one.
- Transitions, as the workflow (``workflows/thermal.py``) runs them: one at a time. A create
  or scale-out is one step that returns once the endpoint is InService again (the new
  instances ready, ``warmup_time_seconds`` later); the workflow decides nothing meanwhile (nor
  can SageMaker's autoscaler change an endpoint that is Updating).
  Arrivals, completions and failures during it update the statistics, and the policy is asked
  again when it is over (a timer that fell within it is not replayed: that evaluation sets the
  next one).
- Scale-in and scale to zero take time too (``scale_in_s``, ``delete_s``; 0 restores the
  instant model of earlier versions). A scale-in (an UpdateEndpointWeightsAndCapacities to
  fewer instances: the workflow's ``_set_capacity``, or SageMaker's autoscaler for
  ``always-warm`` / ``fixed``) keeps the endpoint Updating for ``scale_in_s``: the instances it
  removes serve nothing more but are billed until it ends, and it is a transition like the
  others: nothing else is decided meanwhile (a request needing more capacity queues until it
  ends; neither the workflow nor the autoscaler can change an Updating endpoint), and under
  ``automatic`` a caller arriving during it waits for it (``warm_up`` waits for ``converging``).
  A scale to zero (the workflow's ``_scale_to_zero``: DeleteEndpoint, every policy that
  reaches 0) leaves the endpoint Deleting for ``delete_s``: its instances serve nothing from
  the start and are billed until it ends, and a create cannot start before it ends (the name
  is not free: ``ensure_endpoint`` retries), so a request arriving meanwhile is a cold start
  that waits for the rest of the delete and then a full warm-up. These billing tails are
  reported as ``teardown_s`` and, like every instance, billed up to the end of the replay.
- Admission. A caller waits in the workflow's ``warm_up`` until the model is ready *and* no
  transition is under way (it waits for ``converging`` to end). Under ``automatic`` a scale-out
  is such a transition (the policy's concurrency scale-out is the workflow's capacity step), so
  a request arriving during it waits for it. Under ``always-warm`` (WARM/HOT) and ``fixed``
  (COLD) the workflow only creates and deletes; their concurrency scale-out stands for
  SageMaker's autoscaler (the workflow registers its bounds), which holds no caller: a request
  arriving during it is admitted as soon as an instance is ready. Once admitted, a request
  queues for a free slot of a ready instance.
- Deadline: ``deadline_s`` (``--deadline-minutes``, 15 min; the workflow's default warm-up
  deadline is 45) bounds that warm-up wait, as in ``warm_up``: a request not admitted within
  it fails (its wait counted as ``deadline_s``, its lease released). Queueing for a slot after
  admission is not bounded: the model is ready and the caller has been answered; the policy
  scales out for it (up to ``max_instances``).
- Cold start: a request that finds *no ready instance* at its arrival (none at all, or only ones
  still warming up). Its added wait is the time until it starts service (the remaining warm-up,
  plus any queueing); a request held only by a scale-out is not cold, but its wait counts.
- Idle instance-time = billed time when the instance serves nothing (warm-up included: the GPU is
  paid for while the model loads). ``warmup_hours`` reports the warm-up share separately.
- The policy (see :mod:`models_catalog.thermal_policy`) is asked for a desired instance count on
  every arrival, every completion, every deadline failure, at the end of each transition and at
  the next time its last decision named (pre-warm, keep-alive end, re-evaluation), except
  during a transition (above). Scale-out starts new instances; scale-in removes idle instances
  only (newest first); busy instances are never interrupted. Removing every instance is a
  scale to zero (a delete), removing some a scale-in.
- The replay ends at ``horizon_s``: by default the trace's end, when its last request would
  finish if served at once (``max(arrival_ts + duration_s)``, not rounded: a generated trace of
  N days ends within about an hour of N days), or when the last request has finished, if later.
  Instances still up are billed until then, the always-warm base instance from 0 to then.

Policies: ``always-warm`` (max(1, min_instances) always up, scale-out on concurrency),
``fixed`` (seed COLD: fixed keep-alive, 5-minute checks) and ``automatic`` (hybrid histogram).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from models_catalog.thermal_policy import (
    DEFAULT_PARAMS,
    Decision,
    PolicyParams,
    ThermalLimits,
    TrafficStats,
    always_warm_decision,
    automatic_decision,
    fixed_decision,
    limits_from_model,
    observe_arrival,
    observe_completion,
)
from models_catalog.tracegen import TraceRow

POLICIES = ("always-warm", "fixed", "automatic")
DEFAULT_DEADLINE_S = 900.0
DEFAULT_CONCURRENCY = 4
# How long SageMaker takes to remove instances; AWS publishes no figure for either, so both
# are assumptions (README, "Thermal policy"); 0 restores the instant model.
# A scale-in is an UpdateEndpointWeightsAndCapacities: the endpoint is Updating until the
# instances are drained and released; no published figure was found, 5 minutes is an
# assumption for the "some minutes" such an update usually takes.
DEFAULT_SCALE_IN_S = 300.0
# A DeleteEndpoint leaves the endpoint Deleting; a third-party tutorial quotes 30-120 s of
# teardown (not AWS): the upper end, since the instances are billed until they are gone.
DEFAULT_DELETE_S = 120.0
# Upper bound accepted for either (one hour): a longer value is more likely a typo.
MAX_TEARDOWN_S = 3600.0

# event kinds, in tie-break order at equal times
_READY, _COMPLETE, _DEADLINE, _TIMER = 0, 1, 3, 4
_ARRIVAL = 2  # arrivals are merged from the sorted trace, after ready/complete at equal times
# request states: waiting for the model to be ready, admitted (queued for a slot), started, failed
_HELD, _ADMITTED, _STARTED, _FAILED = 0, 1, 2, 3

Decider = Callable[[TrafficStats, ThermalLimits, float, int], Decision]


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    limits: ThermalLimits
    hourly_rate: Decimal


@dataclass
class ModelResult:
    model_id: str
    policy: str
    requests: int = 0
    cold_starts: int = 0
    failed: int = 0
    waits: list[float] = field(default_factory=list, repr=False)
    billed_s: float = 0.0
    busy_s: float = 0.0
    warmup_s: float = 0.0
    teardown_s: float = 0.0  # billed time of instances being scaled in or deleted
    instance_starts: int = 0
    hourly_rate: Decimal = Decimal(0)

    @property
    def idle_s(self) -> float:
        return max(0.0, self.billed_s - self.busy_s)

    @property
    def cost(self) -> Decimal:
        return _money(self.billed_s, self.hourly_rate)


def _money(seconds: float, rate: Decimal) -> Decimal:
    hours = Decimal(repr(round(seconds, 3))) / Decimal(3600)
    return (hours * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    k = max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)
    return float(sorted_values[min(k, len(sorted_values) - 1)])


@dataclass
class PolicyResult:
    policy: str
    models: list[ModelResult]

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.models)

    @property
    def cold_starts(self) -> int:
        return sum(m.cold_starts for m in self.models)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.models)

    @property
    def cold_start_fraction(self) -> float:
        return self.cold_starts / self.requests if self.requests else 0.0

    @property
    def billed_hours(self) -> float:
        return sum(m.billed_s for m in self.models) / 3600.0

    @property
    def idle_hours(self) -> float:
        return sum(m.idle_s for m in self.models) / 3600.0

    @property
    def warmup_hours(self) -> float:
        return sum(m.warmup_s for m in self.models) / 3600.0

    @property
    def busy_hours(self) -> float:
        return sum(m.busy_s for m in self.models) / 3600.0

    @property
    def teardown_hours(self) -> float:
        return sum(m.teardown_s for m in self.models) / 3600.0

    @property
    def cost(self) -> Decimal:
        return sum((m.cost for m in self.models), Decimal("0.00"))

    def wait_percentiles(self) -> dict[str, float]:
        waits = sorted(w for m in self.models for w in m.waits)
        return {f"p{p}": round(percentile(waits, p), 3) for p in (50, 95, 99)}

    def to_dict(self, per_model: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy": self.policy,
            "requests": self.requests,
            "cold_starts": self.cold_starts,
            "cold_start_fraction": round(self.cold_start_fraction, 6),
            "failed": self.failed,
            "billed_gpu_cost": str(self.cost),
            "billed_instance_hours": round(self.billed_hours, 3),
            "idle_instance_hours": round(self.idle_hours, 3),
            "warmup_instance_hours": round(self.warmup_hours, 3),
            "busy_instance_hours": round(self.busy_hours, 3),
            "teardown_instance_hours": round(self.teardown_hours, 3),
            "added_wait_s": self.wait_percentiles(),
        }
        if per_model:
            out["models"] = [
                {
                    "model_id": m.model_id,
                    "requests": m.requests,
                    "cold_starts": m.cold_starts,
                    "failed": m.failed,
                    "billed_gpu_cost": str(m.cost),
                    "billed_instance_hours": round(m.billed_s / 3600.0, 3),
                    "idle_instance_hours": round(m.idle_s / 3600.0, 3),
                    "instance_starts": m.instance_starts,
                }
                for m in self.models
            ]
        return out


@dataclass
class BenchmarkResult:
    policies: dict[str, PolicyResult]
    horizon_s: float
    model_ids: list[str]

    def ratios(self, num: str = "automatic", den: str = "fixed") -> dict[str, float | None]:
        a, b = self.policies.get(num), self.policies.get(den)
        if a is None or b is None:
            return {}

        def ratio(x: float, y: float) -> float | None:
            return round(x / y, 4) if y else None

        return {
            "cost": ratio(float(a.cost), float(b.cost)),
            "idle_instance_hours": ratio(a.idle_hours, b.idle_hours),
            "cold_starts": ratio(a.cold_starts, b.cold_starts),
        }

    def to_dict(self, per_model: bool = False) -> dict[str, Any]:
        return {
            "horizon_s": self.horizon_s,
            "models": len(self.model_ids),
            "policies": {k: v.to_dict(per_model) for k, v in self.policies.items()},
            "ratios_automatic_vs_fixed": self.ratios(),
        }


# --------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------


class _Instance:
    __slots__ = ("started", "ready_at", "ready", "alive", "busy", "busy_since", "busy_total")

    def __init__(self, started: float, ready_at: float) -> None:
        self.started = started
        self.ready_at = ready_at
        self.ready = ready_at <= started
        self.alive = True
        self.busy = 0
        self.busy_since = 0.0
        self.busy_total = 0.0


def decider_for(policy: str, params: PolicyParams = DEFAULT_PARAMS) -> Decider:
    if policy == "always-warm":
        return always_warm_decision
    if policy == "fixed":
        return fixed_decision
    if policy == "automatic":
        return lambda s, lim, now, n: automatic_decision(s, lim, now, n, params)
    raise ValueError(f"unknown policy {policy!r} (expected one of {', '.join(POLICIES)})")


def check_teardown(name: str, seconds: float) -> float:
    """``seconds`` as a scale-in / delete duration: finite, 0 to ``MAX_TEARDOWN_S``."""
    if not 0.0 <= seconds <= MAX_TEARDOWN_S:  # also refuses nan
        raise ValueError(f"{name} must be between 0 and {MAX_TEARDOWN_S:g} (got {seconds})")
    return float(seconds)


def simulate_model(
    spec: ModelSpec,
    requests: Sequence[tuple[float, float]],
    policy: str,
    horizon_s: float,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    params: PolicyParams = DEFAULT_PARAMS,
    scale_in_s: float = DEFAULT_SCALE_IN_S,
    delete_s: float = DEFAULT_DELETE_S,
) -> ModelResult:
    """Replay ``requests`` (``(arrival_ts, duration_s)``, any order) for one model."""
    decide = decider_for(policy, params)
    scale_in_s = check_teardown("scale_in_s", scale_in_s)
    delete_s = check_teardown("delete_s", delete_s)
    limits = spec.limits
    conc = limits.concurrency_per_instance
    warm = float(limits.warmup_time_seconds)
    reqs = sorted(requests)
    n_req = len(reqs)
    res = ModelResult(
        model_id=spec.model_id, policy=policy, requests=n_req, hourly_rate=spec.hourly_rate
    )
    waits = [0.0] * n_req
    status = [_HELD] * n_req

    heap: list[tuple[float, int, int, Any]] = []
    seq = 0
    insts: list[_Instance] = []
    held: deque[int] = deque()  # callers waiting for the model to be ready (the deadline runs)
    queue: deque[int] = deque()  # admitted requests waiting for a free slot (no deadline)
    stats = TrafficStats()
    transition_end: float | None = None  # a create / scale-out / scale-in / delete until then
    leaving: list[tuple[_Instance, float, float]] = []  # scaled in or deleted: from, until
    holds_callers = policy == "automatic"  # its scale-outs are the workflow's converge steps
    timer_at: float | None = None
    timer_gen = 0

    def push(t: float, kind: int, obj: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, kind, seq, obj))

    def retire(inst: _Instance, now: float) -> None:
        inst.alive = False
        res.billed_s += now - inst.started
        res.warmup_s += min(now, inst.ready_at) - inst.started
        if inst.busy:
            inst.busy_total += now - inst.busy_since
        res.busy_s += inst.busy_total

    def apply(desired: int, now: float) -> None:
        nonlocal transition_end
        n = len(insts)
        if desired > n:
            started = []
            for _ in range(desired - n):
                inst = _Instance(now, now + warm)
                insts.append(inst)
                started.append(inst)
                res.instance_starts += 1
            if warm > 0:
                # the workflow's create / scale-out step: it returns once they are InService
                transition_end = now + warm
                push(transition_end, _READY, started)
        elif desired < n:
            idle = [i for i in insts if i.busy == 0]
            idle.sort(key=lambda i: (i.ready, -i.started))  # warming first, then newest
            removed = idle[: n - desired]
            for inst in removed:
                insts.remove(inst)  # serves nothing more from now
            step = scale_in_s if insts else delete_s  # none left: the endpoint is deleted
            if step <= 0:
                for inst in removed:
                    retire(inst, now)
            elif removed:
                # Updating / Deleting: billed until the step ends, nothing decided meanwhile
                leaving.extend((inst, now, now + step) for inst in removed)
                transition_end = now + step
                push(transition_end, _READY, [])

    def evaluate(now: float) -> None:
        nonlocal timer_at, timer_gen
        if transition_end is not None:
            return  # the workflow decides again when the transition is over (see _READY)
        d = decide(stats, limits, now, len(insts))
        apply(d.desired_instances, now)
        nxt = d.next_evaluation_at(now)
        if nxt != timer_at:
            timer_gen += 1
            timer_at = nxt
            if nxt is not None:
                push(nxt, _TIMER, timer_gen)

    def admissible() -> bool:
        """The caller's warm-up wait ends: a ready instance and (automatic: the workflow's own
        scale-out) no transition under way."""
        if transition_end is not None and holds_callers:
            return False
        return any(i.ready for i in insts)

    def dispatch(now: float) -> None:
        if held and admissible():
            while held:
                r = held.popleft()
                if status[r] == _HELD:
                    status[r] = _ADMITTED
                    queue.append(r)
        while queue:
            target = None
            for inst in insts:
                if inst.ready and inst.busy < conc:
                    target = inst
                    break
            if target is None:
                return
            r = queue.popleft()
            status[r] = _STARTED
            waits[r] = now - reqs[r][0]
            if target.busy == 0:
                target.busy_since = now
            target.busy += 1
            push(now + reqs[r][1], _COMPLETE, (target, r))

    # initial capacity (already up at time 0)
    d0 = decide(stats, limits, 0.0, 0)
    for _ in range(d0.desired_instances):
        insts.append(_Instance(0.0, 0.0))
    nxt0 = d0.next_evaluation_at(0.0)
    if nxt0 is not None:
        timer_at = nxt0
        push(nxt0, _TIMER, timer_gen)

    ai = 0
    now = 0.0
    while True:
        next_arrival = reqs[ai][0] if ai < n_req else math.inf
        if heap and (heap[0][0], heap[0][1]) < (next_arrival, _ARRIVAL):
            t, kind, _, obj = heap[0]
            if t > horizon_s and ai >= n_req and stats.in_flight == 0:
                break
            heapq.heappop(heap)
            now = t
            if kind == _READY:
                for inst in obj:
                    if inst.alive:
                        inst.ready = True
                transition_end = None
                dispatch(now)  # the callers held during the transition go ahead
                evaluate(now)  # intent that came meanwhile (arrivals, completions, timers)
                dispatch(now)
            elif kind == _COMPLETE:
                inst, r = obj
                inst.busy -= 1
                if inst.busy == 0:
                    inst.busy_total += now - inst.busy_since
                stats = observe_completion(stats, now)
                dispatch(now)
                evaluate(now)
            elif kind == _DEADLINE:
                if status[obj] == _HELD:
                    status[obj] = _FAILED
                    res.failed += 1
                    waits[obj] = deadline_s
                    stats = observe_completion(stats, now)
                    evaluate(now)
            else:  # timer
                if obj == timer_gen:
                    timer_at = None
                    evaluate(now)
        elif ai < n_req:
            now = next_arrival
            r = ai
            ai += 1
            if not any(i.ready for i in insts):
                res.cold_starts += 1
            stats = observe_arrival(stats, now)
            if admissible():
                status[r] = _ADMITTED
                queue.append(r)
            else:
                held.append(r)
                push(now + deadline_s, _DEADLINE, r)
            dispatch(now)
            evaluate(now)
            dispatch(now)
        else:
            break

    end = max(horizon_s, now)
    for inst, since, gone in leaving:
        gone = min(gone, end)  # billed up to the end of the replay, like the others
        res.teardown_s += gone - since
        retire(inst, gone)
    for inst in insts:
        retire(inst, end)
    res.waits = waits
    return res


# --------------------------------------------------------------------------------------------
# Whole trace
# --------------------------------------------------------------------------------------------


def default_horizon(rows: Iterable[TraceRow]) -> float:
    """The end of the trace: when its last request would finish if served at once
    (``max(arrival_ts + duration_s)``; 0 for no rows). Not rounded: a trace of 1.1 days is
    billed for 1.1 days, not 2. A generated trace of N days ends within about an hour of N
    days (arrivals before N days, requests of up to an hour)."""
    return max((r.arrival_ts + r.duration_s for r in rows), default=0.0)


def run_benchmark(
    rows: Sequence[TraceRow],
    specs: dict[str, ModelSpec],
    *,
    policies: Sequence[str] = POLICIES,
    horizon_s: float | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
    params: PolicyParams = DEFAULT_PARAMS,
    scale_in_s: float = DEFAULT_SCALE_IN_S,
    delete_s: float = DEFAULT_DELETE_S,
) -> BenchmarkResult:
    """Replay the models that appear in ``rows`` through each policy."""
    check_teardown("scale_in_s", scale_in_s)
    check_teardown("delete_s", delete_s)
    per_model: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.model_id not in specs:
            raise KeyError(f"no model spec for {r.model_id!r}")
        per_model.setdefault(r.model_id, []).append((r.arrival_ts, r.duration_s))
    horizon = default_horizon(rows) if horizon_s is None else horizon_s
    model_ids = sorted(per_model)
    results: dict[str, PolicyResult] = {}
    for policy in policies:
        decider_for(policy, params)  # validate the name early
        results[policy] = PolicyResult(
            policy=policy,
            models=[
                simulate_model(
                    specs[m],
                    per_model[m],
                    policy,
                    horizon,
                    deadline_s=deadline_s,
                    params=params,
                    scale_in_s=scale_in_s,
                    delete_s=delete_s,
                )
                for m in model_ids
            ],
        )
    return BenchmarkResult(policies=results, horizon_s=horizon, model_ids=model_ids)


def specs_from_catalog(
    catalog: Any = None,
    *,
    warmup_override: int | None = None,
    concurrency_per_instance: int = DEFAULT_CONCURRENCY,
) -> dict[str, ModelSpec]:
    """ModelSpec per deployable catalog model (``warmup_override`` replaces every warm-up)."""
    if catalog is None:
        from models_catalog.catalog import load_catalog

        catalog = load_catalog()
    specs: dict[str, ModelSpec] = {}
    for model in catalog.deployable_models():
        limits = limits_from_model(model, concurrency_per_instance=concurrency_per_instance)
        if warmup_override is not None:
            limits = limits.model_copy(update={"warmup_time_seconds": int(warmup_override)})
        rate = limits.hourly_rate  # the catalog's billed rate, read by limits_from_model
        specs[model.id] = ModelSpec(
            model_id=model.id, limits=limits, hourly_rate=Decimal(0) if rate is None else rate
        )
    return specs
