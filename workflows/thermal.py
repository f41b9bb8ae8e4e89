"""ModelThermalWorkflow: the single owner of one model's thermal state in one (app, environment).

Handlers only record intent (a new target, a caller waiting, a lease released); one loop in `run`
converges the endpoint to that intent, so transitions are serialized by construction. Each step
is an activity (create model/config/endpoint, wait InService, capacity, delete, record+notify).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.thermal_activities import (
        ERR_ENDPOINT_NO_CAPACITY,
        ERR_UPDATE_ROLLED_BACK,
        MISSING_ENDPOINT_ERRORS,
        NON_RETRYABLE,
        EnsureEndpointInput,
        RecordInput,
        SetCapacityInput,
        ThermalActivities,
        WaitInServiceInput,
    )
    from models_catalog import thermal_policy as policy
    from models_catalog.types import ThermalState
    from workflows import search_attributes as sa
    from workflows.thermal_types import (
        ERR_MODEL_OFF,
        ERR_WARMUP_DEADLINE,
        ERR_WARMUP_FAILED,
        CapacityBackoff,
        Lease,
        ModelThermalInput,
        ModelThermalSpec,
        ReleaseRequest,
        SetTargetRequest,
        ThermalSnapshot,
        ThermalStatus,
        WarmUpRequest,
        model_off_message,
        thermal_workflow_id,
    )

DEFAULT_WARMUP_DEADLINE = 45 * 60.0  # an endpoint can sit in Creating for 35+ minutes
STEP_TIMEOUT = timedelta(minutes=5)
STEP_HEARTBEAT = timedelta(seconds=15)  # backend steps heartbeat; a dead worker is seen fast
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE,
)

#: Workflow versioning (``workflow.patched``): runs started before AUTOMATIC priced its cold
#: starts replay with the policy they were recorded with (no hourly rate, penalty 0.8 x
#: keep-alive); a run that reaches continue-as-new starts the next one on the priced policy.
PRICED_COLD_START_PATCH = "priced-cold-start"
UNPRICED_POLICY_PARAMS = policy.PolicyParams(penalty_factor=0.8, multiplicity_with_lead=True)
#: New runs count a cold start's followers within the warm-up only, at penalty 1.1 x keep-alive;
#: priced runs started before this patch replay as recorded (warm-up + pre-warm lead, 0.9).
MULTIPLICITY_WITHIN_WARMUP_PATCH = "multiplicity-within-warmup"
LEAD_WINDOW_POLICY_PARAMS = policy.PolicyParams(penalty_factor=0.9, multiplicity_with_lead=True)
#: A lease taken again under the same id is renewed (long jobs renew theirs); before, ignored.
LEASE_RENEWAL_PATCH = "lease-renewal"
#: After a fresh create the capacity step also runs when autoscaling can move the count, so
#: SageMaker gets its scalable target (it can only be registered once the endpoint exists).
AUTOSCALING_AFTER_CREATE_PATCH = "autoscaling-after-create"
#: A failed create also deletes the model and endpoint config it may have left behind.
CLEANUP_HALF_MADE_PATCH = "cleanup-half-made"
#: A failed scale of an endpoint that still serves is retried with backoff, not blocked.
CAPACITY_BACKOFF_PATCH = "capacity-backoff"
STILL_STARTING = "thermal workflow is still starting"  # the status query before the first load
#: A failed transition is recorded before waiting callers hear of it; before, after.
RECORD_BEFORE_FAILURE_PATCH = "record-before-failure"
#: Continue-as-new waited for every handler, but a target change or warm-up that arrived
#: during the last transition finishes only once converged: the run hung. Now it converges
#: first (asked only when such intent is pending at that point).
PENDING_INTENT_PATCH = "converge-pending-intent-before-continue-as-new"
#: A failed transition blocks only its own generation: a target set while it ran is still
#: tried, and its caller is not failed with the earlier target's error (asked on failure).
FAILED_GENERATION_PATCH = "block-the-failed-generation-only"
#: AUTOMATIC's in-flight count is the leases held: a warm-up without a lease (CLI, LLM
#: pre-warm) never releases, and its arrival left the count stuck above 0, so no idle gap
#: was learnt again (asked on each arrival).
IN_FLIGHT_FROM_LEASES_PATCH = "in-flight-from-leases"
#: A backend call that fails while a failed transition is cleaned up (e.g. AccessDenied on
#: DescribeEndpoint) failed the whole workflow, leaving the mirror `transitioning`; now the
#: transition is recorded failed with both reasons (asked only when that happens).
CLEANUP_ERROR_PATCH = "failed-cleanup-recorded"
#: A model's workflow lives for months: it continues as new after this many events even
#: when the server does not suggest it yet (it does at ~4K). A worker restart replays the
#: whole history, ~5 ms an event on 2 cores: 1,500 events took 8 s of the 10 s task timeout.
DEFAULT_MAX_HISTORY_EVENTS = 1000
SHORT_HISTORY_PATCH = "continue-as-new-at-1000-events"
#: The reconcile's `recount` signal (SageMaker's autoscaler moved the count) is heeded: gated,
#: since a worker without the handler buffers the signal and records nothing for it.
RECOUNT_SIGNAL_PATCH = "recount-autoscaled-count"
#: A re-read of the backend that changed what runs is recorded even when nothing else changes
#: (a blocked model, or one whose count already suits): before, Postgres kept the old count and
#: its uptime billed that (asked only when that happens).
REFRESH_RECORDED_PATCH = "refresh-recorded"
#: An endpoint that went Failed while Creating because SageMaker had no instances of the type
#: is deleted and created again after a backoff, as a failed scale-out is retried; before, the
#: model was blocked until new intent came, so a WARM/HOT target stayed unmet (asked only then).
CREATE_CAPACITY_BACKOFF_PATCH = "create-capacity-backoff"
#: A capacity change that fails after new intent arrived (an admin turned the model OFF while
#: the scale-out was retrying) backs off for the intent that failed: the new one goes ahead at
#: once and its caller is not answered with the old one's error. Before, the backoff held the
#: new target until the retry time (asked only when new intent came meanwhile).
BACKOFF_OF_FAILED_INTENT_PATCH = "backoff-of-the-failed-intent"
#: The model's spec (image, instance type, limits, price) is read from the catalog again before
#: each create: a catalog change deployed with the workers applies at the next create. Before,
#: a run kept the spec it started with until it continued as new (1,000 events: weeks).
SPEC_BEFORE_CREATE_PATCH = "spec-read-before-create"
#: A release of a lease the model does not hold (a job whose hold was refused or cancelled
#: before it reached the model, a release sent twice) is no completion for AUTOMATIC's
#: statistics. Before, it counted one and restarted the idle period (asked only then).
RELEASE_OF_HELD_LEASE_PATCH = "release-of-a-held-lease-only"
#: A resync that reads the endpoint Deleting (SageMaker takes minutes; the model's own scale to
#: zero may have just asked it) takes it as gone, like the reconcile does. Before, it recorded
#: the departing instances and scaled to zero again: a second delete, a second went_cold and
#: an uptime interval reopened (asked only when the endpoint is Deleting).
REFRESH_DELETING_PATCH = "refresh-deleting-is-gone"
#: The same at a first run's start: an endpoint found Deleting is gone, not instances to adopt
#: (and, COLD or OFF, to delete a second time; asked only when the endpoint is Deleting).
START_DELETING_PATCH = "start-deleting-is-gone"
#: A warm-up waits for InService on the endpoint config it asked for: an update SageMaker
#: failed and rolled back (InService on the old config, a FailureReason) is told (a `failed`
#: record and notification) before the old config serves as ready. Before, nobody heard of it
#: and the catalog's change never applied, silently (asked at each wait of a warm-up whose
#: ensure named its config).
WAIT_FOR_ASKED_CONFIG_PATCH = "wait-for-the-asked-config"
#: A COLD model's idle period starts again when its warm-up reaches ready: a create that took
#: longer than the idle time otherwise ended it already, and the model was deleted at once, as
#: its caller was answered. Before, it ran from the caller's arrival (asked at each COLD ready).
IDLE_FROM_READY_PATCH = "idle-from-ready"
#: A capacity step after a fresh create that fails (autoscaling not registered) is owed until
#: one succeeds: the retry after the backoff runs it. Before, the retry found the count right,
#: did nothing and cleared the error (asked only when that step fails).
AUTOSCALING_OWED_AFTER_CREATE_PATCH = "autoscaling-owed-after-create"
#: Waiting for handlers to finish before continue-as-new still wakes at the next timer (a
#: backoff's retry, idle or lease expiry): a warm-up waiting on a create backing off was
#: otherwise never retried. Before, that wait ran no timer (asked only when one is due).
DRAIN_TIMERS_PATCH = "timers-before-continue-as-new"
#: A caller of a model that serves is answered while the workflow changes its capacity (the
#: change's start is recorded first; SageMaker serves an endpoint that is Updating, for
#: minutes). Before, it was held until the scale-out or scale-in ended (asked at each change).
SERVE_DURING_CAPACITY_CHANGE_PATCH = "serve-during-capacity-change"
DEFAULT_CAPACITY_RETRY_S = 30.0
#: Statuses in which an endpoint answers requests (SageMaker serves during an update).
SERVING_STATUSES = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})
CAPACITY_ATTEMPTS = 4  # tries of one capacity change before it counts as failed

OFF, COLD, WARM, HOT, AUTOMATIC = (
    ThermalState.OFF,
    ThermalState.COLD,
    ThermalState.WARM,
    ThermalState.HOT,
    ThermalState.AUTOMATIC,
)


def _reason(err: ActivityError) -> str:
    """What a failed activity says (its ApplicationError's message)."""
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)


