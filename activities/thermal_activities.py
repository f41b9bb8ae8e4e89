"""Activities of the thermal workflows: the hosting backend (SageMaker or the local stand-in) and
the Postgres mirror (thermal_states, endpoint uptime intervals, notifications outbox).

Every activity is idempotent: Temporal retries them, and a retry after a crash must neither create
a second endpoint nor write a second uptime interval or notification.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.backends.base import (
    MANAGED_BY,
    NON_RETRYABLE_ERROR_TYPES,
    OWNER_TAG_KEYS,
    TAG_APP,
    TAG_ENVIRONMENT,
    TAG_MANAGED_BY,
    BackendError,
    EndpointInfo,
    EndpointSpec,
    HostingBackend,
)
from activities.backends.base import (
    endpoint_name as make_endpoint_name,
)
from activities.backends.errors import EndpointFailed, lacks_capacity
from activities.heartbeat import with_heartbeat
from activities.temporal_errors import application_error
from models_catalog.catalog import Catalog
from models_catalog.errors import CatalogError, NotDeployableError
from models_catalog.service_state import uses_async_inference
from models_catalog.types import ThermalState
from workflows.thermal_types import (
    ERR_NOT_DEPLOYABLE,
    ERR_UNKNOWN_MODEL,
    ModelThermalSpec,
    ThermalStatus,
    thermal_workflow_id,
)

ERR_NOT_READY = "EndpointNotReady"
ERR_ENDPOINT_FAILED = "EndpointFailed"
# Failed while Creating because SageMaker had no instances of the type: delete and try again
# later (the workflow backs off), unlike other Failed reasons (a bad image, a crashing model).
ERR_ENDPOINT_NO_CAPACITY = "EndpointFailedNoCapacity"
ERR_ENDPOINT_MISSING = "EndpointMissing"  # gone behind the workflow's back (drift)
# SageMaker failed an update to the config asked and rolled back: InService on the old one.
ERR_UPDATE_ROLLED_BACK = "EndpointUpdateRolledBack"
# Errors meaning "the endpoint is not there": the workflow re-reads the backend and goes on.
MISSING_ENDPOINT_ERRORS = frozenset({ERR_ENDPOINT_MISSING, "EndpointNotFound", "ResourceNotFound"})
# Error types no retry can fix: the workflow records them and stops trying.
NON_RETRYABLE = [
    *NON_RETRYABLE_ERROR_TYPES,
    ERR_ENDPOINT_FAILED,
    ERR_ENDPOINT_NO_CAPACITY,
    ERR_ENDPOINT_MISSING,
    ERR_UPDATE_ROLLED_BACK,
    ERR_UNKNOWN_MODEL,
    ERR_NOT_DEPLOYABLE,
]


def endpoint_failed(message: str, failure_reason: str | None) -> ApplicationError:
    """A Failed endpoint: for want of capacity (transient: delete it, create it later) or for
    any other reason (a bad image, a crashing model: only new intent retries it)."""
    kind = ERR_ENDPOINT_NO_CAPACITY if lacks_capacity(failure_reason) else ERR_ENDPOINT_FAILED
    return ApplicationError(message, type=kind, non_retryable=True)


def not_ready(message: str) -> ApplicationError:
    """Benign: the wait's retry policy is its poll loop."""
    return ApplicationError(message, type=ERR_NOT_READY, category=ApplicationErrorCategory.BENIGN)


def owner_tags(workflow_id: str, model_id: str, endpoint: str) -> dict[str, str]:
    """App/environment tags from the thermal workflow id `thermal/{app}/{env}/{model}`; only if
    exactly one split reproduces the endpoint name (ids may contain '/'). Else none: an endpoint
    without them is never deleted by the reconcile."""
    prefix, suffix = "thermal/", f"/{model_id}"
    if not (workflow_id.startswith(prefix) and workflow_id.endswith(suffix)):
        return {}
    middle = workflow_id[len(prefix) : -len(suffix)]
    owners = []
    for i, char in enumerate(middle):
        app, env = middle[:i], middle[i + 1 :]
        if char == "/" and app and env and endpoint_name_or_none(app, env, model_id) == endpoint:
            owners.append((app, env))
    if len(owners) != 1:
        return {}
    return {TAG_APP: owners[0][0], TAG_ENVIRONMENT: owners[0][1], TAG_MANAGED_BY: MANAGED_BY}


def other_owner(info: EndpointInfo | None) -> str | None:
    """The thermal workflow id an endpoint's ownership tags name, when the running activity
    belongs to another thermal workflow (two ids sharing one endpoint name); else None."""
    current = activity.info().workflow_id or ""
    if info is None or not info.tags or not current.startswith("thermal/"):
        return None
    app, env, model = (info.tags.get(key) for key in OWNER_TAG_KEYS)
    if not (app and env and model):
        return None  # endpoints of older versions carry no owner: nothing to compare
    owner = thermal_workflow_id(app, env, model)
    return owner if owner != current else None


