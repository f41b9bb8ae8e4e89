"""Activities of the LLM workflows: plan (tenant, validation, selection), hold a self-hosted model
warm, call LiteLLM, meter.

Secrets stay in the worker: provider keys are read from the worker's environment when a call is
made and never enter a Temporal payload.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError

from activities.db.errors import not_migrated_message
from activities.heartbeat import with_heartbeat
from activities.llm import calls
from activities.llm import deployments as deps
from activities.llm.costs import litellm_cost, price_call
from activities.llm.ledger import record_llm_usage, record_unbilled_llm_call
from activities.llm.state import find_tenant, health_views, thermal_views
from activities.llm.types import (
    ERR_ALREADY_ANSWERED,
    ERR_ALREADY_RUNNING,
    ERR_CONTEXT_WINDOW,
    ERR_METERING_FAILED,
    ERR_MODEL_UNAVAILABLE,
    ERR_NO_DEPLOYMENT,
    ERR_NO_MODEL,
    ERR_NOT_MIGRATED,
    ERR_PAYLOAD_TOO_LARGE,
    ERR_TIER_TOO_LOW,
    ERR_UNKNOWN_MODEL,
    ERR_UNKNOWN_TENANT,
    MAX_EMBEDDING_INPUTS,
    LLMCallInput,
    LLMCallResult,
    LLMKind,
    LLMPlan,
    LLMRequest,
    MeterInput,
    MeterResult,
    WarmUpHold,
    WarmUpHoldResult,
)
from activities.request_claims import claim_request, llm_request_key
from activities.temporal_errors import from_update_failure, rejection
from activities.thermal_control import ThermalControl
from models_catalog.catalog import Catalog
from models_catalog.errors import UnknownModelError
from models_catalog.selection import (
    R_CONTEXT,
    R_NO_ADAPTER,
    R_PROVIDER_DISABLED,
    R_TIER,
    R_UNCONFIGURED,
    R_UNHEALTHY,
    Exclusion,
    SelectionCriteria,
    configured_providers,
    rank_models,
    resolve_any_model,
    select_with_fallback,
    self_hosted_context_window,
)
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import WarmUpRequest

log = logging.getLogger(__name__)

# Token estimates for automatic selection and self-hosted models (o200k tokenizer): their own
# tokenizers are not bundled offline, so a near limit is judged approximately; TGI still refuses.
DEFAULT_TOKENIZER_MODEL = "gpt-4o"


class PrepareInput(BaseModel):
    kind: LLMKind
    request: LLMRequest


class LLMActivities:
    def __init__(
        self,
        catalog: Catalog,
        engine: AsyncEngine | None,
        control: ThermalControl,
        *,
        backend_kind: str,
        data_dir: Path,
        aws_region: str | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        timeout_seconds: float = calls.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.control = control
        self.backend_kind = backend_kind
        self.data_dir = Path(data_dir)
        self.aws_region = aws_region
        self.environ = os.environ if environ is None else environ
        # Per-model extra litellm_params (tests: mock_response, api_base of a local fake).
        self.overrides: Mapping[str, Mapping[str, Any]] = overrides if overrides is not None else {}
        self.routers = calls.RouterCache(timeout=timeout_seconds)

    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise ApplicationError("the worker has no database connection", non_retryable=True)
        return self.engine

    # ------------------------------------------------------------------ plan
    @activity.defn(name="llm.prepare")
    async def prepare(self, inp: PrepareInput) -> LLMPlan:
        """Tenant, model, token estimate and selection; every refusal happens here, before cost."""
        try:
            return await self._prepare(inp)
        except DBAPIError as err:
            # A table the migrations create is missing: no retry can help, and the caller
            # (the CLI, an API client) should read the to-do, not SQL. Anything else
            # (connection lost, server restarting ...) stays retryable.
            if (refusal := not_migrated(err)) is not None:
                raise refusal from None
            raise

    async def _prepare(self, inp: PrepareInput) -> LLMPlan:
        req = inp.request
        self.control.apps.check(req.app_id, req.environment)  # AppNotServed
        engine = self._engine()
        tenant = await find_tenant(engine, req.tenant)
        if tenant is None:
            raise rejection(f"unknown tenant {req.tenant!r}", ERR_UNKNOWN_TENANT)
        pinned = None
        if req.model:
            try:
                pinned = resolve_any_model(self.catalog, req.model)[1]
            except UnknownModelError as err:
                raise rejection(str(err), ERR_UNKNOWN_MODEL) from err
        if inp.kind == "embedding" and len(req.input) > MAX_EMBEDDING_INPUTS:
            raise rejection(
                f"{len(req.input)} inputs in one embedding request; at most "
                f"{MAX_EMBEDDING_INPUTS} (their vectors travel through the workflow history): "
                "split the batch",
                ERR_PAYLOAD_TOO_LARGE,
            )
        tokens = self._count_tokens(inp.kind, req, pinned)
        max_tokens = req.max_tokens if inp.kind != "embedding" else None
        needed = tokens + (max_tokens or 0)
        criteria = SelectionCriteria(
            task=inp.kind,
            input_modalities=["text"],
            output_modalities=["embedding" if inp.kind == "embedding" else "text"],
            tenant_tier=tenant.tier,
            prefer_hosting=req.prefer_hosting,  # type: ignore[arg-type]  # checked by the workflow
            required_capabilities=req.required_capabilities,
            min_context_window=max(1, needed),
            require_hipaa=req.require_hipaa,
            model=pinned,
        )
        thermal = await thermal_views(engine, req.app_id, req.environment)
        health = await health_views(engine)
        configured = configured_providers(self.catalog, self.environ)
        selection = select_with_fallback(self.catalog, criteria, thermal, health, configured)
        choice = selection.choice
        if choice is None:
            raise _refusal(self.catalog, pinned, selection.excluded, tokens, max_tokens)
        # The catalog's fallbacks that pass the same checks (HIPAA, tier, context window,
        # capabilities, provider configured and healthy): a fallback must not serve a request
        # its primary's selection would have refused it.
        unpinned = (
            selection.candidates  # already every model that passes
            if criteria.model is None
            else rank_models(
                self.catalog, criteria.model_copy(update={"model": None}), thermal, health,
                configured,
            )[0]
        )  # fmt: skip
        eligible = {c.model_id for c in unpinned}
        ext = self.catalog.external_models.get(choice.model_id)
        fallbacks = [m for m in (ext.fallbacks if ext else []) if m in eligible]
        await self._claim(tenant.id, inp.kind, req.request_id)
        return LLMPlan(
            tenant_id=tenant.id,
            tenant_tier=tenant.tier,
            model_id=choice.model_id,
            hosting=choice.hosting,
            provider_id=choice.provider_id,
            wait_for_warm_up=selection.wait_for_warm_up,
            warm_up=selection.warm_up,
            prompt_tokens=tokens,
            explanation=selection.explanation[:15],
            fallbacks=fallbacks,
        )

    async def _claim(self, tenant_id: str, kind: str, request_id: str) -> None:
        """Take the request for this workflow, or refuse it: another workflow for the same
        request id of the tenant (spelled another way) runs it or has answered it."""
        info = activity.info()
        conflict = await claim_request(
            self._engine(),
            self.control.client,
            tenant_id,
            llm_request_key(kind, request_id),
            info.workflow_id or info.activity_id,
        )
        if conflict is None:
            return
        if conflict.running:
            raise rejection(
                f"request id {request_id} ({kind}) of this tenant is being answered by "
                f"{conflict.workflow_id}; wait for that workflow's answer, or use a new request id",
                ERR_ALREADY_RUNNING,
            )
        raise rejection(
            f"request id {request_id} ({kind}) of this tenant was already answered (and charged) "
            f"by {conflict.workflow_id}; use a new request id to ask again",
            ERR_ALREADY_ANSWERED,
        )

    def _count_tokens(self, kind: str, req: LLMRequest, pinned: str | None) -> int:
        from litellm import token_counter

        model = DEFAULT_TOKENIZER_MODEL
        if pinned in self.catalog.external_models:
            model = self.catalog.external_models[pinned].litellm_route
        if kind == "chat":
            return int(token_counter(model=model, messages=req.messages))
        if kind == "completion":
            return int(token_counter(model=model, text=req.prompt or ""))
        # Embeddings: every input must fit the model on its own.
        return max((int(token_counter(model=model, text=t)) for t in req.input), default=0)

    # ------------------------------------------------------------------ thermal
    @activity.defn(name="llm.hold_warm")
    async def hold_warm(self, req: WarmUpHold) -> WarmUpHoldResult:
        """Wait until the model is ready and hold a lease on it (released by the workflow).
        Heartbeats while a cold model warms, so a dead worker is noticed."""
        try:
            status = await with_heartbeat(
                self.control.warm_up(
                    req.app_id,
                    req.environment,
                    req.model_id,
                    WarmUpRequest(
                        requester=req.requester,
                        deadline_seconds=req.deadline_seconds,
                        lease_id=req.lease_id,
                        lease_seconds=req.lease_seconds,
                    ),
                )
            )
        except WorkflowUpdateFailedError as err:
            raise from_update_failure(err) from err
        return WarmUpHoldResult(
            endpoint_name=status.endpoint_name, ready=status.ready, state=status.current_state.value
        )

    @activity.defn(name="llm.start_warm_up")
    async def start_warm_up(self, req: WarmUpHold) -> None:
        """Start a warm-up and return once the thermal workflow accepted it (the request that
        asked is served elsewhere meanwhile)."""
        control = self.control
        await control.client.start_update_with_start_workflow(
            ModelThermalWorkflow.warm_up,
            WarmUpRequest(requester=req.requester, deadline_seconds=req.deadline_seconds),
            start_workflow_operation=control._start_op(req.app_id, req.environment, req.model_id),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )

    # ------------------------------------------------------------------ call
    @activity.defn(name="llm.call")
    async def call(self, inp: LLMCallInput) -> LLMCallResult:
        model_list, fallbacks = self.model_list_for(inp)
        try:
            router = self.routers.get(model_list, fallbacks)
        except Exception as exc:  # a route LiteLLM refuses: the same on every retry
            raise calls.as_application_error(exc) from exc
        raw = await calls.invoke(router, inp)
        owner = {d["model_info"]["id"]: d for d in model_list}
        served = owner.get(raw.deployment_id)
        if served is None:  # LiteLLM always reports it; be loud if a release stops doing so
            log.warning("LiteLLM did not report the serving deployment (%r)", raw.deployment_id)
            served = next(d for d in model_list if d["model_name"] == inp.model_id)
        model_id = served["model_name"]
        return LLMCallResult(
            model_id=model_id,
            served_by=served["model_info"]["id"],
            provider_id=served["model_info"]["provider"],
            hosting=served["model_info"]["hosting"],
            fallback_used=model_id != inp.model_id,
            content=raw.content,
            embeddings=raw.embeddings,
            finish_reason=raw.finish_reason,
            usage=raw.usage,
            cost=price_call(self.catalog, model_id, raw.usage, litellm_cost(raw.reported_cost)),
            latency_ms=raw.latency_ms,
        )

    def model_list_for(self, inp: LLMCallInput) -> tuple[list[deps.Deployment], list[Any]]:
        """Deployments of the requested model and (external models) of its fallbacks."""
        groups = [inp.model_id]
        ext = self.catalog.external_models.get(inp.model_id)
        if ext is not None and inp.allow_fallbacks:
            # the plan's eligible ones (None: planned before plans chose them)
            groups += ext.fallbacks if inp.fallbacks is None else inp.fallbacks
        model_list: list[deps.Deployment] = []
        for group in groups:
            model_list += self._deployments(group, inp.app_id, inp.environment)
        if not any(d["model_name"] == inp.model_id for d in model_list):
            if ext is not None:
                provider = self.catalog.providers[ext.provider_id]
                raise ApplicationError(
                    f"model {ext.id} cannot be called: provider {provider.id} is not configured "
                    f"({provider.api_key_env} unset) or has no LiteLLM adapter",
                    type=ERR_MODEL_UNAVAILABLE,
                    non_retryable=True,
                )
            raise ApplicationError(
                f"no running instance of {inp.model_id} answers yet", type=ERR_NO_DEPLOYMENT
            )
        return model_list, deps.fallbacks_for(self.catalog, {d["model_name"] for d in model_list})

    def _deployments(self, model_id: str, app_id: str, env: str) -> list[deps.Deployment]:
        extra = self.overrides.get(model_id)
        if model_id in self.catalog.external_models:
            dep = deps.external_deployment(
                self.catalog,
                self.catalog.external_models[model_id],
                key_style="value",
                environ=self.environ,
                overrides=extra,
            )
            return [dep] if dep is not None else []
        model = self.catalog.models[model_id]
        endpoint = deps.self_hosted_endpoint(app_id, env, model_id)
        if self.backend_kind == "sagemaker":
            return [
                deps.sagemaker_deployment(model, endpoint, region=self.aws_region, overrides=extra)
            ]
        instances = deps.local_instances(self.data_dir, endpoint)
        return deps.local_deployments(model, endpoint, instances, overrides=extra)

    # ------------------------------------------------------------------ meter
    @activity.defn(name="llm.meter")
    async def meter(self, inp: MeterInput) -> MeterResult:
        try:
            return await record_llm_usage(self._engine(), inp)
        except ValueError as exc:
            raise _unrecordable(f"usage of {inp.workflow_id} cannot be metered", exc) from None

    @activity.defn(name="llm.record_unbilled_call")
    async def record_unbilled_call(self, inp: MeterInput) -> MeterResult:
        """A call that will not be charged (`inp.unbilled`: cancelled while it ran): its cost,
        billed 0, once per run, leaving the request's claim open. An activity of its own, not
        a mode of `llm.meter`: a worker of an older version never takes it for a charge."""
        run_id = activity.info().workflow_run_id or ""
        try:
            return await record_unbilled_llm_call(self._engine(), inp, run_id)
        except ValueError as exc:
            raise _unrecordable(f"cost of {inp.workflow_id} cannot be recorded", exc) from None


def _unrecordable(what: str, exc: ValueError) -> ApplicationError:
    """A ledger row that cannot be written (e.g. a key too long): retrying cannot help, so
    the activity must not loop."""
    return ApplicationError(f"{what}: {exc}", type=ERR_METERING_FAILED, non_retryable=True)


def not_migrated(err: DBAPIError) -> ApplicationError | None:
    """The to-do for a database the migrations have not prepared (a table they create is
    missing), worded as the CLI words it (`workers.cli.common.not_migrated`); None for any other
    database error. Non-retryable, but not BENIGN: it is the operator's incident."""
    orig = err.orig
    if not isinstance(orig, psycopg.errors.UndefinedTable):
        return None
    what = str(orig).strip().splitlines()[0]  # not the SQL position lines under it
    return ApplicationError(
        not_migrated_message(what),
        type=ERR_NOT_MIGRATED,
        non_retryable=True,
    )