@workflow.defn
class ModelThermalWorkflow:
    @workflow.init
    def __init__(self, inp: ModelThermalInput) -> None:
        self.inp = inp
        self.spec: ModelThermalSpec | None = None
        self.s: ThermalSnapshot | None = inp.snapshot
        self.waiters = 0  # callers currently blocked in warm_up
        self.blocked = False  # a transition failed; wait for new intent before trying again
        # The generation whose transition failed (FAILED_GENERATION_PATCH; None: any failure
        # blocks and fails every waiter, as before). Carried across continue-as-new.
        self.blocked_generation: int | None = None
        # The generation of the latest failure, transition or capacity change (set once a
        # failed transition engaged FAILED_GENERATION_PATCH): waiters compare against it.
        self.failure_generation: int | None = None
        if inp.snapshot is not None and inp.snapshot.failed_generation == inp.snapshot.generation:
            self.blocked, self.blocked_generation = True, inp.snapshot.failed_generation
        self.failures = 0  # bumped on every failed transition; waiters compare against it
        # Re-read the endpoint from the backend before converging. A resync that arrived
        # during the last transition before continue-as-new is carried, or the drift it
        # reported would wait for the next reconcile.
        self.refresh = inp.snapshot is not None and inp.snapshot.refresh
        # The reconcile saw the autoscaler move the count: re-read it. Carried like a resync.
        self.recount_due = inp.snapshot is not None and inp.snapshot.recount
        self.recorded = inp.snapshot is not None  # a fresh workflow writes its first row at once
        # The count was read from the backend since the last record (news for its uptime
        # interval, not a count carried from before).
        self.observed = False
        self.fatal: ApplicationError | None = None  # the model cannot be managed at all
        self.converging = False  # a transition (and its Postgres record) is under way
        # ... and it is a capacity change of a fleet that serves, its start recorded: callers
        # of a ready model need not wait for it (SERVE_DURING_CAPACITY_CHANGE_PATCH)
        self.serving_change = False
        self.missing_retries = 0  # converges retried because the endpoint had vanished
        self.priced = True  # AUTOMATIC prices cold starts (set in run: PRICED_COLD_START_PATCH)
        self.warmup_window = True  # followers within warm-up (MULTIPLICITY_WITHIN_WARMUP_PATCH)
        self.capacity_failures = 0  # consecutive failed capacity changes (or creates: no capacity)
        self.capacity_retry_at: float | None = None  # no retry of that change before then
        self.backoff_generation = 0  # the intent that failed; new intent ends the backoff
        self.backoff_desired: int | None = None  # the count that failed: held until retry
        self.backoff_create = False  # the backoff is of a create (nothing serves meanwhile)
        # A rolled-back update deregistered the old fleet's autoscaling: the capacity step is
        # owed even when the count is right (WAIT_FOR_ASKED_CONFIG_PATCH runs only).
        self.autoscaling_owed = inp.snapshot is not None and inp.snapshot.autoscaling_owed
        # Why the old config serves: kept as last_error (carried: a backoff may span runs).
        self.rollback_note = inp.snapshot.rollback_note if inp.snapshot is not None else None
        if inp.snapshot is not None and (held := inp.snapshot.capacity_backoff) is not None:
            self.capacity_failures, self.capacity_retry_at = held.failures, held.retry_at
            self.backoff_generation, self.backoff_desired = held.generation, held.desired
            self.backoff_create = held.create
            inp.snapshot.capacity_backoff = None  # carried in the fields above from here on

    # ---------------------------------------------------------------- run loop
    @workflow.run
    async def run(self, inp: ModelThermalInput) -> None:
        self.priced = workflow.patched(PRICED_COLD_START_PATCH)
        self.warmup_window = workflow.patched(MULTIPLICITY_WITHIN_WARMUP_PATCH)
        try:
            self.spec = await self._read_spec()
        except ActivityError as err:
            # Unknown or non-deployable model: tell every waiting caller why, then fail.
            cause = err.cause
            self.fatal = (
                cause if isinstance(cause, ApplicationError) else ApplicationError(str(err))
            )
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise ApplicationError(
                self.fatal.message, type=self.fatal.type, non_retryable=True
            ) from None
        if self.s is None:
            self.s = await self._initial_snapshot()
        workflow.upsert_search_attributes(
            [
                sa.APP.value_set(inp.app_id),
                sa.ENVIRONMENT.value_set(inp.environment),
                sa.MODEL.value_set(inp.model_id),
                sa.THERMAL_STATE.value_set(self.s.current_state.value),
            ]
        )
        while True:
            try:
                await workflow.wait_condition(self._has_work, timeout=self._next_timer())
            except TimeoutError:
                pass  # a timer (idle, lease expiry, pre-warm) fired: re-evaluate below
            await self._converge()
            if self._should_continue_as_new() or (
                self._history_long() and workflow.patched(SHORT_HISTORY_PATCH)
            ):

                def quiet() -> bool:
                    return workflow.all_handlers_finished() and self.waiters == 0

                await self._drain(quiet)
                if not quiet():
                    if workflow.patched(PENDING_INTENT_PATCH):
                        continue  # converge it: its handler finishes, then continue as new
                    await workflow.wait_condition(quiet)
                workflow.continue_as_new(
                    ModelThermalInput(
                        app_id=inp.app_id,
                        environment=inp.environment,
                        model_id=inp.model_id,
                        timings=inp.timings,
                        snapshot=self.s.model_copy(
                            update={
                                "capacity_backoff": self._backoff_to_carry(),
                                "refresh": self.refresh,
                                "autoscaling_owed": self.autoscaling_owed,
                                "recount": self.recount_due,
                                "rollback_note": self.rollback_note,
                                # still blocked: the next run does not retry it on its own
                                "failed_generation": self.s.generation
                                if self._is_blocked() and self.blocked_generation is not None
                                else -1,
                            }
                        ),
                    )
                )

    async def _drain(self, quiet: Callable[[], bool]) -> None:
        """Wait until no handler runs, or intent arrives (its handler finishes once converged).
        A timer (a backoff's retry, idle or lease expiry) can make intent by itself: wake then."""

        def drained() -> bool:
            return quiet() or self._has_intent()

        while True:
            # Always awaited, even when drained already: handlers run at that yield first.
            timer = None if drained() else self._next_timer()
            if timer is None or not workflow.patched(DRAIN_TIMERS_PATCH):
                await workflow.wait_condition(drained)
                return
            try:
                await workflow.wait_condition(drained, timeout=timer)
                return
            except TimeoutError:
                pass  # a timer fired: is there intent now?

    async def _read_spec(self) -> ModelThermalSpec:
        """The model's spec as the worker's catalog has it now."""
        return await workflow.execute_activity_method(
            ThermalActivities.describe_model,
            RecordInput.key(self.inp.app_id, self.inp.environment, self.inp.model_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )

    async def _initial_snapshot(self) -> ThermalSnapshot:
        """First run: resume the recorded target (if any) and adopt what really runs."""
        assert self.spec is not None
        recorded = await workflow.execute_activity_method(
            ThermalActivities.load_recorded_target,
            RecordInput.key(self.inp.app_id, self.inp.environment, self.inp.model_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )
        info = await self._describe_present(START_DELETING_PATCH)
        count = info.instance_count if info else 0
        target = recorded or self.spec.default_state
        return ThermalSnapshot(
            target_state=target,
            current_state=target if count == 0 or target != OFF else COLD,
            instance_count=count,
            endpoint_status=info.status if info else None,
            traffic=policy.TrafficStats(),
            generation=1,  # the initial target still has to be applied
        )

    # ---------------------------------------------------------------- intent
    def _now_s(self) -> float:
        return workflow.now().timestamp()

    def _idle_seconds(self) -> float:
        assert self.spec is not None
        if self.inp.timings.idle_seconds is not None:
            return self.inp.timings.idle_seconds
        return self.spec.scale_to_zero_after_minutes * 60.0

    def _active_leases(self) -> list[Lease]:
        assert self.s is not None
        now = workflow.now()
        return [lease for lease in self.s.leases if lease.expires_at > now]

    def _limits(self) -> policy.ThermalLimits:
        assert self.spec is not None
        return policy.ThermalLimits(
            scale_to_zero_after_minutes=self.spec.scale_to_zero_after_minutes,
            warmup_time_seconds=self.spec.warmup_time_seconds,
            min_instances=self.spec.min_instances,
            max_instances=self.spec.max_instances,
            # the catalog's pricing.hourly_rate (runs from before the patch ignore prices)
            hourly_rate=self.spec.billed_hourly if self.priced else None,
        )

    def _policy_params(self) -> policy.PolicyParams:
        """AUTOMATIC's parameters for the policy version this run was started on."""
        if not self.priced:
            return UNPRICED_POLICY_PARAMS
        return policy.DEFAULT_PARAMS if self.warmup_window else LEAD_WINDOW_POLICY_PARAMS

    def _automatic(self) -> policy.Decision:
        """The AUTOMATIC policy's decision now, with the parameters this run was started on."""
        assert self.s is not None
        return policy.automatic_decision(
            self.s.traffic,
            self._limits(),
            self._now_s(),
            self.s.instance_count,
            in_flight=len(self._active_leases()),
            params=self._policy_params(),
        )

    def _desired(self) -> int:
        """Instances the model should run now, from target, callers and (AUTOMATIC) the policy."""
        assert self.s is not None and self.spec is not None
        target = self.s.target_state
        if target == OFF:
            return 0
        in_flight = len(self._active_leases())
        demand = self.waiters > 0 or in_flight > 0
        if target in (WARM, HOT):
            return self._autoscaled() or policy.capacity_for_state(target, self._limits()).desired
        if target == COLD:
            if demand:
                return max(1, self.s.instance_count)
            if self.s.instance_count > 0 and self._idle_deadline() > self._now_s():
                return self.s.instance_count
            return 0
        desired = max(self._automatic().desired_instances, 1 if demand else 0)
        return max(desired, self._autoscaled() or 0) if desired > 0 else 0

    def _autoscaled(self) -> int | None:
        """The count SageMaker's autoscaler chose, while it still runs, no new target or
        resync came since and the model's limits still allow it (the catalog may have changed
        them): WARM, HOT and a serving AUTOMATIC keep it (COLD keeps any count)."""
        assert self.s is not None
        s = self.s
        if s.autoscaled_generation != s.generation or s.autoscaled_count != s.instance_count:
            return None
        return s.autoscaled_count if self._autoscalable(s.autoscaled_count) else None

    def _autoscalable(self, count: int) -> bool:
        """Within the bounds this target registers with SageMaker's autoscaler."""
        assert self.s is not None
        low, high = policy.autoscaling_bounds(self.s.target_state, self._limits(), 1)
        return max(low, 1) <= count <= high

    def _idle_deadline(self) -> float:
        assert self.s is not None
        last = self.s.last_activity_at.timestamp() if self.s.last_activity_at else 0.0
        return last + self._idle_seconds()

    def _ready(self) -> bool:
        assert self.s is not None
        return self.s.instance_count > 0 and self.s.endpoint_status == "InService"

    def _has_work(self) -> bool:
        if self.s is None or self.spec is None:
            return False
        return self._should_continue_as_new() or self._has_intent()

    def _has_intent(self) -> bool:
        """Work besides continue-as-new: a target, caller or timer the state does not meet."""
        assert self.s is not None
        if self.refresh or self.recount_due:
            return True
        if self._is_blocked():
            return False
        desired = self._desired()
        if self._holding_scale_out(desired):
            return False
        if self.s.generation != self.s.applied_generation:
            return True
        return desired != self.s.instance_count or (desired > 0 and not self._ready())

    def _is_blocked(self) -> bool:
        """A transition failed and no newer intent arrived since (FAILED_GENERATION_PATCH:
        a target set while the failing transition ran is newer intent)."""
        assert self.s is not None
        if not self.blocked:
            return False
        return self.blocked_generation is None or self.blocked_generation == self.s.generation

    def _failed_for(self, generation: int) -> bool:
        """Whether the failure a waiter of `generation` heard of is its own, not that of an
        older target (before the patch, and in a run without a failed transition yet: any
        failure answered every waiter)."""
        return self.failure_generation is None or self.failure_generation >= generation

    def _backoff_to_carry(self) -> CapacityBackoff | None:
        """The capacity backoff under way, for the next run (its delay keeps doubling)."""
        if self.capacity_retry_at is None:
            return None
        return CapacityBackoff(
            failures=self.capacity_failures,
            retry_at=self.capacity_retry_at,
            generation=self.backoff_generation,
            desired=self.backoff_desired,
            create=self.backoff_create,
        )

    def _holding_scale_out(self, desired: int) -> bool:
        """A capacity change failed: serve with what runs until the retry time (new intent
        and another count go ahead; the same count waits, so a failing change cannot spin).
        A create that found no capacity waits the same way, with nothing serving."""
        assert self.s is not None
        return (
            self.capacity_retry_at is not None
            and self._now_s() < self.capacity_retry_at
            and self.s.generation == self.backoff_generation
            and desired == self.backoff_desired
            and (self._ready() or (self.backoff_create and self.s.instance_count == 0))
        )

    def _next_timer(self) -> timedelta | None:
        """When the intent may change by itself: idle expiry, lease expiry, AUTOMATIC timers."""
        assert self.s is not None
        now = self._now_s()
        candidates: list[float] = [lease.expires_at.timestamp() for lease in self.s.leases]
        if self.capacity_retry_at is not None:
            candidates.append(self.capacity_retry_at)
        if self.s.instance_count > 0 and self.s.target_state == COLD:
            candidates.append(self._idle_deadline())
        if self.s.target_state == AUTOMATIC:
            nxt = self._automatic().next_evaluation_at(now)
            if nxt is not None:
                candidates.append(nxt)
        future = [t - now for t in candidates if t > now]
        if not future:
            return None
        return timedelta(seconds=max(0.05, min(future)))

    # ---------------------------------------------------------------- converge
    async def _converge(self) -> None:
        self.converging = True
        try:
            await self._converge_once()
        finally:
            self.converging = False

    async def _converge_once(self) -> None:
        assert self.s is not None and self.spec is not None
        now = workflow.now()
        self.s.leases = [lease for lease in self.s.leases if lease.expires_at > now]
        refreshed, unrecorded = self.refresh, False
        if self.refresh:  # the reconcile saw drift: believe the backend, not our snapshot
            self.refresh = False
            seen = self._status(as_recorded_before=True)
            info = await self._describe_present(REFRESH_DELETING_PATCH)
            self._observe(info.instance_count if info else 0, info.status if info else None)
            unrecorded = self._status(as_recorded_before=True) != seen
        if self.recount_due:
            self.recount_due = False
            if await self._adopt_autoscaled_count():
                unrecorded = False
            if self._is_blocked() and not refreshed:
                return  # a failed transition waits for new intent, not for the autoscaler
        if self.blocked and self.s.generation == self.s.applied_generation:
            if unrecorded and workflow.patched(REFRESH_RECORDED_PATCH):
                await self._record(None)
            return
        before = self._status(as_recorded_before=True)
        generation = self.s.generation
        desired = self._desired()
        if self._holding_scale_out(desired):  # another timer fired during the backoff
            return
        try:
            if desired > 0 and self.s.instance_count == 0:  # a create (or an adopted one)
                if workflow.patched(SPEC_BEFORE_CREATE_PATCH):
                    self.spec = await self._read_spec()  # the catalog may have changed since
                    # Its limits too; and intent may have changed meanwhile (OFF, callers
                    # left): what is tried (and fails, if it does) is the intent of now.
                    generation, desired = self.s.generation, self._desired()
            if desired == 0:
                if self.s.instance_count > 0 or self.s.endpoint_status is not None:
                    await self._scale_to_zero()
            elif self.s.instance_count == 0 or self.s.endpoint_status != "InService":
                await self._warm_up(desired)
            elif desired != self.s.instance_count or self.autoscaling_owed:
                await self._set_capacity(desired)
            self.s.current_state = self.s.target_state
            self.s.last_error, self.rollback_note = self.rollback_note, None
            self.blocked = False
            self.capacity_failures, self.capacity_retry_at = 0, None
            self.backoff_create = False
            self.s.applied_generation = max(self.s.applied_generation, generation)
            if (
                self._status(as_recorded_before=True) != before
                or not self.recorded
                or (unrecorded and workflow.patched(REFRESH_RECORDED_PATCH))
            ):
                await self._record(None)  # waiters wake after this: they wait for `converging`
        except ActivityError as err:
            cause = err.cause
            missing = isinstance(cause, ApplicationError) and cause.type in MISSING_ENDPOINT_ERRORS
            if missing and self.missing_retries < 3:
                # Drift (the endpoint vanished behind our back): re-read the backend and
                # converge again instead of failing the callers.
                self.missing_retries += 1
                self.refresh = True
                self.s.transitioning = False
                self.rollback_note = None  # the fleet it spoke of is gone
                return
            # A fleet that serves on keeps the rollback note (its old config still serves;
            # `_capacity_failed` shows both); any other failure's error is the one to show.
            if desired > 0 and await self._still_serving(err, generation, desired):
                return
            self.rollback_note = None
            no_capacity = isinstance(cause, ApplicationError) and (
                cause.type == ERR_ENDPOINT_NO_CAPACITY
            )
            if (
                no_capacity
                and workflow.patched(CREATE_CAPACITY_BACKOFF_PATCH)
                and await self._create_backs_off(err, generation, desired)
            ):
                return
            await self._fail(err, generation)
            return
        except _CapacityShortfall as short:
            await self._capacity_failed(str(short), generation, desired)
            return
        self.missing_retries = 0

    async def _adopt_autoscaled_count(self) -> bool:
        """Take the count SageMaker's autoscaler moved the endpoint to, within the bounds
        registered, as this target's (recorded: its uptime interval bills what runs) instead
        of scaling it back. Outside the bounds it is drift: the reconcile resyncs that. A blocked
        model only records what runs (it bills that), whatever the count. True: recorded."""
        assert self.s is not None
        s = self.s
        blocked = self._is_blocked()
        if not blocked and (s.generation != s.applied_generation or not self._ready()):
            return False  # a change of ours is due: it sets the count itself
        info = await self._describe()
        if info is None or info.status != "InService" or info.instance_count == s.instance_count:
            return False
        if not blocked and not self._autoscalable(info.instance_count):
            return False
        if not blocked:
            s.autoscaled_count, s.autoscaled_generation = info.instance_count, s.generation
        self._observe(info.instance_count, info.status)
        await self._record(None)
        return True

    async def _warm_up(self, desired: int) -> None:
        assert self.s is not None and self.spec is not None
        self.s.transitioning = True
        await self._record("warmup_started")
        capacity = self._autoscaling_bounds(desired)
        info = await workflow.execute_activity_method(
            ThermalActivities.ensure_endpoint,
            EnsureEndpointInput(spec=self.spec, instance_count=desired, **capacity),
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=STEP_HEARTBEAT,
            retry_policy=STEP_RETRY,
        )
        self.s.endpoint_status = info.status
        rolled_back = False
        try:
            info = await self._wait_in_service(info.config_name, info.failure_reason)
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == ERR_UPDATE_ROLLED_BACK):
                raise
            # The old config serves: callers are served by it. Operators hear of the failed
            # update; the capacity step gives the old fleet its autoscaling back (the update
            # deregistered it) and removes the failed config.
            self.s.last_error = (
                f"{_reason(err)}; the previous config serves on, and the change applies at the "
                "next create"
            )
            await self._record("failed")
            self.autoscaling_owed = True  # until a capacity step succeeds (this one may fail)
            self.rollback_note = self.s.last_error  # before the call: it may fail too
            info = await self._capacity_call(desired)
            rolled_back = True
        scales = capacity["max_instances"] > capacity["min_instances"]
        if not rolled_back and (
            info.instance_count != desired
            or (scales and workflow.patched(AUTOSCALING_AFTER_CREATE_PATCH))
        ):
            try:
                info = await self._capacity_call(desired)
            except ActivityError:
                # The fleet serves without its scalable target: the retry must register it
                # even though the count is right (as after a rolled-back update).
                if scales and workflow.patched(AUTOSCALING_OWED_AFTER_CREATE_PATCH):
                    self.autoscaling_owed = True
                raise
        self._observe(info.instance_count, info.status)
        if not rolled_back:  # the new config serves: it bills at the spec it was made with
            self.s.billed_instance_type = self.spec.instance_type
            self.s.billed_hourly = self.spec.billed_hourly
        self.s.transitioning = False
        self.s.current_state = self.s.target_state
        if self.s.target_state == COLD and workflow.patched(IDLE_FROM_READY_PATCH):
            # The create may have outlasted the idle time counted from the caller's arrival.
            self.s.last_activity_at = workflow.now()
        await self._record("ready")

    async def _set_capacity(self, desired: int) -> None:
        assert self.s is not None
        self.s.transitioning = True
        await self._record(None)
        self.serving_change = workflow.patched(SERVE_DURING_CAPACITY_CHANGE_PATCH)
        try:
            info = await self._capacity_call(desired)
        finally:
            self.serving_change = False
        self._observe(info.instance_count, info.status)
        self.s.transitioning = False
        if (
            info.status == "InService"
            and info.instance_count < desired
            and workflow.patched(CAPACITY_BACKOFF_PATCH)
        ):
            # SageMaker rolls a failed scale-out back to InService at the old count.
            reason = info.failure_reason or "the backend rolled it back"
            raise _CapacityShortfall(
                f"scaling {self.inp.model_id} to {desired} instances left "
                f"{info.instance_count}: {reason}"
            )

    async def _capacity_call(self, desired: int):  # type: ignore[no-untyped-def]
        assert self.spec is not None
        await workflow.execute_activity_method(
            ThermalActivities.set_capacity,
            SetCapacityInput(
                endpoint_name=self.spec.endpoint_name,
                instance_count=desired,
                **self._autoscaling_bounds(desired),
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=STEP_HEARTBEAT,
            retry_policy=self._capacity_retry(),
        )
        info = await self._wait_in_service()
        self.autoscaling_owed = False  # registered with the capacity
        return info

    def _capacity_retry(self) -> RetryPolicy:
        """Bounded tries: the failure is then handled as a whole (with backoff, or on runs
        from before the backoff as a failed step), never retried forever. A retry policy is
        not part of replay, so older runs take it too."""
        # Runs since the backoff recorded its marker here, at their first capacity call: the
        # call stays so that they replay (its answer no longer matters).
        workflow.patched(CAPACITY_BACKOFF_PATCH)
        first = min(1.0, self.inp.timings.poll_seconds)
        return RetryPolicy(
            initial_interval=timedelta(seconds=first),
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=CAPACITY_ATTEMPTS,
            non_retryable_error_types=NON_RETRYABLE,
        )

    async def _still_serving(self, err: ActivityError, generation: int, desired: int) -> bool:
        """A failed step while the endpoint still serves (a scale that did not happen): keep
        serving, record the error, retry after a backoff instead of blocking."""
        assert self.s is not None
        if not workflow.patched(CAPACITY_BACKOFF_PATCH):
            return False
        try:
            info = await self._describe()
        except ActivityError:
            if not workflow.patched(CLEANUP_ERROR_PATCH):
                raise
            return False  # unknown: the failure path records it
        # Updating counts: SageMaker's own autoscaler may be changing it (InvalidEndpointState).
        if info is None or info.status not in SERVING_STATUSES or info.instance_count < 1:
            return False
        self._observe(info.instance_count, info.status)
        await self._capacity_failed(_reason(err), generation, desired)
        return True

    async def _create_backs_off(self, err: ActivityError, generation: int, desired: int) -> bool:
        """A create that found no capacity: delete the Failed endpoint (SageMaker allows
        nothing else) and try again after a backoff. False: the cleanup failed, so what runs
        is unknown and the failure path records both reasons."""
        try:
            await self._clean_up_after_failure()
        except ActivityError:
            return False
        await self._capacity_failed(_reason(err), generation, desired, create=True)
        return True

    async def _capacity_failed(
        self, message: str, generation: int, desired: int, *, create: bool = False
    ) -> None:
        """Back off before trying the change that failed (`generation`, `desired`) again."""
        assert self.s is not None and self.spec is not None
        self.backoff_create = create
        self.capacity_failures += 1
        base = self.inp.timings.capacity_retry_seconds or DEFAULT_CAPACITY_RETRY_S
        delay = base * 2 ** min(self.capacity_failures - 1, 5)
        self.capacity_retry_at = self._now_s() + delay
        if create or (
            generation != self.s.generation and workflow.patched(BACKOFF_OF_FAILED_INTENT_PATCH)
        ):
            # Only the intent that failed waits (and only its callers hear of the failure).
            self.backoff_generation, self.backoff_desired = generation, desired
            self.failure_generation = generation
        else:  # runs from before: the intent current now, whatever came meanwhile
            self.backoff_generation = self.s.generation
            self.backoff_desired = self._desired()
            if self.failure_generation is not None:
                self.failure_generation = self.s.generation
        workflow.logger.warning("capacity change of %s failed: %s", self.spec.model_id, message)
        wanted = "" if self.s.target_state in (WARM, HOT) else " if still wanted"
        # A create starts afresh; a fleet that serves on after a rollback keeps saying why.
        if create:
            self.rollback_note = None
        kept = f"; {self.rollback_note}" if self.rollback_note else ""
        self.s.last_error = f"{message} (retrying in {delay:.0f}s{wanted}){kept}"
        self.s.transitioning = False
        await self._record("failed")
        self.failures += 1  # callers waiting on this change hear of it; the endpoint serves

    def _autoscaling_bounds(self, desired: int) -> dict[str, int]:
        """Autoscaling min/max registered with the endpoint (DESIGN 3: WARM/HOT keep a floor)."""
        assert self.s is not None
        low, high = policy.autoscaling_bounds(self.s.target_state, self._limits(), desired)
        return {"min_instances": low, "max_instances": high}

    async def _scale_to_zero(self) -> None:
        assert self.s is not None and self.spec is not None
        self.s.transitioning = True
        await self._record(None)
        await workflow.execute_activity_method(
            ThermalActivities.delete_endpoint,
            self.spec.endpoint_name,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=STEP_HEARTBEAT,
            retry_policy=STEP_RETRY,
        )
        self._observe(0, None)
        self.autoscaling_owed = False  # no fleet left to register
        self.s.transitioning = False
        self.s.current_state = self.s.target_state
        await self._record("went_cold" if self.s.target_state != OFF else "turned_off")

    async def _wait_in_service(  # type: ignore[no-untyped-def]
        self, config: str | None = None, stale_reason: str | None = None
    ):
        """Poll until InService (on `config`, the one a warm-up asked for, when given): the
        activity fails (benign) while not ready and Temporal retries it every poll interval,
        so a 30-minute Creating adds no history and holds no worker slot."""
        assert self.spec is not None
        poll = timedelta(seconds=self.inp.timings.poll_seconds)
        deadline = self.inp.timings.warmup_deadline_seconds or DEFAULT_WARMUP_DEADLINE
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "schedule_to_close_timeout": timedelta(seconds=deadline),
            "retry_policy": RetryPolicy(
                initial_interval=poll,
                backoff_coefficient=1.0,
                maximum_interval=poll,
                non_retryable_error_types=NON_RETRYABLE,
            ),
        }
        if config is not None and workflow.patched(WAIT_FOR_ASKED_CONFIG_PATCH):
            return await workflow.execute_activity_method(
                ThermalActivities.wait_in_service_on_config,
                WaitInServiceInput(
                    endpoint_name=self.spec.endpoint_name,
                    config_name=config,
                    stale_reason=stale_reason,
                ),
                **options,
            )
        return await workflow.execute_activity_method(
            ThermalActivities.wait_in_service, self.spec.endpoint_name, **options
        )

    async def _describe_present(self, patch: str):  # type: ignore[no-untyped-def]
        """The endpoint, None when it is Deleting (on its way out: nothing to adopt or delete
        again), as the reconcile sees it; `patch`: the call site's (asked only then)."""
        info = await self._describe()
        if info is not None and info.status == "Deleting" and workflow.patched(patch):
            return None
        return info

    async def _describe(self):  # type: ignore[no-untyped-def]
        assert self.spec is not None
        return await workflow.execute_activity_method(
            ThermalActivities.describe_endpoint,
            self.spec.endpoint_name,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )

    async def _fail(self, err: ActivityError, generation: int) -> None:
        """Leave a true recorded state: nothing half-made, the error kept for queries and users."""
        assert self.s is not None and self.spec is not None
        message = _reason(err)
        workflow.logger.warning("thermal transition failed for %s: %s", self.spec.model_id, message)
        self.s.last_error = message
        try:
            await self._clean_up_after_failure()
        except ActivityError as cleanup:
            if not workflow.patched(CLEANUP_ERROR_PATCH):
                raise
            # What runs is unknown now: keep the last known state; the reconcile re-reads it.
            self.s.last_error = f"{message}; cleaning up failed too: {_reason(cleanup)}"
        self.s.transitioning = False
        self.blocked = True
        if workflow.patched(FAILED_GENERATION_PATCH):
            self.blocked_generation = self.failure_generation = generation
        # After the record: a caller that hears of it finds it in Postgres. Histories from
        # before answered waiting callers first (their update completed before the record).
        recorded_first = workflow.patched(RECORD_BEFORE_FAILURE_PATCH)
        if not recorded_first:
            self.failures += 1
        await self._record("failed")
        if recorded_first:
            self.failures += 1

    async def _clean_up_after_failure(self) -> None:
        """Nothing half-made left: delete an endpoint that never served (or is Failed)."""
        assert self.s is not None and self.spec is not None
        info = await self._describe()
        half_made = info is None and self.s.instance_count == 0
        if half_made and workflow.patched(CLEANUP_HALF_MADE_PATCH):
            # A create that failed before the endpoint existed may leave its model and
            # endpoint config: delete removes them (and is a no-op when there are none).
            await workflow.execute_activity_method(
                ThermalActivities.delete_endpoint,
                self.spec.endpoint_name,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        if info is not None and (info.status == "Failed" or self.s.instance_count == 0):
            # A half-made endpoint (or a Failed one: delete is the only allowed operation).
            await workflow.execute_activity_method(
                ThermalActivities.delete_endpoint,
                self.spec.endpoint_name,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
            info = None
            self.autoscaling_owed = False  # no fleet left to register
        self._observe(info.instance_count if info else 0, info.status if info else None)

    def _observe(self, count: int, status: str | None) -> None:
        assert self.s is not None
        self.s.instance_count = count
        self.s.endpoint_status = status
        self.observed = True

    async def _record(self, event: str | None) -> None:
        """Mirror the state into Postgres (thermal_states, uptime, outbox) and the Web UI."""
        assert self.s is not None and self.spec is not None
        self.s.seq += 1
        self.recorded = True
        observed, self.observed = self.observed, False
        billed_rate = self.s.billed_hourly
        # Never earlier than the last record (a clock step back would get this one skipped)
        last = self.s.last_recorded_at
        self.s.last_recorded_at = at = workflow.now() if last is None else max(workflow.now(), last)
        await workflow.execute_activity_method(
            ThermalActivities.record,
            RecordInput(
                app_id=self.inp.app_id,
                environment=self.inp.environment,
                model_id=self.inp.model_id,
                workflow_id=workflow.info().workflow_id,
                seq=self.s.seq,
                event=event,
                status=self._status(),
                instance_type=self.s.billed_instance_type or self.spec.instance_type,
                billed_hourly=self.spec.billed_hourly if billed_rate is None else billed_rate,
                recorded_at=at,  # orders records: a late older attempt is skipped
                observed=observed,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )
        workflow.upsert_search_attributes([sa.THERMAL_STATE.value_set(self.s.current_state.value)])

    def _history_long(self) -> bool:
        """Past DEFAULT_MAX_HISTORY_EVENTS with no limit configured (runs started before
        continue as new there: SHORT_HISTORY_PATCH)."""
        if self.s is None or self.s.transitioning or self.inp.timings.max_history_events:
            return False
        return workflow.info().get_current_history_length() >= DEFAULT_MAX_HISTORY_EVENTS

    def _should_continue_as_new(self) -> bool:
        if self.s is None or self.s.transitioning:
            return False
        limit = self.inp.timings.max_history_events
        if limit is not None and workflow.info().get_current_history_length() >= limit:
            return True
        return workflow.info().is_continue_as_new_suggested()

    # ---------------------------------------------------------------- handlers
    async def _initialized(self) -> ThermalSnapshot:
        await workflow.wait_condition(
            lambda: (self.s is not None and self.spec is not None) or self.fatal is not None
        )
        if self.fatal is not None:
            raise ApplicationError(self.fatal.message, type=self.fatal.type, non_retryable=True)
        assert self.s is not None
        return self.s

    @workflow.update
    async def set_target(self, req: SetTargetRequest) -> ThermalStatus:
        s = await self._initialized()
        if req.state != s.target_state or s.generation != s.applied_generation or self.blocked:
            if req.state == COLD and s.target_state != COLD and s.instance_count > 0:
                # Turning a running model COLD starts its idle window now: callers that held
                # it without a lease (WARM/HOT need none) finish before it scales in.
                s.last_activity_at = workflow.now()
            s.target_state = req.state
            s.generation += 1
            self.blocked = False
        generation, failures = s.generation, self.failures
        await workflow.wait_condition(
            lambda: (
                (s.applied_generation >= generation and not self.converging)
                or (self.failures != failures and self._failed_for(generation))
            )
        )
        if s.applied_generation < generation:
            raise ApplicationError(
                f"could not set {self.inp.model_id} to {req.state.value}: {s.last_error}",
                type=ERR_WARMUP_FAILED,
                non_retryable=True,
            )
        return self._status()

    @workflow.update
    async def warm_up(self, req: WarmUpRequest) -> ThermalStatus:
        s = await self._initialized()
        if s.target_state == OFF:
            raise ApplicationError(
                model_off_message(self.inp.app_id, self.inp.environment, self.inp.model_id),
                type=ERR_MODEL_OFF,
                non_retryable=True,
            )
        if req.verify_endpoint:
            # The caller found the endpoint gone: believe the backend before answering.
            self.refresh = True
            await workflow.wait_condition(lambda: not self.refresh and not self.converging)
        now = workflow.now()
        s.last_activity_at = now
        renewed = bool(req.lease_id) and self._hold(
            req.lease_id or "", now + timedelta(seconds=req.lease_seconds)
        )
        if not renewed:  # a retried acquire holding its lease already is no new arrival
            self._arrival(now, took_lease=bool(req.lease_id))
        if self.blocked:  # a new caller is new intent: try again after an earlier failure
            self.blocked = False
        failures = self.failures
        self.waiters += 1
        try:
            deadline = (
                req.deadline_seconds
                or self.inp.timings.warmup_deadline_seconds
                or DEFAULT_WARMUP_DEADLINE
            )
            await workflow.wait_condition(
                # Ready *and* recorded: a caller never sees a state Postgres does not show yet.
                lambda: (
                    (self._ready() and (not self.converging or self.serving_change))
                    or self.failures != failures
                    or s.target_state == OFF
                ),
                timeout=deadline,
            )
        except TimeoutError:
            raise ApplicationError(
                f"model {self.inp.model_id} was not ready within {deadline:g}s; the warm-up "
                "goes on",
                type=ERR_WARMUP_DEADLINE,
                non_retryable=True,
            ) from None
        finally:
            self.waiters -= 1
        # Turned OFF while it waited: the same error as a warm-up of a model that is OFF (the
        # endpoint may still be up, on its way down). Only the update's answer changes, no
        # command, so no patch: replay does not compare an update's outcome.
        if s.target_state == OFF:
            off = model_off_message(self.inp.app_id, self.inp.environment, self.inp.model_id)
            raise ApplicationError(
                f"{off} (it was turned OFF while the warm-up waited)",
                type=ERR_MODEL_OFF,
                non_retryable=True,
            )
        if not self._ready():
            raise ApplicationError(
                f"warm-up of {self.inp.model_id} failed: {s.last_error}",
                type=ERR_WARMUP_FAILED,
                non_retryable=True,
            )
        return self._status()

    @workflow.signal
    def release(self, req: ReleaseRequest) -> None:
        """A caller finished its invocation: it counts as activity for the idle timer."""
        if self.s is None:
            return
        now = workflow.now()
        held = [lease for lease in self.s.leases if lease.lease_id != req.lease_id]
        if len(held) == len(self.s.leases) and workflow.patched(RELEASE_OF_HELD_LEASE_PATCH):
            return  # never taken, released already, or expired and dropped: nothing finished
        self.s.leases = held
        self.s.last_activity_at = now
        self.s.traffic = policy.observe_completion(self.s.traffic, now.timestamp())

    @workflow.signal
    def lease(self, req: WarmUpRequest) -> None:
        """A caller that saw the model ready takes a lease without waiting for a reply (the
        fast path of a job's model hold; `warm_up` is the path that waits)."""
        if self.s is None or req.lease_id is None:
            return
        now = workflow.now()
        self.s.last_activity_at = now
        if not self._hold(req.lease_id, now + timedelta(seconds=req.lease_seconds)):
            # A long job's renewal is no new arrival: it would skew the AUTOMATIC statistics.
            self._arrival(now, took_lease=True)

    def _arrival(self, now: datetime, *, took_lease: bool) -> None:
        """A new caller, for AUTOMATIC's statistics. The requests in flight before it are
        the leases held (IN_FLIGHT_FROM_LEASES_PATCH): counting releases alone went wrong
        for callers that never release (no lease) or release twice."""
        assert self.s is not None
        held = len(self._active_leases()) - (1 if took_lease else 0)
        if workflow.patched(IN_FLIGHT_FROM_LEASES_PATCH):
            self.s.traffic = policy.with_in_flight(self.s.traffic, held)
        self.s.traffic = policy.observe_arrival(self.s.traffic, now.timestamp())

    def _hold(self, lease_id: str, expires_at: datetime) -> bool:
        """Take a lease, or renew the caller's own (a long job renews before it expires).
        True when it renewed one (histories from before renewal: never)."""
        assert self.s is not None
        for lease in self.s.leases:
            if lease.lease_id == lease_id:
                if not workflow.patched(LEASE_RENEWAL_PATCH):
                    return False
                lease.expires_at = max(lease.expires_at, expires_at)
                return True
        self.s.leases.append(Lease(lease_id=lease_id, expires_at=expires_at))
        return False

    @workflow.signal
    def touch(self) -> None:
        """An invocation happened (for callers that hold no lease)."""
        if self.s is not None:
            self.s.last_activity_at = workflow.now()

    @workflow.signal
    def recount(self) -> None:
        """The reconcile saw the endpoint serve another count within its autoscaling bounds
        (SageMaker's autoscaler moved it): re-read it and record it."""
        if self.s is not None and workflow.patched(RECOUNT_SIGNAL_PATCH):
            self.recount_due = True

    @workflow.signal
    def resync(self) -> None:
        """The reconcile found drift: re-apply the recorded target (and retry after a failure)."""
        if self.s is not None:
            self.s.generation += 1
            self.blocked = False
            self.refresh = True

    @workflow.query
    def traffic(self) -> policy.TrafficStats | None:
        """The arrival statistics AUTOMATIC decides from (None before the first load)."""
        return None if self.s is None else self.s.traffic

    @workflow.query
    def status(self) -> ThermalStatus:
        st = self._status()
        # Between a step's last activity and its Postgres record the snapshot already says
        # "done": a caller that sees transitioning=False must find the same in thermal_states.
        if self.converging and not st.transitioning:
            st.transitioning = True
        return st

    def _status(self, *, as_recorded_before: bool = False) -> ThermalStatus:
        """The state as queries and thermal_states see it. A model blocked by a failed
        transition (waiting for new intent) is not transitioning, though its target was never
        applied; a backoff that will retry still is. `as_recorded_before`: that flag as runs
        before counted it (any unapplied target), for the comparisons that decide whether to
        record: they issue commands, so a blocked model's flag alone must not change them.
        No patch: only query answers and the record's input change (replay compares neither)."""
        s = self.s
        spec_name = self.spec.endpoint_name if self.spec else ""
        if s is None:  # the model cannot be managed (unknown, not deployable): say why
            raise ApplicationError(self.fatal.message if self.fatal else STILL_STARTING)
        return ThermalStatus(
            app_id=self.inp.app_id,
            environment=self.inp.environment,
            model_id=self.inp.model_id,
            endpoint_name=spec_name,
            target_state=s.target_state,
            current_state=s.current_state,
            instance_count=s.instance_count,
            endpoint_status=s.endpoint_status,
            transitioning=s.transitioning
            or (
                s.generation != s.applied_generation
                and (as_recorded_before or not self._is_blocked())
            ),
            ready=self._ready(),
            in_flight=len(self._active_leases()),
            last_activity_at=s.last_activity_at,
            last_error=s.last_error,
            transitions=s.seq,
            idle_deadline=(
                datetime.fromtimestamp(self._idle_deadline(), UTC)
                if s.target_state == COLD and s.last_activity_at and s.instance_count > 0
                else None
            ),
        )


class _CapacityShortfall(Exception):
    """The endpoint is InService with fewer instances than asked (a rolled-back scale-out)."""


__all__ = ["ModelThermalWorkflow", "thermal_workflow_id"]
