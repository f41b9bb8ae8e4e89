"""Activities for fleet-wide thermal work: reconcile snapshots, orphan clean-up, bulk changes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.app_scope import ANY, AppScope
from activities.backends.base import (
    MANAGED_BY,
    TAG_APP,
    TAG_ENVIRONMENT,
    TAG_MANAGED_BY,
    TAG_MODEL,
    BackendError,
    EndpointInfo,
    HostingBackend,
)
from activities.heartbeat import with_heartbeat
from activities.temporal_errors import application_error
from activities.thermal_activities import endpoint_name_or_none
from activities.thermal_control import ThermalControl
from activities.workflow_status import latest_run, workflow_running
from models_catalog.thermal_policy import ThermalLimits, autoscaling_bounds
from models_catalog.types import ThermalState
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import SetTargetRequest, ThermalStatus, thermal_workflow_id

ENDPOINT_PREFIX = "radiant-"
SNAPSHOT_CONCURRENCY = 8  # backend and Temporal describes in flight at once
SNAPSHOT_HEARTBEAT_EVERY = 5.0  # seconds; the workflow allows 30 between heartbeats
SETTLE_QUERY_TIMEOUT = timedelta(seconds=20)
SETTLE_POLL_S = 5.0  # how often a bulk waiting for a given-up model's transition asks
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
# Temporal RPC failures that say nothing about the model (the server or the way to it): a bulk
# item meeting one fails its activity, which Temporal retries, instead of reporting the model.
TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)


class ReconcileInput(BaseModel):
    app_id: str | None = None  # None: every app and environment
    environment: str | None = None
    delete_orphans: bool = False

    def covers(self, app_id: str, environment: str) -> bool:
        return (self.app_id is None or self.app_id == app_id) and (
            self.environment is None or self.environment == environment
        )


# Ends open uptime intervals (append the conditions). GREATEST: an interval opened on a
# worker's clock is never reversed.
END_UPTIME = (
    "UPDATE endpoint_uptime SET ended_at = GREATEST(now(), started_at) WHERE ended_at IS NULL "
)


def _list_prefix(inp: ReconcileInput) -> str:
    """A cheap pre-filter for listing only; ownership is decided exactly afterwards (tags or the
    recomputed name). Long names are cut and hash-suffixed, so keep to the start of the app."""
    if inp.app_id is None:
        return ENDPOINT_PREFIX
    probe = endpoint_name_or_none(inp.app_id, "x", "x")
    if probe is None:
        return ENDPOINT_PREFIX
    head = probe[: -len("-x-x")] if probe.endswith("-x-x") else probe[: -len("-12345678")]
    return head[:50].rstrip("-")


class RecordedModel(BaseModel):
    app_id: str
    environment: str
    model_id: str
    endpoint_name: str
    target_state: ThermalState
    instance_count: int
    workflow_running: bool
    # The model's catalog limits (autoscaling bounds); None in snapshots of older versions.
    min_instances: int | None = None
    max_instances: int | None = None
    # A change under way as recorded (False in snapshots of older versions).
    transitioning: bool = False
    # The recorded error of the last failed transition (None in snapshots of older versions).
    # It stays until a transition succeeds, so a retry under way still carries it.
    last_error: str | None = None
    # Whether the running workflow of a transitioning row was at work when asked (an activity
    # or a workflow task pending); None: not asked (no transition recorded, no workflow, or a
    # snapshot of an older version, whose decisions stay as they were).
    workflow_busy: bool | None = None


class EndpointOwner(BaseModel):
    """Who an endpoint belongs to. `managed`: radiant's tags name its app, environment and model
    (consistent with its name), so the reconcile may delete it; otherwise only report it."""

    endpoint_name: str
    app_id: str | None = None
    environment: str | None = None
    model_id: str | None = None
    managed: bool = False
    workflow_running: bool = False


class FleetSnapshot(BaseModel):
    recorded: list[RecordedModel]
    endpoints: list[EndpointInfo]  # only endpoints of the reconciled scope
    owners: list[EndpointOwner] | None = None  # None: a snapshot of an older version
    started_at: datetime | None = None


class OrphanReport(BaseModel):
    endpoint_name: str
    model_id: str | None
    instance_count: int
    deleted: bool = False


class ReconcileReport(BaseModel):
    checked: int
    endpoints: int
    drift: list[str] = Field(default_factory=list)
    resynced: list[str] = Field(default_factory=list)
    orphans: list[OrphanReport] = Field(default_factory=list)
    # Endpoints no thermal workflow owns and without radiant's ownership tags (older versions,
    # made by hand): reported, never deleted automatically.
    unmanaged: list[OrphanReport] = Field(default_factory=list)
    # Workflows told that SageMaker's autoscaler moved their count within the bounds (no
    # drift): they record the count, so the uptime intervals bill what really runs.
    recounted: list[str] = Field(default_factory=list)
    # Endpoints gone from the backend whose records still billed instances, with no running
    # workflow to correct them: the reconcile closed the records (no instances, uptime ended).
    closed: list[str] = Field(default_factory=list)


@runtime_checkable
class TagReader(Protocol):
    """A backend that can read an endpoint's tags (None: no such endpoint)."""

    async def endpoint_tags(self, name: str) -> dict[str, str] | None: ...


