"""Client-side control of thermal workflows (CLI, bulk updates, service workflows' activities).

Each (app, env, model) has one long-lived workflow; every call is update-with-start with
USE_EXISTING, so the first caller creates it and everyone else talks to the same one.
Every (app, env) entering here is checked first (activities/app_scope.py): ids holding a `/`
would name another pair's workflow.
"""

from __future__ import annotations

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from activities.app_scope import AppScope, check_pair
from workflows import search_attributes as sa
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import (
    ModelThermalInput,
    SetTargetRequest,
    ThermalStatus,
    ThermalTimings,
    WarmUpRequest,
    thermal_workflow_id,
)


class ThermalControl:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        timings: ThermalTimings | None = None,
        apps: AppScope | None = None,
    ):
        self.client = client
        self.task_queue = task_queue
        self.timings = timings or ThermalTimings()
        self.apps = apps or AppScope()  # no thermal workflow starts outside it

    def _start_op(self, app_id: str, env: str, model_id: str) -> WithStartWorkflowOperation:
        self.apps.check(app_id, env)  # InvalidAppIdError, AppNotServedError
        return WithStartWorkflowOperation(
            ModelThermalWorkflow.run,
            ModelThermalInput(
                app_id=app_id, environment=env, model_id=model_id, timings=self.timings
            ),
            id=thermal_workflow_id(app_id, env, model_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.APP, app_id),
                    SearchAttributePair(sa.ENVIRONMENT, env),
                    SearchAttributePair(sa.MODEL, model_id),
                ]
            ),
        )

    async def set_target(
        self, app_id: str, env: str, model_id: str, req: SetTargetRequest
    ) -> ThermalStatus:
        return await self.client.execute_update_with_start_workflow(
            ModelThermalWorkflow.set_target,
            req,
            start_workflow_operation=self._start_op(app_id, env, model_id),
        )

    async def warm_up(
        self, app_id: str, env: str, model_id: str, req: WarmUpRequest | None = None
    ) -> ThermalStatus:
        return await self.client.execute_update_with_start_workflow(
            ModelThermalWorkflow.warm_up,
            req or WarmUpRequest(),
            start_workflow_operation=self._start_op(app_id, env, model_id),
        )

    def handle(self, app_id: str, env: str, model_id: str) -> WorkflowHandle:
        """The pair's workflow (status, signals); not the scope check: a pair taken out of
        RADIANT_APPS may still be looked at. A malformed id: InvalidAppIdError."""
        check_pair(app_id, env)
        return self.client.get_workflow_handle(thermal_workflow_id(app_id, env, model_id))

    async def status(self, app_id: str, env: str, model_id: str) -> ThermalStatus:
        return await self.handle(app_id, env, model_id).query(ModelThermalWorkflow.status)
