"""Typed Python client for service jobs (what `radiant submit` and `radiant jobs` use).

    client = await JobClient.connect(get_settings())
    handle = await client.submit("perception", "detect", tenant="acme", input_uri="/data/cat.png")
    result = await handle.result()          # ServiceResult

`submit` checks the request against the catalog (service, operation, options, optional models)
before it starts a workflow: a mistake raises at once instead of a job id that later fails.
Tenants and input files are left to the worker's plan (the worker may run elsewhere).

A request id names one job of a tenant: submitting the same (tenant, service, operation,
request id) again returns the existing job, running or finished, instead of running (and
billing) it again; only a job that failed or was cancelled (never charged) may run again.

The same job can be started with plain JSON from the Temporal CLI (the worker uses the pydantic
data converter):

    temporal workflow start --task-queue radiant --type ServiceJobWorkflow \\
      --workflow-id job/acme/perception/detect/r1 \\
      --input '{"tenant":"acme","request_id":"r1","service":"perception","operation":"detect",
                "input":{"uri":"/data/cat.png"}}'
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from models_catalog.catalog import Catalog, load_catalog
from models_catalog.operation_options import option_problem, optional_models_choice
from workers.settings import Settings
from workers.temporal import connect, web_ui
from workflows import search_attributes as sa
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import (
    INLINE_LIMIT_BYTES,
    InputRef,
    ServiceRequest,
    ServiceResult,
    job_workflow_id,
    request_id_problem,
)


def input_ref(reference: str, content_type: str | None = None) -> InputRef:
    """`s3://...` or a local path by reference; `inline:<path>` sends a small file inline."""
    if reference.startswith("inline:"):
        data = Path(reference.removeprefix("inline:")).read_bytes()
        if len(data) > INLINE_LIMIT_BYTES:
            raise ValueError(
                f"inline inputs are limited to {INLINE_LIMIT_BYTES // 1024} KiB; pass a path "
                "or an s3:// URI instead"
            )
        return InputRef(inline_base64=base64.b64encode(data).decode(), content_type=content_type)
    if not reference.startswith("s3://"):
        reference = str(Path(reference).expanduser().resolve())
    return InputRef(uri=reference, content_type=content_type)


class NotAJobError(ValueError):
    """The workflow id names another kind of workflow (e.g. a model's thermal workflow)."""


class JobEndedError(ValueError):
    """The job already ended: there is nothing to cancel."""


class JobClient:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        """The catalog the requests are checked against, loaded on first use."""
        if self._catalog is None:
            self._catalog = load_catalog(self.settings.catalog_dir)
        return self._catalog

    def check_request(
        self,
        service: str,
        operation: str,
        options: dict[str, Any],
        optional_models: list[str],
    ) -> None:
        """What the worker's plan would refuse for any tenant, refused before a workflow
        exists: an unknown service or operation raises the catalog's `CatalogError`, a bad
        option or optional model a ValueError. The plan stays the authority."""
        svc = self.catalog.service(service)
        op = self.catalog.operation(svc.id, operation)
        # The plan's own checks, so the messages are the ones the job would fail with; the
        # options as the worker will see them, JSON (a tuple arrives as a list).
        if problem := option_problem(svc.id, op, to_jsonable_python(options)):
            raise ValueError(problem)
        _, problem = optional_models_choice(self.catalog, service, op, optional_models)
        if problem is not None:
            raise ValueError(problem)

    @classmethod
    async def connect(cls, settings: Settings) -> JobClient:
        return cls(await connect(settings), settings)

    async def submit(
        self,
        service: str,
        operation: str,
        *,
        tenant: str,
        input_uri: str,
        options: dict[str, Any] | None = None,
        optional_models: list[str] | None = None,
        request_id: str | None = None,
        user_id: str = "cli",
        app_id: str | None = None,
        environment: str | None = None,
    ) -> WorkflowHandle[Any, ServiceResult]:
        request_id = uuid.uuid4().hex[:12] if request_id is None else request_id
        if problem := request_id_problem(request_id):
            raise ValueError(problem)
        if not tenant.strip():
            raise ValueError("tenant is empty")
        self.check_request(service, operation, options or {}, optional_models or [])
        req = ServiceRequest(
            tenant=tenant.strip(), app_id=app_id or self.settings.app_id,
            environment=environment or self.settings.environment, user_id=user_id,
            request_id=request_id, service=service, operation=operation.strip("/"),
            input=input_ref(input_uri), options=options or {},
            optional_models=optional_models or [],
        )  # fmt: skip
        workflow_id = job_workflow_id(req.tenant, req.service, req.operation, request_id)
        try:
            return await self.client.start_workflow(
                ServiceJobWorkflow.run,
                req,
                id=workflow_id,
                task_queue=self.settings.task_queue,
                search_attributes=sa.job_search_attributes(req),
                # The same request again: join the running job or read the finished one's
                # result, never run (and bill) it twice. A failed or cancelled job was never
                # charged, so a retry after fixing the cause may run.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except WorkflowAlreadyStartedError:  # completed: its result is the answer
            return self.handle(workflow_id)

    def handle(self, workflow_id: str) -> WorkflowHandle[Any, ServiceResult]:
        return self.client.get_workflow_handle(workflow_id, result_type=ServiceResult)

    async def progress(self, workflow_id: str) -> dict[str, Any]:
        return await self.handle(workflow_id).query(ServiceJobWorkflow.progress)

    async def list_jobs(
        self, tenant: str | list[str] | None = None, limit: int = 20
    ) -> list[WorkflowExecution]:
        """`tenant`: one spelling, or several (a job carries the one it was submitted with:
        the tenant's name or its id)."""
        query = "WorkflowType = 'ServiceJobWorkflow'"
        spellings = [tenant] if isinstance(tenant, str) else tenant or []
        if spellings:
            listed = ", ".join(f"'{t.replace(chr(39), '')}'" for t in spellings)
            query += f" AND RadiantTenant IN ({listed})"
        out = []
        async for wf in self.client.list_workflows(query, limit=limit):
            out.append(wf)
        return out

    async def describe_job(self, workflow_id: str) -> WorkflowExecutionDescription:
        """The job's description; NotAJobError when the id names another workflow type."""
        desc = await self.handle(workflow_id).describe()
        if desc.workflow_type != ServiceJobWorkflow.__name__:
            raise NotAJobError(f"{workflow_id} is a {desc.workflow_type}, not a service job")
        return desc

    async def cancel(self, workflow_id: str) -> None:
        """Request cancellation of a running job; NotAJobError for another workflow type,
        JobEndedError for a job that already ended (Temporal would accept and ignore it)."""
        desc = await self.describe_job(workflow_id)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            status = desc.status.name if desc.status else "unknown"
            raise JobEndedError(f"{workflow_id} already ended: {status}; nothing to cancel")
        await self.handle(workflow_id).cancel()

    def web_ui_link(self, workflow_id: str) -> str:
        return web_ui(self.settings, workflow_id)