# --------------------------------------------------------------------------- decisions (pure:
# the reconcile workflow calls them)


def live_bounds(row: RecordedModel) -> tuple[int, int]:
    """Instance counts the autoscaler may legitimately choose for a recorded model: the bounds
    the thermal workflow registers, widened to the recorded count."""
    n = row.instance_count
    if row.min_instances is None or row.max_instances is None:
        return n, n  # limits unknown: only the recorded count is known to be right
    limits = ThermalLimits(min_instances=row.min_instances, max_instances=row.max_instances)
    low, high = autoscaling_bounds(row.target_state, limits, n)
    return min(low, n), max(high, n)


def failed_and_idle(row: RecordedModel) -> bool:
    """A transitioning row whose transition failed and whose workflow does nothing about it: it
    carries the error and its workflow was idle when asked (blocked until new intent, or
    backing off). A retry under way carries the earlier error too, but its workflow is busy."""
    return row.last_error is not None and row.workflow_busy is False


def drift_reason(row: RecordedModel, live: EndpointInfo | None) -> str | None:
    """Why the backend disagrees with the record, or None when it is in sync."""
    n = row.instance_count
    if live is not None and live.status == "Deleting":
        live = None  # on its way out (a scale to zero takes minutes): as good as gone
    if n == 0:
        if live is None or live.status == "Creating":  # a first warm-up records when ready
            return None
        if row.transitioning and row.workflow_running and not failed_and_idle(row):
            # A first warm-up between its create and its record (InService, the capacity
            # step's Updating, or Failed before its cleanup): the workflow owns the outcome,
            # and a resync would retry a failed create without its backoff. Not once that
            # create failed for good: an endpoint its cleanup left behind may bill unrecorded.
            return None
        return f"recorded 0 instances, backend has endpoint {live.endpoint_name} ({live.status})"
    if live is None:
        if (
            row.transitioning
            and row.workflow_running
            and row.workflow_busy is not None  # older snapshots: decided as they were
            and not failed_and_idle(row)
        ):
            # A scale to zero between its delete and its record (the snapshot lists endpoints
            # before it reads rows, and leaves out the Deleting ones): the workflow records 0.
            return None
        return f"recorded {n} instance(s), backend has no endpoint"
    if live.status in IN_PROGRESS:
        return None  # a change is under way; the thermal workflow waits for it
    if live.status != "InService":
        return f"recorded {n} instance(s), endpoint is {live.status}"
    low, high = live_bounds(row)
    if low <= live.instance_count <= high:
        return None
    return f"recorded {n} instance(s) (allowed {low}-{high}), backend has {live.instance_count}"


def autoscaler_moved(row: RecordedModel, live: EndpointInfo | None) -> bool:
    """The endpoint serves at another count than recorded, within the autoscaling bounds
    (no drift: call it only when `drift_reason` is None): the autoscaler moved it."""
    return (
        live is not None
        and live.status == "InService"
        and row.instance_count > 0
        and live.instance_count != row.instance_count
    )