def endpoint_name_or_none(app_id: str, environment: str, model_id: str) -> str | None:
    """The endpoint name of these ids, None for ids without usable characters."""
    try:
        return make_endpoint_name(app_id, environment, model_id)
    except ValueError:
        return None


class EnsureEndpointInput(BaseModel):
    spec: ModelThermalSpec
    instance_count: int
    min_instances: int
    max_instances: int


class WaitInServiceInput(BaseModel):
    endpoint_name: str
    config_name: str  # the endpoint config the warm-up asked for (ensure_endpoint's answer)
    # The FailureReason the endpoint showed before the update (an earlier failure's): seen
    # again in the first polls, it may be the update not showing yet rather than its end.
    stale_reason: str | None = None


STALE_REASON_POLLS = 3  # polls that give the earlier reason the benefit of the doubt


class SetCapacityInput(BaseModel):
    endpoint_name: str
    instance_count: int
    min_instances: int
    max_instances: int


class RecordKey(BaseModel):
    app_id: str
    environment: str
    model_id: str


class RecordInput(BaseModel):
    app_id: str
    environment: str
    model_id: str
    workflow_id: str
    seq: int
    event: str | None  # warmup_started | ready | went_cold | turned_off | failed | None
    status: ThermalStatus
    instance_type: str
    billed_hourly: Decimal
    # The workflow's clock when it recorded (then seq orders records of one instant): later
    # across continue-as-new and for a new workflow under the same id. None: scheduled by a
    # workflow task of before this field, and written unconditionally as then.
    recorded_at: datetime | None = None
    # The count was read from the backend since the workflow's last record: the truth of now,
    # not a count it carried (news for the uptime interval).
    observed: bool = False

    @staticmethod
    def key(app_id: str, environment: str, model_id: str) -> RecordKey:
        return RecordKey(app_id=app_id, environment=environment, model_id=model_id)


