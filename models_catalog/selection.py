"""Model selection: which model serves a request (seed 001 sections 36.6-36.7), as a pure function.

Inputs are plain data, so the workflow activity, `radiant select` and the tests run the same code:

- the catalog (external and self-hosted models; registry entries are listed, never chosen);
- thermal views of self-hosted models (`model_id -> ThermalView`: state, ready, failed); a model
  missing from the map is in its catalog default state and not running;
- provider health (`provider_id -> HealthView`: status, smoothed latency);
- the providers that are *configured* (credential set; `configured_providers()`).

Filters (every failed one is reported, so an exclusion explains itself): task, input and output
modalities, tenant tier, hosting preference, required capabilities, minimum context window,
HIPAA, provider configured / routable / not unhealthy, model not deprecated, not OFF, not failed,
deployable. Order (seed 001 36.6): HOT > WARM > COLD (self-hosted; external models have no
thermal state and come after them, as in the seed's view), then smoothed latency (unknown last),
then health (healthy, degraded, unknown); then billed price and id, only so that ties are
deterministic (the seed leaves them to the database).

`select_with_fallback` adds the seed's rule: when the best model is a self-hosted one that is not
running, serve this request from the best *ready* model and warm the cold one in the background,
unless the caller requires self-hosted hosting (then it waits for the warm-up). No ready model:
the caller waits for the cold one. The seed's hard-coded default models (gpt-4o-mini, ...) are not
used: they bypass the tier and configuration checks; "no model" is an explained error instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models_catalog.catalog import Catalog
from models_catalog.errors import UnknownModelError
from models_catalog.external import ExternalModel
from models_catalog.types import ModelCategory, ModelStatus, SelfHostedModel, ThermalState

Hosting = Literal["self_hosted", "external", "any"]
HealthStatus = Literal["healthy", "degraded", "unhealthy", "unknown"]
SELF_HOSTED_PROVIDER = "self_hosted"  # provider id of self-hosted rows in the unified registry

# Exclusion reason codes (stable: the LLM workflows map a pinned model's reasons to error types).
R_TASK = "task"
R_MODALITY = "modality"
R_TIER = "tier"
R_HOSTING = "hosting"
R_CAPABILITY = "capability"
R_CONTEXT = "context_window"
R_HIPAA = "hipaa"
R_UNCONFIGURED = "unconfigured"
R_NO_ADAPTER = "no_adapter"
R_PROVIDER_DISABLED = "provider_disabled"
R_UNHEALTHY = "unhealthy"
R_DEPRECATED = "deprecated"
R_OFF = "off"
R_FAILED = "failed"
R_NOT_DEPLOYABLE = "not_deployable"
R_NOT_PINNED = "not_pinned"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ThermalView(_Frozen):
    """What selection needs to know about one self-hosted model in one (app, environment)."""

    state: ThermalState
    ready: bool = False  # an instance is serving now (InService, count > 0)
    failed: bool = False  # its last transition failed and nothing runs
    last_error: str | None = None


class HealthView(_Frozen):
    status: HealthStatus = "unknown"
    avg_latency_ms: int | None = None


class SelectionCriteria(_Frozen):
    """Seed 001 `ModelSelectionCriteria` (the declared but unused preferProvider, maxLatencyMs
    and maxCostPerRequest are left out) plus `model`: pin one model (id or alias), which then
    goes through the same checks so a pinned request fails with the same reasons."""

    task: str = Field(min_length=1)  # chat | completion | embedding | image | ... | inference
    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    tenant_tier: int = Field(ge=1, le=5)
    prefer_hosting: Hosting = "any"
    required_capabilities: list[str] = Field(default_factory=list)
    min_context_window: int | None = Field(default=None, ge=1)
    require_hipaa: bool = False
    model: str | None = None


class Reason(_Frozen):
    code: str
    message: str


class Candidate(_Frozen):
    model_id: str
    display_name: str
    hosting: Literal["self_hosted", "external"]
    provider_id: str
    litellm_route: str | None  # external models: what LiteLLM calls (self-hosted: per backend)
    thermal_state: ThermalState | None
    ready: bool
    warmup_required: bool
    warmup_time_seconds: int | None
    health_status: HealthStatus | None
    avg_latency_ms: int | None
    context_window: int | None
    min_tier: int

    def describe(self) -> str:
        if self.hosting == "self_hosted":
            state = self.thermal_state.value if self.thermal_state else "?"
            run = "running" if self.ready else f"not running, warm-up ~{self.warmup_time_seconds}s"
            return f"{self.model_id} (self-hosted, {state}, {run})"
        latency = f", {self.avg_latency_ms} ms" if self.avg_latency_ms is not None else ""
        return f"{self.model_id} (external via {self.provider_id}, {self.health_status}{latency})"


class Exclusion(_Frozen):
    model_id: str
    hosting: Literal["self_hosted", "external", "registry"]
    reasons: list[Reason]
    does_task: bool  # False: the model does not do this task at all (shown only on request)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def describe(self) -> str:
        return f"{self.model_id}: " + "; ".join(r.message for r in self.reasons)


class Selection(_Frozen):
    criteria: SelectionCriteria
    choice: Candidate | None  # serves this request
    primary: Candidate | None  # the best-ranked model (differs from choice when it is cold)
    warm_up: str | None = None  # self-hosted model to warm in the background
    wait_for_warm_up: bool = False  # choice is not running: the request waits for it
    candidates: list[Candidate]  # ranked, best first
    excluded: list[Exclusion]
    explanation: list[str]


# --------------------------------------------------------------------------- model facts


def self_hosted_tasks(model: SelfHostedModel) -> set[str]:
    """Tasks of a self-hosted model. LLMs do chat and completion (TGI serves both); every other
    model does `inference` (the seed's default primary_mode) and its specialty."""
    if model.category == ModelCategory.LLM_TEXT:
        return {"chat", "completion"}
    return {"inference", model.specialty.value, model.category.value}


def external_tasks(model: ExternalModel) -> set[str]:
    """Tasks of an external model: the seed's derived primary_mode; a chat model also serves a
    plain completion (the prompt becomes one user message)."""
    tasks = {model.primary_mode}
    if model.primary_mode == "chat":
        tasks.add("completion")
    return tasks


def context_window_from_environment(environment: Mapping[str, str]) -> int | None:
    """A self-hosted model's context window: the TGI input limit (`MAX_INPUT_LENGTH`) where its
    container environment sets one. The one rule for selection and `radiant registry`."""
    raw = environment.get("MAX_INPUT_LENGTH")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def self_hosted_context_window(model: SelfHostedModel) -> int | None:
    """The TGI input limit (`MAX_INPUT_LENGTH`) where the model's container sets one."""
    return context_window_from_environment(model.environment)


def known_tasks(catalog: Catalog) -> list[str]:
    """Every task some catalog model does (sorted): a request for any other one has no model."""
    tasks: set[str] = set()
    for model in catalog.models.values():
        tasks |= self_hosted_tasks(model)
    for ext in catalog.external_models.values():
        tasks |= external_tasks(ext)
    return sorted(tasks)


def known_modalities(catalog: Catalog) -> tuple[list[str], list[str]]:
    """Every input and every output modality some catalog model has (each sorted): a request
    for any other one has no model (a misspelling, not an empty result)."""
    inputs: set[str] = set()
    outputs: set[str] = set()
    for model in catalog.models.values():
        inputs.update(model.input_modalities)
        outputs.update(model.output_modalities)
    for ext in catalog.external_models.values():
        inputs.update(ext.input_modalities)
        outputs.update(ext.output_modalities)
    return sorted(inputs), sorted(outputs)


def configured_providers(catalog: Catalog, environ: Mapping[str, str] | None = None) -> set[str]:
    """Providers whose credential variable is set (and which are not disabled)."""
    return {
        p.id
        for p in catalog.providers.values()
        if p.status == "active" and p.is_configured(environ)
    }


def resolve_any_model(catalog: Catalog, name: str) -> tuple[str, str]:
    """(hosting, canonical id) for a self-hosted or external id/alias; UnknownModelError if
    neither knows it. External lookup accepts the id, an alias or the LiteLLM id."""
    key = name.strip()
    ext = _external_by_name(catalog, key)
    if ext is not None:
        return "external", ext.id
    try:
        model_id = catalog.resolve_model_id(key)
    except UnknownModelError as err:
        from models_catalog.catalog import suggest

        names = [*catalog.external_models]
        for m in catalog.external_models.values():
            names += m.aliases
        hints = list(dict.fromkeys([*err.suggestions, *suggest(key.lower(), names)]))[:5]
        raise UnknownModelError(name, hints) from None
    return ("registry" if model_id in catalog.registry_entries else "self_hosted"), model_id


def _external_by_name(catalog: Catalog, name: str) -> ExternalModel | None:
    if name in catalog.external_models:
        return catalog.external_models[name]
    for model in catalog.external_models.values():
        if name in model.aliases or name == model.litellm_id:
            return model
    return None


# --------------------------------------------------------------------------- filtering


def _common_checks(
    c: SelectionCriteria,
    *,
    tasks: set[str],
    inputs: Iterable[str],
    outputs: Iterable[str],
    min_tier: int,
    capabilities: Iterable[str],
    context_window: int | None,
    hipaa: bool,
) -> list[Reason]:
    out: list[Reason] = []
    if c.task not in tasks:
        out.append(Reason(code=R_TASK, message=f"does {', '.join(sorted(tasks))}, not {c.task}"))
    missing_in = sorted(set(c.input_modalities) - set(inputs))
    if missing_in:
        out.append(Reason(code=R_MODALITY, message=f"does not take {', '.join(missing_in)} input"))
    missing_out = sorted(set(c.output_modalities) - set(outputs))
    if missing_out:
        out.append(Reason(code=R_MODALITY, message=f"does not produce {', '.join(missing_out)}"))
    if min_tier > c.tenant_tier:
        out.append(
            Reason(code=R_TIER, message=f"needs tier {min_tier}, tenant is tier {c.tenant_tier}")
        )
    missing_caps = sorted(set(c.required_capabilities) - set(capabilities))
    if missing_caps:
        out.append(Reason(code=R_CAPABILITY, message=f"lacks {', '.join(missing_caps)}"))
    if c.min_context_window is not None:
        if context_window is None:
            out.append(Reason(code=R_CONTEXT, message="context window unknown"))
        elif context_window < c.min_context_window:
            out.append(
                Reason(
                    code=R_CONTEXT,
                    message=f"context window {context_window} < {c.min_context_window} needed",
                )
            )
    if c.require_hipaa and not hipaa:
        out.append(Reason(code=R_HIPAA, message="not HIPAA eligible"))
    return out


def _self_hosted(
    model: SelfHostedModel, c: SelectionCriteria, view: ThermalView | None
) -> Candidate | Exclusion:
    tasks = self_hosted_tasks(model)
    reasons = _common_checks(
        c,
        tasks=tasks,
        inputs=model.input_modalities,
        outputs=model.output_modalities,
        min_tier=model.min_tier,
        capabilities=model.capabilities,
        context_window=self_hosted_context_window(model),
        hipaa=model.hipaa_eligible,
    )
    if c.prefer_hosting == "external":
        reasons.append(Reason(code=R_HOSTING, message="self-hosted; external hosting requested"))
    if model.status == ModelStatus.DEPRECATED:
        reasons.append(Reason(code=R_DEPRECATED, message="deprecated"))
    view = view or ThermalView(state=model.thermal.default_state)
    if view.state == ThermalState.OFF:
        reasons.append(
            Reason(
                code=R_OFF,
                message="OFF in this app/environment (an admin must "
                "set it to COLD, WARM, HOT or AUTOMATIC)",
            )
        )
    # A failed warm-up makes a model unavailable to automatic selection (DESIGN 5); a caller who
    # pins it is new intent and the thermal workflow tries again.
    if view.failed and not view.ready and c.model is None:
        reasons.append(Reason(code=R_FAILED, message=f"last transition failed: {view.last_error}"))
    if reasons:
        return Exclusion(
            model_id=model.id, hosting="self_hosted", reasons=reasons, does_task=c.task in tasks
        )
    return Candidate(
        model_id=model.id,
        display_name=model.display_name,
        hosting="self_hosted",
        provider_id=SELF_HOSTED_PROVIDER,
        litellm_route=None,
        thermal_state=view.state,
        ready=view.ready,
        warmup_required=not view.ready,
        warmup_time_seconds=model.thermal.warmup_time_seconds,
        health_status=None,
        avg_latency_ms=None,
        context_window=self_hosted_context_window(model),
        min_tier=model.min_tier,
    )


def _external(
    catalog: Catalog,
    model: ExternalModel,
    c: SelectionCriteria,
    health: Mapping[str, HealthView],
    configured: Collection[str],
) -> Candidate | Exclusion:
    provider = catalog.providers[model.provider_id]
    tasks = external_tasks(model)
    reasons = _common_checks(
        c,
        tasks=tasks,
        inputs=model.input_modalities,
        outputs=model.output_modalities,
        min_tier=model.min_tier,
        capabilities=model.capabilities,
        context_window=model.context_window,
        hipaa=provider.hipaa_compliant,
    )
    if c.prefer_hosting == "self_hosted":
        reasons.append(Reason(code=R_HOSTING, message="external; self-hosted hosting requested"))
    if model.status == ModelStatus.DEPRECATED:
        reasons.append(Reason(code=R_DEPRECATED, message="deprecated"))
    if provider.status != "active":
        reasons.append(Reason(code=R_PROVIDER_DISABLED, message=f"provider {provider.id} disabled"))
    if provider.litellm_provider is None:
        reasons.append(
            Reason(code=R_NO_ADAPTER, message=f"LiteLLM has no adapter for {provider.id}")
        )
    if provider.id not in configured:
        reasons.append(
            Reason(
                code=R_UNCONFIGURED,
                message=f"provider {provider.id} not configured ({provider.api_key_env} unset)",
            )
        )
    view = health.get(provider.id, HealthView())
    if view.status == "unhealthy":
        reasons.append(Reason(code=R_UNHEALTHY, message=f"provider {provider.id} unhealthy"))
    if reasons:
        return Exclusion(
            model_id=model.id, hosting="external", reasons=reasons, does_task=c.task in tasks
        )
    return Candidate(
        model_id=model.id,
        display_name=model.display_name,
        hosting="external",
        provider_id=provider.id,
        litellm_route=model.litellm_route,
        thermal_state=None,
        ready=True,  # external providers are always ready (seed 001 selectWithFallback)
        warmup_required=False,
        warmup_time_seconds=None,
        health_status=view.status,
        avg_latency_ms=view.avg_latency_ms,
        context_window=model.context_window,
        min_tier=model.min_tier,
    )


# --------------------------------------------------------------------------- ranking

_HEALTH_RANK = {"healthy": 0, "degraded": 1}
_INF = float("inf")


def _thermal_rank(c: Candidate) -> int:
    if c.hosting == "external":
        return 3
    if not c.ready:
        return 2  # COLD, or WARM/HOT still warming: needs a warm-up first
    return 0 if c.thermal_state == ThermalState.HOT else 1


def _price(catalog: Catalog, c: Candidate) -> Decimal:
    if c.hosting == "external":
        p = catalog.external_models[c.model_id].pricing
        return p.billed((p.input_per_1k or Decimal(0)) + (p.output_per_1k or Decimal(0)))
    return catalog.models[c.model_id].pricing.per_request or Decimal(0)


def rank_key(catalog: Catalog, c: Candidate) -> tuple[int, float, int, Decimal, str]:
    latency = float(c.avg_latency_ms) if c.avg_latency_ms is not None else _INF
    return (
        _thermal_rank(c),
        latency,
        _HEALTH_RANK.get(c.health_status or "", 2),
        _price(catalog, c),
        c.model_id,
    )


def rank_models(
    catalog: Catalog,
    criteria: SelectionCriteria,
    thermal: Mapping[str, ThermalView],
    health: Mapping[str, HealthView],
    configured: Collection[str],
) -> tuple[list[Candidate], list[Exclusion]]:
    """Every model that passes the filters, best first, and every other one with its reasons.

    Raises UnknownModelError when `criteria.model` names no model."""
    pinned = resolve_any_model(catalog, criteria.model) if criteria.model else None
    candidates: list[Candidate] = []
    excluded: list[Exclusion] = []
    for ext in catalog.external_models.values():
        _place(_external(catalog, ext, criteria, health, configured), pinned, candidates, excluded)
    for model in catalog.models.values():
        _place(_self_hosted(model, criteria, thermal.get(model.id)), pinned, candidates, excluded)
    for entry in catalog.registry_entries.values():
        reason = Reason(code=R_NOT_DEPLOYABLE, message="registry entry without a deployable spec")
        excl = Exclusion(model_id=entry.id, hosting="registry", reasons=[reason], does_task=False)
        _place(excl, pinned, candidates, excluded)
    candidates.sort(key=lambda cand: rank_key(catalog, cand))
    return candidates, excluded


def _place(
    item: Candidate | Exclusion,
    pinned: tuple[str, str] | None,
    candidates: list[Candidate],
    excluded: list[Exclusion],
) -> None:
    if pinned is not None and item.model_id != pinned[1]:
        return  # a pinned request considers only its model
    if isinstance(item, Candidate):
        candidates.append(item)
    else:
        excluded.append(item)


# --------------------------------------------------------------------------- selection


def select_model(
    catalog: Catalog,
    criteria: SelectionCriteria,
    thermal: Mapping[str, ThermalView],
    health: Mapping[str, HealthView],
    configured: Collection[str],
) -> Selection:
    """The best-ranked model, cold or not (seed 001 `selectModel`)."""
    candidates, excluded = rank_models(catalog, criteria, thermal, health, configured)
    primary = candidates[0] if candidates else None
    wait = primary is not None and primary.warmup_required
    lines = _explain(criteria, primary, primary, None, wait, candidates, excluded)
    return Selection(
        criteria=criteria,
        choice=primary,
        primary=primary,
        wait_for_warm_up=wait,
        candidates=candidates,
        excluded=excluded,
        explanation=lines,
    )


def select_with_fallback(
    catalog: Catalog,
    criteria: SelectionCriteria,
    thermal: Mapping[str, ThermalView],
    health: Mapping[str, HealthView],
    configured: Collection[str],
) -> Selection:
    """Seed 001 `selectWithFallback`: a cold best model is warmed in the background while a
    ready model serves, unless self-hosted hosting is required (then the request waits)."""
    candidates, excluded = rank_models(catalog, criteria, thermal, health, configured)
    primary = candidates[0] if candidates else None
    choice, warm_up, wait = primary, None, False
    if primary is not None and primary.warmup_required:
        ready = next((c for c in candidates if c.ready), None)
        if criteria.prefer_hosting != "self_hosted" and criteria.model is None and ready:
            choice, warm_up = ready, primary.model_id
        else:
            wait = True
    lines = _explain(criteria, choice, primary, warm_up, wait, candidates, excluded)
    return Selection(
        criteria=criteria,
        choice=choice,
        primary=primary,
        warm_up=warm_up,
        wait_for_warm_up=wait,
        candidates=candidates,
        excluded=excluded,
        explanation=lines,
    )


def _explain(
    c: SelectionCriteria,
    choice: Candidate | None,
    primary: Candidate | None,
    warm_up: str | None,
    wait: bool,
    candidates: list[Candidate],
    excluded: list[Exclusion],
) -> list[str]:
    what = f"{c.task} for a tier-{c.tenant_tier} tenant, hosting {c.prefer_hosting}"
    if c.model:
        what += f", model {c.model} requested"
    lines = [f"request: {what}"]
    if choice is None:
        relevant = [e for e in excluded if e.does_task] or excluded
        lines.append(f"no model can serve it ({len(relevant)} excluded)")
    else:
        lines.append(f"chosen: {choice.describe()}")
        if warm_up is not None and primary is not None:
            lines.append(
                f"best model {primary.describe()} is not running: this request is served by "
                f"{choice.model_id} while {warm_up} warms up in the background"
            )
        elif wait:
            lines.append(
                f"the request waits for {choice.model_id} to warm up "
                f"(~{choice.warmup_time_seconds}s)"
            )
        lines.append("order: HOT > WARM > COLD self-hosted, then external; then latency, health")
        for i, cand in enumerate(candidates[:10], start=1):
            lines.append(f"  {i}. {cand.describe()}")
    for excl in excluded:
        if excl.does_task or c.model:
            lines.append(f"excluded {excl.describe()}")
    return lines


__all__ = [
    "Candidate",
    "Exclusion",
    "HealthView",
    "Reason",
    "Selection",
    "SelectionCriteria",
    "ThermalView",
    "configured_providers",
    "context_window_from_environment",
    "external_tasks",
    "known_modalities",
    "known_tasks",
    "rank_models",
    "resolve_any_model",
    "select_model",
    "select_with_fallback",
    "self_hosted_context_window",
    "self_hosted_tasks",
]