def owned_by(row: RecordedModel, owner: EndpointOwner | None) -> bool:
    """False only when the endpoint's ownership tags name another (app, env, model) than the
    row: two ids whose endpoint names coincide (the thermal activities refuse to share it)."""
    if owner is None or not owner.managed:
        return True
    return (owner.app_id, owner.environment, owner.model_id) == (
        row.app_id,
        row.environment,
        row.model_id,
    )


def orphan_kind(
    info: EndpointInfo, owner: EndpointOwner | None, started_at: datetime | None
) -> str | None:
    """ "orphan" (deletable), "unmanaged" (report only) or None (not an orphan) for an endpoint
    no running thermal workflow owns."""
    if owner is not None and owner.workflow_running:
        return None
    if info.status in ("Creating", "Deleting"):
        return None  # a first warm-up racing the snapshot, or already going
    if started_at and info.created_at and info.created_at >= started_at:
        return None
    return "orphan" if owner is not None and owner.managed else "unmanaged"


def endpoint_owner(
    name: str, tags: dict[str, str], known: dict[str, tuple[str, str, str]]
) -> EndpointOwner:
    """Ownership from radiant's tags (managed) or, failing that, from an exact recomputed name."""
    app, env, model = tags.get(TAG_APP), tags.get(TAG_ENVIRONMENT), tags.get(TAG_MODEL)
    if (
        tags.get(TAG_MANAGED_BY) == MANAGED_BY
        and app
        and env
        and model
        and endpoint_name_or_none(app, env, model) == name
    ):
        return EndpointOwner(
            endpoint_name=name, app_id=app, environment=env, model_id=model, managed=True
        )
    if name in known:
        app, env, model = known[name]
        return EndpointOwner(endpoint_name=name, app_id=app, environment=env, model_id=model)
    return EndpointOwner(endpoint_name=name, model_id=model)


def _known_names(
    inp: ReconcileInput, recorded: list[RecordedModel], catalog: list[str]
) -> dict[str, tuple[str, str, str]]:
    """Exact endpoint names of the scope's (app, env, model) candidates, for untagged endpoints."""
    pairs = {(r.app_id, r.environment) for r in recorded}
    if inp.app_id is not None and inp.environment is not None:
        pairs.add((inp.app_id, inp.environment))
    triples = {(r.app_id, r.environment, r.model_id) for r in recorded}
    triples |= {(app, env, model) for app, env in pairs for model in catalog}
    return {n: t for t in triples if (n := endpoint_name_or_none(*t))}


def in_scope(inp: ReconcileInput, owner: EndpointOwner) -> bool:
    """Exact: an endpoint of unknown owner belongs only to the unscoped reconcile."""
    if owner.app_id is None or owner.environment is None:
        return inp.app_id is None and inp.environment is None
    return inp.covers(owner.app_id, owner.environment)


def serves(apps: AppScope, app_id: str | None, environment: str | None) -> bool:
    """Whether the reconcile may look at and act on a pair: one `RADIANT_APPS` serves.
    Deployments serving other pairs may share the account (and database), so a pair not
    known (an endpoint without radiant's tags whose name no served pair computes) is this
    deployment's only under the unrestricted scope (`*`), which, as before scopes existed,
    covers everything under the name prefix (such an endpoint is reported, never deleted)."""
    if ANY in apps.patterns:
        return True
    return app_id is not None and environment is not None and apps.allows(app_id, environment)


def served(apps: AppScope, owner: EndpointOwner) -> bool:
    return serves(apps, owner.app_id, owner.environment)


