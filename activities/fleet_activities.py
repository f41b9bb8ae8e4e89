"""Activities for fleet-wide thermal work: reconcile snapshots, orphan clean-up, bulk changes."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.backends.base import BackendError, EndpointInfo, HostingBackend, endpoint_name
from activities.heartbeat import with_heartbeat
from activities.temporal_errors import application_error
from activities.thermal_control import ThermalControl
from models_catalog.types import ThermalState
from workflows.thermal_types import SetTargetRequest, ThermalStatus, thermal_workflow_id

ENDPOINT_PREFIX = "radiant-"


class ReconcileInput(BaseModel):
    app_id: str | None = None  # None: every app and environment
    environment: str | None = None
    delete_orphans: bool = False


def _scope_prefix(inp: ReconcileInput) -> str:
    """Endpoint-name prefix of the reconciled scope, so a scoped reconcile never calls another
    app's endpoints orphans (names are radiant-{app}-{env}-{model}, see backends.base)."""
    if inp.app_id is None:
        return ENDPOINT_PREFIX
    probe = endpoint_name(inp.app_id, inp.environment or "x", "x")
    return probe[: -len("x-x")] if inp.environment is None else probe[: -len("x")]


class RecordedModel(BaseModel):
    app_id: str
    environment: str
    model_id: str
    endpoint_name: str
    target_state: ThermalState
    instance_count: int
    workflow_running: bool


class FleetSnapshot(BaseModel):
    recorded: list[RecordedModel]
    endpoints: list[EndpointInfo]


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


class FleetActivities:
    def __init__(
        self, backend: HostingBackend, engine: AsyncEngine | None, control: ThermalControl
    ) -> None:
        self.backend = backend
        self.engine = engine
        self.control = control

    @activity.defn(name="fleet.snapshot")
    async def snapshot(self, inp: ReconcileInput) -> FleetSnapshot:
        rows = []
        if self.engine is not None:
            async with self.engine.connect() as conn:
                result = await conn.execute(
                    text(
                        "SELECT app_id, environment, model_id, endpoint_name, target_state, "
                        "instance_count FROM thermal_states "
                        "WHERE (CAST(:a AS text) IS NULL OR app_id = :a) "
                        "AND (CAST(:e AS text) IS NULL OR environment = :e)"
                    ),
                    {"a": inp.app_id, "e": inp.environment},
                )
                rows = list(result)
        recorded = [
            RecordedModel(
                app_id=r[0],
                environment=r[1],
                model_id=r[2],
                endpoint_name=r[3] or "",
                target_state=ThermalState(r[4]),
                instance_count=r[5] or 0,
                workflow_running=await self._running(thermal_workflow_id(r[0], r[1], r[2])),
            )
            for r in rows
        ]
        try:
            endpoints = await self.backend.list_endpoints(_scope_prefix(inp))
        except BackendError as err:
            raise application_error(err) from err
        return FleetSnapshot(recorded=recorded, endpoints=endpoints)

    async def _running(self, workflow_id: str) -> bool:
        try:
            desc = await self.control.client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return False
        return desc.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name="fleet.delete_orphan")
    async def delete_orphan(self, endpoint_name: str) -> None:
        try:
            await self.backend.delete_endpoint(endpoint_name)
        except BackendError as err:
            raise application_error(err) from err

    @activity.defn(name="fleet.report")
    async def report(self, report: ReconcileReport) -> None:
        activity.logger.warning(
            "reconcile: drift=%s orphans=%s",
            report.drift,
            [o.endpoint_name for o in report.orphans],
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
            return BulkItemResult(model_id=item.model_id, ok=True, status=status)
        except Exception as exc:  # a failed model is reported, the others go on
            return BulkItemResult(
                model_id=item.model_id, ok=False, error=str(getattr(exc, "cause", None) or exc)
            )
