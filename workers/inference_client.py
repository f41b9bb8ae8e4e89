"""A Python client with the shape of the AEGIS seed's unified inference client (seed 003):
`chat_completion`, `text_completion`, `embedding`, `get_available_models`, `health`.

Unlike AEGIS (which loaded local models into the caller's GPU), every call starts a durable
workflow (`llm/{tenant}/{kind}/{request_id}`) on the orchestrator's worker; the worker picks the
model, warms self-hosted ones, calls LiteLLM and meters. The same `request_id` twice (for the
same tenant) returns the first answer instead of calling (and billing) again; another tenant's
request id is a different request. Request ids: at most 128 letters, digits, '.', '_', ':', '-'
(ValueError otherwise, before anything starts).

    client = InferenceClient(await connect(settings), tenant="acme", task_queue="radiant")
    resp = await client.chat_completion(model_key="gpt-4o",
                                        messages=[{"role": "user", "content": "Hello!"}])
    resp.content, resp.usage, resp.finish_reason
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.llm.types import (
    LLMKind,
    LLMRequest,
    LLMResponse,
    llm_workflow_id,
    request_id_problem,
)
from models_catalog.catalog import Catalog, load_catalog
from models_catalog.selection import (
    SelectionCriteria,
    ThermalView,
    configured_providers,
    rank_models,
)
from workflows import search_attributes as sa
from workflows.llm import WORKFLOW_BY_KIND


class InferenceClient:
    def __init__(
        self,
        client: Client,
        *,
        tenant: str,
        task_queue: str = "radiant",
        app_id: str = "radiant",
        environment: str = "dev",
        catalog: Catalog | None = None,
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.task_queue = task_queue
        self.app_id = app_id
        self.environment = environment
        self.catalog = catalog or load_catalog()

    # ------------------------------------------------------------------ calls
    async def chat_completion(
        self,
        model_key: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> LLMResponse:
        """Chat. `model_key` None: the selector chooses (options: prefer_hosting, ...)."""
        return await self._run("chat", model_key, messages=messages or [], **options)

    async def text_completion(
        self, model_key: str | None = None, prompt: str = "", **options: Any
    ) -> LLMResponse:
        return await self._run("completion", model_key, prompt=prompt, **options)

    async def embedding(
        self,
        model_key: str | None = None,
        input: str | list[str] = "",
        **options: Any,  # noqa: A002
    ) -> LLMResponse:
        texts = [input] if isinstance(input, str) else list(input)
        return await self._run("embedding", model_key, input=texts, **options)

    async def _run(self, kind: LLMKind, model_key: str | None, **fields: Any) -> LLMResponse:
        request_id = fields.pop("request_id", None)
        request_id = uuid.uuid4().hex if request_id is None else request_id
        if problem := request_id_problem(request_id):
            raise ValueError(problem)
        if not self.tenant.strip():
            raise ValueError("tenant is empty")
        req = LLMRequest(
            request_id=request_id,
            tenant=self.tenant,
            app_id=self.app_id,
            environment=self.environment,
            model=model_key,
            **fields,
        )
        workflow_id = llm_workflow_id(self.tenant.strip(), kind, request_id)
        pairs = [
            SearchAttributePair(sa.APP, self.app_id),
            SearchAttributePair(sa.ENVIRONMENT, self.environment),
        ]
        if model_key:
            pairs.append(SearchAttributePair(sa.MODEL, model_key))
        try:
            handle = await self.client.start_workflow(
                WORKFLOW_BY_KIND[kind].run,  # type: ignore[attr-defined]
                req,
                id=workflow_id,
                task_queue=self.task_queue,
                # Same request id: join the running request, or read the answered one's
                # answer (never call and bill twice); one that failed or was cancelled was
                # never charged, so it may run again (as jobs do; its claim is taken over).
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes(pairs),
            )
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(workflow_id, result_type=LLMResponse)
        return await handle.result()

    # ------------------------------------------------------------------ discovery
    def get_available_models(
        self,
        task: str | None = None,
        *,
        tenant_tier: int = 5,
        thermal: Mapping[str, ThermalView] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Models that could serve `task` (chat, completion, embedding; None: all three) for a
        tenant of `tenant_tier`, best first, judged from the catalog, the given thermal views and
        the provider keys in `environ` (default: this process's environment, which should match
        the worker's)."""
        env = os.environ if environ is None else environ
        configured = configured_providers(self.catalog, env)
        out: dict[str, dict[str, Any]] = {}
        for kind in [task] if task else ["chat", "completion", "embedding"]:
            output = "embedding" if kind == "embedding" else "text"
            crit = SelectionCriteria(task=kind, tenant_tier=tenant_tier, output_modalities=[output])
            cands, _ = rank_models(self.catalog, crit, thermal or {}, {}, configured)
            for c in cands:
                row = out.setdefault(
                    c.model_id,
                    {
                        "model_key": c.model_id,
                        "display_name": c.display_name,
                        "hosting": c.hosting,
                        "provider": c.provider_id,
                        "tasks": [],
                        "context_window": c.context_window,
                        "min_tier": c.min_tier,
                        "ready": c.ready,
                        "thermal_state": c.thermal_state.value if c.thermal_state else None,
                    },
                )
                row["tasks"].append(kind)
        return list(out.values())

    async def health(self) -> dict[str, Any]:
        """Is Temporal reachable, and which providers have keys here."""
        try:
            ok = await self.client.service_client.check_health()
            temporal = "ok" if ok else "not serving"
        except Exception as exc:  # noqa: BLE001 - report, do not raise
            temporal = f"error: {exc}"
        return {
            "temporal": temporal,
            "task_queue": self.task_queue,
            "configured_providers": sorted(configured_providers(self.catalog)),
            "self_hosted_llms": [
                m.id for m in self.catalog.models.values() if m.category.value == "llm_text"
            ],
        }