def bulk_item_outcome(exc: Exception) -> bool:
    """Whether a bulk item's error is the model's own outcome (reported as ok=False) rather
    than a transient failure on the way to it (re-raised: the activity is retried)."""
    if isinstance(exc, WorkflowUpdateFailedError | ApplicationError):
        return True  # the thermal workflow refused or failed the change; AppNotServed
    if isinstance(exc, RPCTimeoutOrCancelledError):
        return False  # the update's RPC timed out or was cancelled: its outcome is unknown
    if isinstance(exc, RPCError):
        return exc.status not in TRANSIENT_RPC  # e.g. INVALID_ARGUMENT: a retry cannot help
    return False  # timeouts, connection errors, anything unforeseen: retried, then reported


class BulkSetItem(BaseModel):
    app_id: str
    environment: str
    model_id: str
    state: ThermalState


class BulkSetInput(BaseModel):
    app_id: str
    environment: str
    model_ids: list[str]
    state: ThermalState
    max_concurrency: int = 4

    def item(self, model_id: str) -> BulkSetItem:
        return BulkSetItem(
            app_id=self.app_id, environment=self.environment, model_id=model_id, state=self.state
        )


class BulkItemResult(BaseModel):
    model_id: str
    ok: bool
    status: ThermalStatus | None = None
    error: str | None = None


# Why a record was closed (its last_error): the reconcile deleted the endpoint, or found it gone.
DELETED = "endpoint deleted by the reconcile: no running thermal workflow owned it"
GONE = "endpoint gone from the backend: no running thermal workflow was left to record it"