# Reasons that are the provider's, not the request's: the same for every request, an operator's
# to fix. Such exclusions are summarised per reason after the ones the caller can act on.
_PROVIDER_REASONS = {
    R_PROVIDER_DISABLED: "provider disabled",
    R_NO_ADAPTER: "no LiteLLM adapter",
    R_UNCONFIGURED: "provider not configured",
    R_UNHEALTHY: "provider unhealthy",
}
_SHOWN = 3  # request-specific entries named one by one (models with the same reasons share one)
_SHOWN_PROVIDERS = 8


def _tokens(input_tokens: int, max_tokens: int | None) -> str:
    if max_tokens:
        return f"the input (~{input_tokens} tokens) plus max_tokens {max_tokens} exceed"
    return f"the input (~{input_tokens} tokens) exceeds"


def _context_window(catalog: Catalog, model_id: str) -> int | None:
    if model_id in catalog.external_models:
        return catalog.external_models[model_id].context_window
    if model_id in catalog.models:
        return self_hosted_context_window(catalog.models[model_id])
    return None


def _refusal(
    catalog: Catalog,
    pinned: str | None,
    excluded: list[Exclusion],
    input_tokens: int,
    max_tokens: int | None,
) -> ApplicationError:
    """The error for "no model": a pinned model's own reasons, or a summary that names first
    what the caller can act on (tier, context window, a model OFF, ...) and folds the models
    whose provider cannot be used (not configured, ...) into one short clause per reason."""
    if pinned is not None:
        excl = next(e for e in excluded if e.model_id == pinned)
        codes = excl.codes
        kind = (
            ERR_TIER_TOO_LOW
            if R_TIER in codes
            else ERR_CONTEXT_WINDOW
            if R_CONTEXT in codes
            else ERR_MODEL_UNAVAILABLE
        )
        message = f"model {excl.describe()}"
        if R_CONTEXT in codes and max_tokens:
            message += f" (~{input_tokens} input tokens plus max_tokens {max_tokens})"
        return rejection(message, kind)
    relevant = [e for e in excluded if e.does_task]
    if not relevant:
        return rejection("no model in the catalog does what this request asks", ERR_NO_MODEL)
    if all(R_CONTEXT in e.codes for e in relevant):
        windows = [(w, e.model_id) for e in relevant if (w := _context_window(catalog, e.model_id))]
        largest = max(windows, default=None)
        biggest = f" (the largest: {largest[1]}, {largest[0]} tokens)" if largest else ""
        return rejection(
            f"{_tokens(input_tokens, max_tokens)} the context window of every model that could "
            f"serve it{biggest}",
            ERR_CONTEXT_WINDOW,
        )
    # A model whose provider cannot be used is the operator's to fix whatever else excludes it.
    generic = [e for e in relevant if _PROVIDER_REASONS.keys() & set(e.codes)]
    specific = [e for e in relevant if e not in generic]
    # Models with the same reasons share one entry; fewest reasons (closest to serving) first,
    # self-hosted before external, then catalog order (the sort is stable).
    entries: dict[str, list[Exclusion]] = {}
    for excl in specific:
        entries.setdefault(" and ".join(r.message for r in excl.reasons), []).append(excl)
    ranked = sorted(
        entries.items(),
        key=lambda item: (len(item[1][0].reasons), item[1][0].hosting != "self_hosted"),
    )
    parts = [f"{', '.join(e.model_id for e in group)}: {why}" for why, group in ranked[:_SHOWN]]
    hidden = sum(len(group) for _, group in ranked[_SHOWN:])
    if hidden:
        parts.append(f"{hidden} more excluded for other reasons")
    by_reason: dict[str, list[Exclusion]] = {}
    for excl in generic:
        code = next(c for c in _PROVIDER_REASONS if c in excl.codes)
        by_reason.setdefault(code, []).append(excl)
    for code in _PROVIDER_REASONS:
        group = by_reason.get(code, [])
        if not group:
            continue
        providers = list(dict.fromkeys(_provider(catalog, e.model_id) for e in group))
        names = ", ".join(providers[:_SHOWN_PROVIDERS])
        if len(providers) > _SHOWN_PROVIDERS:
            names += f", +{len(providers) - _SHOWN_PROVIDERS} more"
        models = f"{len(group)} external model{'s' if len(group) > 1 else ''}"
        parts.append(f"{models}: {_PROVIDER_REASONS[code]} ({names})")
    head = "no model can serve this request"
    if max_tokens and any(R_CONTEXT in e.codes for _, g in ranked[:_SHOWN] for e in g):
        head += f" (~{input_tokens} input tokens plus max_tokens {max_tokens})"
    return rejection(f"{head}: {'; '.join(parts)}", ERR_NO_MODEL)


def _provider(catalog: Catalog, model_id: str) -> str:
    ext = catalog.external_models.get(model_id)
    return ext.provider_id if ext is not None else model_id