class ThermalActivities:
    def __init__(
        self,
        catalog: Catalog,
        backend: HostingBackend,
        engine: AsyncEngine | None,
        image_registry: str = "",
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        self.engine = engine
        self.image_registry = image_registry

    # ------------------------------------------------------------- catalog
    @activity.defn(name="thermal.describe_model")
    async def describe_model(self, key: RecordKey) -> ModelThermalSpec:
        try:
            model = self.catalog.model(key.model_id)
        except NotDeployableError as exc:
            raise ApplicationError(str(exc), type=ERR_NOT_DEPLOYABLE, non_retryable=True) from exc
        except CatalogError as exc:
            raise ApplicationError(str(exc), type=ERR_UNKNOWN_MODEL, non_retryable=True) from exc
        image = model.image if "/" in model.image else f"{self.image_registry}/{model.image}"
        return ModelThermalSpec(
            model_id=model.id,
            endpoint_name=make_endpoint_name(key.app_id, key.environment, model.id),
            image=image,
            instance_type=model.instance_type,
            environment=dict(model.environment),
            model_data_url=model.model_data_url,
            category=str(model.category),
            specialty=str(model.specialty),
            default_state=model.thermal.default_state,
            scale_to_zero_after_minutes=model.thermal.scale_to_zero_after_minutes,
            warmup_time_seconds=model.thermal.warmup_time_seconds,
            min_instances=model.thermal.min_instances,
            max_instances=model.thermal.max_instances,
            billed_hourly=model.pricing.hourly_rate,
            async_inference=uses_async_inference(self.catalog, model.id),
        )

    # ------------------------------------------------------------- backend
    @activity.defn(name="thermal.ensure_endpoint")
    async def ensure_endpoint(self, req: EnsureEndpointInput) -> EndpointInfo:
        spec = EndpointSpec(
            endpoint_name=req.spec.endpoint_name,
            model_id=req.spec.model_id,
            image=req.spec.image,
            instance_type=req.spec.instance_type,
            environment=req.spec.environment,
            model_data_url=req.spec.model_data_url,
            instance_count=req.instance_count,
            min_instances=req.min_instances,
            max_instances=req.max_instances,
            async_inference=req.spec.async_inference,
            tags={
                "radiant:model": req.spec.model_id,
                "radiant:category": req.spec.category,
                "radiant:specialty": req.spec.specialty,
                **owner_tags(
                    activity.info().workflow_id or "", req.spec.model_id, req.spec.endpoint_name
                ),
            },
        )
        try:
            return await with_heartbeat(self.backend.ensure_endpoint(spec))
        except EndpointFailed as err:  # left Failed by an earlier try: the reason decides
            raise endpoint_failed(err.message, err.failure_reason) from err
        except BackendError as err:
            raise application_error(err) from err

    @activity.defn(name="thermal.wait_in_service")
    async def wait_in_service(self, endpoint_name: str) -> EndpointInfo:
        """One poll. Not ready -> a benign retryable error; the retry policy is the poll loop."""
        try:
            info = await self.backend.describe_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err
        if info is None:
            raise ApplicationError(
                f"endpoint {endpoint_name} does not exist",
                type=ERR_ENDPOINT_MISSING,
                non_retryable=True,
            )
        if info.status == "Failed":
            raise endpoint_failed(
                f"endpoint {endpoint_name} failed: {info.failure_reason or 'no reason given'}",
                info.failure_reason,
            )
        if info.status != "InService":
            raise not_ready(f"endpoint {endpoint_name} is {info.status}")
        return info

    @activity.defn(name="thermal.wait_in_service_on_config")
    async def wait_in_service_on_config(self, req: WaitInServiceInput) -> EndpointInfo:
        """One poll, like wait_in_service, InService on the config asked only. SageMaker ends a
        failed update InService on the old config with a FailureReason (AWS: "the status is
        InService but update operation fails"): that is a failure, not ready. Another config
        without a reason is an update not visible yet: not ready; so is the reason the endpoint
        showed before the update, in the first polls (the same failure again after them)."""
        info = await self.wait_in_service(req.endpoint_name)
        if info.config_name is None or info.config_name == req.config_name:
            return info
        reason = info.failure_reason
        earlier = reason == req.stale_reason and activity.info().attempt <= STALE_REASON_POLLS
        if not reason or earlier:
            raise not_ready(f"endpoint {req.endpoint_name} is not on {req.config_name} yet")
        raise ApplicationError(
            f"endpoint {req.endpoint_name}: the update to {req.config_name} failed and was "
            f"rolled back (it serves {info.config_name}): {reason}",
            type=ERR_UPDATE_ROLLED_BACK,
            non_retryable=True,
        )

    @activity.defn(name="thermal.set_capacity")
    async def set_capacity(self, req: SetCapacityInput) -> EndpointInfo:
        try:
            return await with_heartbeat(
                self.backend.set_capacity(
                    req.endpoint_name, req.instance_count, req.min_instances, req.max_instances
                )
            )
        except BackendError as err:
            raise application_error(err) from err

    @activity.defn(name="thermal.delete_endpoint")
    async def delete_endpoint(self, endpoint_name: str) -> None:
        try:
            info = await self.backend.describe_endpoint(endpoint_name)
            if (owner := other_owner(info)) is not None:
                activity.logger.warning("not deleting %s: %s owns it", endpoint_name, owner)
                return
            await with_heartbeat(self.backend.delete_endpoint(endpoint_name))
        except BackendError as err:
            raise application_error(err) from err

    @activity.defn(name="thermal.describe_endpoint")
    async def describe_endpoint(self, endpoint_name: str) -> EndpointInfo | None:
        """None also for an endpoint whose tags name another owner (a shared name): for this
        workflow there is no endpoint, and it must never scale or delete that one."""
        try:
            info = await self.backend.describe_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err
        return None if other_owner(info) is not None else info

    # ------------------------------------------------------------- postgres mirror
    @activity.defn(name="thermal.load_recorded_target")
    async def load_recorded_target(self, key: RecordKey) -> ThermalState | None:
        if self.engine is None:
            return None
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT target_state FROM thermal_states "
                        "WHERE app_id = :a AND environment = :e AND model_id = :m"
                    ),
                    {"a": key.app_id, "e": key.environment, "m": key.model_id},
                )
            ).first()
        return ThermalState(row[0]) if row else None

    @activity.defn(name="thermal.record")
    async def record(self, req: RecordInput) -> None:
        """One transaction: the state row, the uptime interval, and (once) the notification.
        A record not newer than the row's changes nothing: a retry of a committed one, or a
        late attempt of an older one (Temporal retried it past its timeout and the workflow
        went on) that would otherwise write a state no longer true and reopen an interval."""
        if self.engine is None:
            return
        st = req.status
        now = datetime.now(UTC)
        params = {"a": req.app_id, "e": req.environment, "m": req.model_id}
        async with self.engine.begin() as conn:
            previous = (
                await conn.execute(
                    text(
                        "SELECT instance_count, endpoint_name FROM thermal_states WHERE "
                        "app_id = :a AND environment = :e AND model_id = :m FOR UPDATE"
                    ),
                    params,
                )
            ).first()
            written = (
                await conn.execute(
                    text(
                        """
                    INSERT INTO thermal_states (app_id, environment, model_id, current_state,
                        target_state, instance_count, endpoint_name, transitioning,
                        last_activity_at, last_error, record_at, record_seq, updated_at)
                    VALUES (:a, :e, :m, :cur, :tgt, :n, :ep, :tr, :la, :err, :at, :seq, now())
                    ON CONFLICT (app_id, environment, model_id) DO UPDATE SET
                        current_state = EXCLUDED.current_state,
                        target_state = EXCLUDED.target_state,
                        instance_count = EXCLUDED.instance_count,
                        endpoint_name = EXCLUDED.endpoint_name,
                        transitioning = EXCLUDED.transitioning,
                        last_activity_at = EXCLUDED.last_activity_at,
                        last_error = EXCLUDED.last_error,
                        record_at = EXCLUDED.record_at,
                        record_seq = EXCLUDED.record_seq,
                        updated_at = now()
                    WHERE thermal_states.record_at IS NULL OR EXCLUDED.record_at IS NULL
                        OR (thermal_states.record_at, thermal_states.record_seq)
                            < (EXCLUDED.record_at, EXCLUDED.record_seq)
                    RETURNING 1
                    """
                    ),
                    {
                        **params,
                        "cur": st.current_state.value,
                        "tgt": st.target_state.value,
                        "n": st.instance_count,
                        "ep": st.endpoint_name,
                        "tr": st.transitioning,
                        "la": st.last_activity_at,
                        "err": st.last_error,
                        "at": req.recorded_at,
                        "seq": req.seq,
                    },
                )
            ).first()
            if written is None:
                activity.logger.warning(
                    "thermal.record seq %s of %s skipped: the row holds a newer record",
                    req.seq,
                    req.workflow_id,
                )
                return
            await self._record_uptime(conn, req, now, previous)
            if req.event:
                payload = {
                    "event": req.event,
                    "app_id": req.app_id,
                    "environment": req.environment,
                    "model_id": req.model_id,
                    "state": st.current_state.value,
                    "target_state": st.target_state.value,
                    "instance_count": st.instance_count,
                    "error": st.last_error,
                }
                await conn.execute(
                    text(
                        """
                        INSERT INTO notifications (dedupe_key, kind, app_id, environment,
                            model_id, payload)
                        VALUES (:k, :kind, :a, :e, :m, CAST(:p AS jsonb))
                        ON CONFLICT (dedupe_key) DO NOTHING
                        """
                    ),
                    {
                        **params,
                        # The run id too: a workflow ended and started again under the same id
                        # counts from 1 again, and its notifications are new ones. Retries of
                        # this activity share the run (continue-as-new carries seq on).
                        "k": f"{req.workflow_id}#{activity.info().workflow_run_id}#{req.seq}",
                        "kind": f"thermal.{req.event}",
                        "p": json.dumps(payload, default=str),
                    },
                )

    async def _record_uptime(self, conn, req: RecordInput, now: datetime, previous) -> None:  # type: ignore[no-untyped-def]
        """Keep exactly one open interval while instances run, closed and reopened when the
        count, the endpoint or its rate changes.
        With no interval open, a record opens one only for news (a count read from the backend
        since the last record, a warm-up ready, or a count or endpoint other than the row's):
        an interval ended outside the workflow (`radiant up` stopping the local servers) stays
        ended while the workflow, not knowing yet, records the count it had (the reconcile's
        resync then records the truth)."""
        params = {"a": req.app_id, "e": req.environment, "m": req.model_id}
        open_row = (
            await conn.execute(
                text(
                    "SELECT id, instance_count, endpoint_name, instance_type, billed_hourly "
                    "FROM endpoint_uptime WHERE app_id = :a AND environment = :e "
                    "AND model_id = :m AND ended_at IS NULL FOR UPDATE"
                ),
                params,
            )
        ).first()
        st = req.status
        count = st.instance_count if st.endpoint_status else 0
        billed = (count, st.endpoint_name, req.instance_type, req.billed_hourly)
        if open_row and tuple(open_row[1:]) == billed:
            return  # unchanged
        if open_row:
            await conn.execute(
                text(
                    "UPDATE endpoint_uptime SET ended_at = GREATEST(:t, started_at) WHERE id = :id"
                ),
                {"t": now, "id": open_row[0]},
            )
        news = (
            open_row is not None
            or previous is None
            or req.observed
            or req.event == "ready"
            or (previous[0], previous[1]) != (st.instance_count, st.endpoint_name)
        )
        if count > 0 and news:
            await conn.execute(
                text(
                    """
                    INSERT INTO endpoint_uptime (app_id, environment, model_id, endpoint_name,
                        instance_count, instance_type, billed_hourly, started_at)
                    VALUES (:a, :e, :m, :ep, :n, :it, :rate, :t)
                    """
                ),
                {
                    **params,
                    "ep": st.endpoint_name,
                    "n": count,
                    "it": req.instance_type,
                    "rate": req.billed_hourly,
                    "t": now,
                },
            )