class FleetActivities:
    def __init__(
        self,
        backend: HostingBackend,
        engine: AsyncEngine | None,
        control: ThermalControl,
        apps: AppScope | None = None,
    ) -> None:
        self.backend = backend
        self.engine = engine
        self.control = control
        # The (app, env) pairs this deployment serves (RADIANT_APPS, the control's unless
        # given): the reconcile neither reports nor touches anything of another pair.
        self.apps: AppScope = apps or getattr(control, "apps", None) or AppScope()
        self.settle_poll_seconds = SETTLE_POLL_S

    @activity.defn(name="fleet.snapshot")
    async def snapshot(self, inp: ReconcileInput) -> FleetSnapshot:
        """Heartbeats: on a big fleet the describes take a while (the workflow sets a heartbeat
        timeout, so a dead worker is noticed without waiting for start-to-close)."""
        return await with_heartbeat(self._snapshot(inp), SNAPSHOT_HEARTBEAT_EVERY)

    async def _snapshot(self, inp: ReconcileInput) -> FleetSnapshot:
        started_at = datetime.now(UTC)
        # Endpoints first, rows second: a first warm-up's endpoint listed here has its row (or
        # is still Creating) by the time the rows are read, so it is not called an orphan.
        try:
            listed = await self.backend.list_endpoints(_list_prefix(inp))
        except BackendError as err:
            raise application_error(err) from err
        listed = [e for e in listed if e.status != "Deleting"]
        rows, catalog = await self._rows(inp)
        gate = asyncio.Semaphore(SNAPSHOT_CONCURRENCY)
        recorded = list(await asyncio.gather(*(self._recorded(r, gate) for r in rows)))
        known = _known_names(inp, recorded, catalog)
        owners = await asyncio.gather(*(self._owner(e, known, gate) for e in listed))
        scoped = [
            (e, o)
            for e, o in zip(listed, owners, strict=True)
            if in_scope(inp, o) and served(self.apps, o)
        ]
        # Endpoints whose running owner is known from its row (one under a shared name only
        # for the row its tags name); the others' owners are asked of Temporal.
        owner_of = {o.endpoint_name: o for _, o in scoped}
        running = {
            r.endpoint_name
            for r in recorded
            if r.workflow_running and owned_by(r, owner_of.get(r.endpoint_name))
        }
        await asyncio.gather(
            *(self._owner_running(o, gate) for _, o in scoped if o.endpoint_name not in running)
        )
        return FleetSnapshot(
            recorded=recorded,
            endpoints=[e for e, _ in scoped],
            owners=[o for _, o in scoped],
            started_at=started_at,
        )

    async def _rows(self, inp: ReconcileInput) -> tuple[list[Any], list[str]]:
        if self.engine is None:
            return [], []
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT t.app_id, t.environment, t.model_id, t.endpoint_name, "
                    "t.target_state, t.instance_count, m.min_instances, m.max_instances, "
                    "t.transitioning, t.last_error "
                    "FROM thermal_states t LEFT JOIN self_hosted_models m USING (model_id) "
                    "WHERE (CAST(:a AS text) IS NULL OR t.app_id = :a) "
                    "AND (CAST(:e AS text) IS NULL OR t.environment = :e)"
                ),
                {"a": inp.app_id, "e": inp.environment},
            )
            # A pair taken out of RADIANT_APPS (or another deployment's, in a shared
            # database) is neither checked for drift nor resynced.
            rows = [r for r in result if serves(self.apps, r[0], r[1])]
            models = await conn.execute(
                text("SELECT model_id FROM self_hosted_models WHERE deployable")
            )
            return rows, [m[0] for m in models]

    async def _recorded(self, r: Any, gate: asyncio.Semaphore) -> RecordedModel:
        wf_id = thermal_workflow_id(r[0], r[1], r[2])
        async with gate:
            running = await self._running(wf_id)
        busy = None
        if running and r[8]:
            async with gate:
                busy = await self._busy(wf_id)
        return RecordedModel(
            app_id=r[0],
            environment=r[1],
            model_id=r[2],
            endpoint_name=r[3] or "",
            target_state=ThermalState(r[4]),
            instance_count=r[5] or 0,
            workflow_running=running,
            min_instances=r[6],
            max_instances=r[7],
            transitioning=bool(r[8]),
            last_error=r[9],
            workflow_busy=busy,
        )

    async def _owner(
        self, info: EndpointInfo, known: dict[str, tuple[str, str, str]], gate: asyncio.Semaphore
    ) -> EndpointOwner:
        async with gate:
            tags = await self._tags(info)
        return endpoint_owner(info.endpoint_name, tags or {}, known)

    async def _owner_running(self, owner: EndpointOwner, gate: asyncio.Semaphore) -> None:
        """An endpoint whose owner's workflow runs but has no row yet is not an orphan."""
        if owner.app_id and owner.environment and owner.model_id:
            wf_id = thermal_workflow_id(owner.app_id, owner.environment, owner.model_id)
            async with gate:
                owner.workflow_running = await self._running(wf_id)

    async def _tags(self, info: EndpointInfo) -> dict[str, str] | None:
        """The tags read with the description, else read now; None when the backend cannot
        read tags (nothing is then deletable) or the endpoint is gone."""
        if info.tags is not None:
            return info.tags
        if not isinstance(self.backend, TagReader):
            return None
        try:
            return await self.backend.endpoint_tags(info.endpoint_name)
        except BackendError as err:
            raise application_error(err) from err

    async def _running(self, workflow_id: str) -> bool:
        return await workflow_running(self.control.client, workflow_id)

    async def _run_end(self, workflow_id: str) -> tuple[bool, datetime | None]:
        """Whether the workflow runs no more (or never ran), and when its latest run closed on
        the Temporal server's clock (the one `workflow.now()` reads): one describe."""
        run = await latest_run(self.control.client, workflow_id)
        if run is None:
            return True, None
        if run.status == WorkflowExecutionStatus.RUNNING:
            return False, None
        return True, run.close_time

    async def _busy(self, workflow_id: str) -> bool:
        """Whether the workflow is at work right now: an activity (retrying ones included) or a
        workflow task pending. A thermal workflow in a transition always has one of them, from
        its first step to its record; one that has neither is waiting (for intent, a caller or
        a timer). False when it does not run."""
        try:
            desc = await self.control.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return False
        raw = desc.raw_description
        return bool(raw.pending_activities) or raw.HasField("pending_workflow_task")

    @activity.defn(name="fleet.delete_orphan")
    async def delete_orphan(self, endpoint_name: str) -> bool:
        """Deletes the endpoint if it still is an orphan (checked again right now: a warm-up may
        have started since the snapshot); False when kept."""
        try:
            info = await self.backend.describe_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err
        if activity.info().attempt > 1 and (info is None or info.status == "Deleting"):
            # An earlier attempt got as far as DeleteEndpoint: finish its work (the model and
            # endpoint config), which nothing else would clean up once the endpoint is gone.
            if info is not None and self._foreign(await self._tag_owner(info)):
                return False  # another deployment's endpoint, going by its own hand
            try:
                await self.backend.delete_endpoint(endpoint_name)
            except BackendError as err:
                raise application_error(err) from err
            await self._close_records(endpoint_name, DELETED)
            return True
        if info is None:  # gone already (someone else): its records must not bill on
            await self._close_records(endpoint_name, GONE)
            return True
        owner = await self._tag_owner(info)
        if self._foreign(owner):
            return False
        await self._owner_running(owner, asyncio.Semaphore(1))
        if orphan_kind(info, owner, None) != "orphan":
            activity.logger.warning("endpoint %s is no longer a deletable orphan", endpoint_name)
            return False
        try:
            await self.backend.delete_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err
        await self._close_records(endpoint_name, DELETED)
        return True

    @activity.defn(name="fleet.close_vanished")
    async def close_vanished(self, endpoint_name: str) -> bool:
        """The records of an endpoint that is gone (or Deleting) while they still bill
        instances and no workflow runs to correct them: closed like a deleted orphan's.
        Whether a record was closed: not when the endpoint is back (checked again right
        now) or a workflow started since. Idempotent (a retry finds nothing left to close)."""
        try:
            info = await self.backend.describe_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err
        if info is not None and info.status != "Deleting":
            return False
        return await self._close_records(endpoint_name, GONE) > 0

    async def _tag_owner(self, info: EndpointInfo) -> EndpointOwner:
        return endpoint_owner(info.endpoint_name, await self._tags(info) or {}, {})

    def _foreign(self, owner: EndpointOwner) -> bool:
        """An endpoint whose tags do not name a pair this deployment serves: never deleted
        here (another deployment sharing the account may own it)."""
        if served(self.apps, owner):
            return False
        activity.logger.warning(
            "endpoint %s is not of an (app, environment) this deployment serves: kept",
            owner.endpoint_name,
        )
        return True

    async def _close_records(self, endpoint_name: str, reason: str) -> int:
        """Close the records of an endpoint deleted or gone (`reason`, kept as last_error): no
        instances and no open uptime interval.
        Left as they were, the interval would accrue cost in `usage margin` and every
        reconcile would report drift that no workflow can resync. Only rows whose workflow
        is (still) not running, looked up per (app, env, model): a workflow started since
        records its own truth. Idempotent (a retry finds nothing left to change). Returns how
        many records it closed."""
        if self.engine is None:
            return 0
        async with self.engine.connect() as conn:
            owners = (
                await conn.execute(
                    text(
                        "SELECT app_id, environment, model_id FROM thermal_states "
                        "WHERE endpoint_name = :ep"
                    ),
                    {"ep": endpoint_name},
                )
            ).all()
        closed = 0
        for app_id, env, model_id in owners:
            if not serves(self.apps, app_id, env):
                continue  # a pair this deployment does not serve keeps its records
            ended, closed_at = await self._run_end(thermal_workflow_id(app_id, env, model_id))
            if not ended:
                continue
            # `closed`: ordered after every record of the closed run (thermal.record): an
            # attempt of one of them still hung when it closed must not bring back its state.
            key = {"a": app_id, "e": env, "m": model_id, "ep": endpoint_name, "err": reason,
                   "closed": closed_at}  # fmt: skip
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    text(
                        "UPDATE thermal_states SET instance_count = 0, transitioning = false, "
                        "current_state = CASE WHEN target_state = 'OFF' THEN 'OFF' "
                        "ELSE 'COLD' END, last_error = :err, updated_at = now(), "
                        "record_seq = CASE WHEN CAST(:closed AS timestamptz) IS NOT NULL AND "
                        "(record_at IS NULL OR record_at <= :closed) "
                        f"THEN {LAST_SEQ} ELSE record_seq END, "
                        "record_at = GREATEST(record_at, CAST(:closed AS timestamptz)) "
                        "WHERE app_id = :a AND environment = :e AND model_id = :m "
                        "AND endpoint_name = :ep AND instance_count > 0"
                    ),
                    key,
                )
                await conn.execute(
                    text(
                        END_UPTIME + "AND app_id = :a AND environment = :e AND model_id = :m "
                        "AND endpoint_name = :ep"
                    ),
                    key,
                )
                closed += result.rowcount
        return closed

    @activity.defn(name="fleet.report")
    async def report(self, report: ReconcileReport) -> None:
        activity.logger.warning(
            "reconcile: drift=%s orphans=%s unmanaged=%s",
            report.drift,
            [o.endpoint_name for o in report.orphans],
            [o.endpoint_name for o in report.unmanaged],
        )
        if self.engine is None:
            return
        key = f"{activity.info().workflow_id}#{activity.info().workflow_run_id}"
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO notifications (dedupe_key, kind, payload) "
                    "VALUES (:k, 'thermal.reconcile', CAST(:p AS jsonb)) "
                    "ON CONFLICT (dedupe_key) DO NOTHING"
                ),
                {"k": key, "p": json.dumps(report.model_dump(mode="json"))},
            )

    @activity.defn(name="fleet.set_one")
    async def set_one(self, item: BulkSetItem) -> BulkItemResult:
        """One model of a bulk change; heartbeats while the thermal workflow converges."""
        request = SetTargetRequest(state=item.state, reason="bulk")
        try:
            status = await with_heartbeat(
                self.control.set_target(item.app_id, item.environment, item.model_id, request), 10
            )
        except Exception as exc:
            if not bulk_item_outcome(exc):
                # Transient (Temporal unavailable, the update's RPC timed out): the retry
                # policy tries again, and the bulk reports the model if every attempt fails.
                # Safe to repeat: setting the target a model already has changes nothing.
                raise
            # the model's own outcome: it is reported, the others go on
            return BulkItemResult(
                model_id=item.model_id, ok=False, error=str(getattr(exc, "cause", None) or exc)
            )
        return BulkItemResult(model_id=item.model_id, ok=True, status=status)

    @activity.defn(name="fleet.wait_settled")
    async def wait_settled(self, item: BulkSetItem) -> None:
        """Return once the model's thermal workflow runs no transition (or runs no more): a
        bulk whose set_one gave up (a worker lost three times) holds the model's concurrency
        slot until then, since the change it asked for may still be under way. A query that
        cannot be answered (its worker still gone) fails this attempt: the retry asks again."""
        handle = self.control.handle(item.app_id, item.environment, item.model_id)
        while await workflow_running(self.control.client, handle.id):  # ended: nothing runs
            # bounded: a query to a workflow whose worker is gone waits, and heartbeats must go on
            status = await handle.query(
                ModelThermalWorkflow.status, rpc_timeout=SETTLE_QUERY_TIMEOUT
            )
            if not status.transitioning:
                return
            # A failed transition is reported transitioning until new intent comes (its target
            # is still unmet): settled once the workflow is idle with the failure recorded,
            # blocked or backing off. The error stays through a retry, so it alone says
            # nothing: a retry under way keeps the workflow busy (an activity or task pending).
            if getattr(status, "last_error", None) and not await self._busy(handle.id):
                return
            activity.heartbeat()
            await asyncio.sleep(self.settle_poll_seconds)


#: A record sequence after any a run makes (bigint's largest): a row closed at its run's close
#: time is newer than every record of that run made at that very instant.
LAST_SEQ = 2**63 - 1


async def end_uptime_of_stopped(engine: AsyncEngine, endpoint_names: list[str]) -> int:
    """End the open uptime intervals of endpoints stopped outside any workflow (the dev stack's
    Ctrl-C stops the local model servers): they would bill on until the next reconcile.
    The thermal records keep their instances, so that reconcile still sees the drift and lets
    each workflow record its own truth (with no interval left to close). How many ended."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(END_UPTIME + "AND endpoint_name = ANY(:eps)"), {"eps": endpoint_names}
        )
    return result.rowcount
