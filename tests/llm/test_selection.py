"""Model selection on tables of cases (pure function: no database, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.errors import UnknownModelError
from models_catalog.selection import (
    R_CONTEXT,
    R_FAILED,
    R_HIPAA,
    R_HOSTING,
    R_NO_ADAPTER,
    R_NOT_DEPLOYABLE,
    R_OFF,
    R_TIER,
    R_UNCONFIGURED,
    R_UNHEALTHY,
    HealthView,
    SelectionCriteria,
    ThermalView,
    configured_providers,
    rank_models,
    select_model,
    select_with_fallback,
)
from models_catalog.types import ThermalState

CAT = load_catalog()
COLD, WARM, HOT, OFF, AUTO = (
    ThermalState.COLD,
    ThermalState.WARM,
    ThermalState.HOT,
    ThermalState.OFF,
    ThermalState.AUTOMATIC,
)
OA_AN = {"openai", "anthropic", "openai-embeddings"}
MISTRAL = "mistral-7b-instruct"
LLAMA = "llama-3-70b-instruct"


def crit(**kw) -> SelectionCriteria:
    kw.setdefault("task", "chat")
    kw.setdefault("tenant_tier", 3)
    return SelectionCriteria(**kw)


def th(state: ThermalState, ready: bool = False, failed: bool = False) -> ThermalView:
    return ThermalView(
        state=state, ready=ready, failed=failed, last_error="boom" if failed else None
    )


# (name, criteria, thermal, health, configured, expected choice, expected warm_up, expected wait)
CASES: list[tuple[Any, ...]] = [
    (
        "tier 1 cannot use the tier-3 self-hosted model",
        crit(tenant_tier=1),
        {},
        {},
        OA_AN,
        "external",
        None,
        False,
    ),
    (
        "cold self-hosted: serve externally, warm in background",
        crit(),
        {},
        {},
        OA_AN,
        "external",
        MISTRAL,
        False,
    ),
    (
        "cold self-hosted required: wait for it",
        crit(prefer_hosting="self_hosted"),
        {},
        {},
        OA_AN,
        MISTRAL,
        None,
        True,
    ),
    (
        "warm self-hosted beats external",
        crit(),
        {MISTRAL: th(WARM, True)},
        {},
        OA_AN,
        MISTRAL,
        None,
        False,
    ),
    (
        "HOT beats WARM",
        crit(tenant_tier=5),
        {MISTRAL: th(WARM, True), LLAMA: th(HOT, True)},
        {},
        OA_AN,
        LLAMA,
        None,
        False,
    ),
    (
        "COLD with instances still running counts as ready",
        crit(),
        {MISTRAL: th(COLD, True)},
        {},
        OA_AN,
        MISTRAL,
        None,
        False,
    ),
    (
        "AUTOMATIC and running is ready",
        crit(),
        {MISTRAL: th(AUTO, True)},
        {},
        OA_AN,
        MISTRAL,
        None,
        False,
    ),
    (
        "WARM still warming is not ready",
        crit(),
        {MISTRAL: th(WARM, False)},
        {},
        OA_AN,
        "external",
        MISTRAL,
        False,
    ),
    (
        "OFF never chosen, even when required",
        crit(prefer_hosting="self_hosted"),
        {MISTRAL: th(OFF)},
        {},
        OA_AN,
        None,
        None,
        False,
    ),
    (
        "no configured provider and cold model: wait for it",
        crit(),
        {},
        {},
        set(),
        MISTRAL,
        None,
        True,
    ),
    ("nothing configured, tier 1: nothing", crit(tenant_tier=1), {}, {}, set(), None, None, False),
    (
        "failed self-hosted model is unavailable",
        crit(prefer_hosting="self_hosted"),
        {MISTRAL: th(COLD, failed=True)},
        {},
        OA_AN,
        None,
        None,
        False,
    ),
    (
        "pinned failed model is tried again",
        crit(model=MISTRAL),
        {MISTRAL: th(COLD, failed=True)},
        {},
        OA_AN,
        MISTRAL,
        None,
        True,
    ),
    (
        "pinned cold model waits (no substitution)",
        crit(model="mistral-7b-v0.3"),
        {},
        {},
        OA_AN,
        MISTRAL,
        None,
        True,
    ),
    (
        "pinned alias of an external model",
        crit(model="gpt-4o"),
        {},
        {},
        OA_AN,
        "openai-gpt-4o",
        None,
        False,
    ),
    (
        "external only",
        crit(prefer_hosting="external"),
        {MISTRAL: th(HOT, True)},
        {},
        OA_AN,
        "external",
        None,
        False,
    ),
    (
        "HIPAA: only a HIPAA provider",
        crit(require_hipaa=True, tenant_tier=1),
        {},
        {},
        OA_AN | {"google"},
        "anthropic",
        None,
        False,
    ),
]


@pytest.mark.parametrize(
    "name,criteria,thermal,health,configured,choice,warm_up,wait", CASES, ids=[c[0] for c in CASES]
)
def test_select_with_fallback(name, criteria, thermal, health, configured, choice, warm_up, wait):
    sel = select_with_fallback(CAT, criteria, thermal, health, configured)
    if choice is None:
        assert sel.choice is None, sel.explanation
    elif choice == "external":
        assert sel.choice is not None and sel.choice.hosting == "external", sel.explanation
    elif choice in CAT.providers:
        assert sel.choice is not None and sel.choice.provider_id == choice, sel.explanation
    else:
        assert sel.choice is not None and sel.choice.model_id == choice, sel.explanation
    assert sel.warm_up == warm_up
    assert sel.wait_for_warm_up == wait
    assert sel.explanation and sel.explanation[0].startswith("request: chat")


def _excluded(sel, model_id):
    return next(e for e in sel.excluded if e.model_id == model_id)


# (criteria, thermal, health, configured, model that must be excluded, reason code)
EXCLUSIONS = [
    (crit(tenant_tier=1), {}, {}, OA_AN, MISTRAL, R_TIER),
    (crit(), {MISTRAL: th(OFF)}, {}, OA_AN, MISTRAL, R_OFF),
    (crit(tenant_tier=5), {}, {}, OA_AN, LLAMA, R_OFF),  # llama's catalog default is OFF
    (crit(), {MISTRAL: th(COLD, failed=True)}, {}, OA_AN, MISTRAL, R_FAILED),
    (crit(), {}, {}, {"openai"}, "anthropic-claude-sonnet-4", R_UNCONFIGURED),
    (crit(), {}, {"openai": HealthView(status="unhealthy")}, OA_AN, "openai-gpt-4o", R_UNHEALTHY),
    (crit(prefer_hosting="external"), {}, {}, OA_AN, MISTRAL, R_HOSTING),
    (crit(prefer_hosting="self_hosted"), {}, {}, OA_AN, "openai-gpt-4o", R_HOSTING),
    (crit(require_hipaa=True), {}, {}, OA_AN, "openai-gpt-4o", R_HIPAA),
    (crit(require_hipaa=True), {}, {}, OA_AN, MISTRAL, R_HIPAA),
    (crit(min_context_window=300_000), {}, {}, OA_AN, "openai-gpt-4o", R_CONTEXT),
    (crit(min_context_window=5_000), {}, {}, OA_AN, MISTRAL, R_CONTEXT),  # MAX_INPUT_LENGTH 4096
    (
        crit(task="image", output_modalities=["image"]),
        {},
        {},
        {"midjourney"},
        "midjourney-v6",
        R_NO_ADAPTER,
    ),
]


@pytest.mark.parametrize("criteria,thermal,health,configured,model_id,code", EXCLUSIONS)
def test_exclusion_reasons(criteria, thermal, health, configured, model_id, code):
    sel = select_with_fallback(CAT, criteria, thermal, health, configured)
    assert all(c.model_id != model_id for c in sel.candidates)
    assert code in _excluded(sel, model_id).codes
    assert any(line.startswith(f"excluded {model_id}:") for line in sel.explanation)


def test_never_chosen_across_many_criteria():
    """Unconfigured providers, non-deployable entries and OFF models never appear as candidates,
    whatever is asked."""
    thermal = {MISTRAL: th(OFF)}
    for task in (
        "chat",
        "completion",
        "embedding",
        "image",
        "search",
        "inference",
        "transcription",
    ):
        for tier in range(1, 6):
            for hosting in ("any", "external", "self_hosted"):
                out = "embedding" if task == "embedding" else "text"
                c = crit(
                    task=task,
                    tenant_tier=tier,
                    prefer_hosting=hosting,
                    output_modalities=[out] if task in ("chat", "completion", "embedding") else [],
                )
                cands, _ = rank_models(CAT, c, thermal, {}, {"openai"})
                for cand in cands:
                    assert cand.model_id not in CAT.registry_entries
                    assert cand.model_id != MISTRAL
                    if cand.hosting == "external":
                        assert cand.provider_id == "openai"
                    assert cand.min_tier <= tier


def test_registry_entry_pinned_is_not_deployable():
    entry = next(iter(CAT.registry_entries))
    sel = select_with_fallback(CAT, crit(model=entry), {}, {}, OA_AN)
    assert sel.choice is None
    assert sel.excluded[0].codes == [R_NOT_DEPLOYABLE]


def test_order_latency_then_health():
    c = crit(tenant_tier=1, prefer_hosting="external")
    health = {
        "openai": HealthView(status="healthy", avg_latency_ms=900),
        "anthropic": HealthView(status="healthy", avg_latency_ms=120),
    }
    cands, _ = rank_models(CAT, c, {}, health, OA_AN)
    assert cands[0].provider_id == "anthropic"
    providers = [x.provider_id for x in cands]
    assert providers.index("openai") > max(i for i, p in enumerate(providers) if p == "anthropic")
    # equal (unknown) latency: healthy before degraded
    health = {"openai": HealthView(status="degraded"), "anthropic": HealthView(status="healthy")}
    cands, _ = rank_models(CAT, c, {}, health, OA_AN)
    assert cands[0].provider_id == "anthropic"


def test_thermal_order_hot_warm_cold_external():
    c = crit(tenant_tier=5)
    thermal = {MISTRAL: th(COLD), LLAMA: th(HOT, True), "qwen-72b-instruct": th(WARM, True)}
    cands, _ = rank_models(CAT, c, thermal, {}, OA_AN)
    assert [x.model_id for x in cands[:3]] == [LLAMA, "qwen-72b-instruct", MISTRAL]
    assert all(x.hosting == "external" for x in cands[3:])


def test_select_model_without_fallback_returns_the_cold_primary():
    sel = select_model(CAT, crit(), {}, {}, OA_AN)
    assert sel.choice is not None and sel.choice.model_id == MISTRAL
    assert sel.wait_for_warm_up and sel.warm_up is None


def test_embedding_and_capabilities():
    sel = select_with_fallback(
        CAT, crit(task="embedding", output_modalities=["embedding"], tenant_tier=1), {}, {}, OA_AN
    )
    assert sel.choice is not None and sel.choice.model_id.startswith("openai-text-embedding")
    sel = select_with_fallback(
        CAT, crit(required_capabilities=["vision"], tenant_tier=1), {}, {}, OA_AN
    )
    assert sel.choice is not None
    assert "vision" in CAT.external_models[sel.choice.model_id].capabilities


def test_unknown_pinned_model_suggests():
    with pytest.raises(UnknownModelError) as err:
        select_with_fallback(CAT, crit(model="gpt-4oo"), {}, {}, OA_AN)
    assert "gpt-4o" in str(err.value)


def test_configured_providers_reads_the_environment():
    assert configured_providers(CAT, {}) == set()
    got = configured_providers(CAT, {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "  "})
    assert got == {"openai", "openai-images", "openai-audio", "openai-embeddings"}


def test_criteria_are_validated():
    with pytest.raises(ValueError):
        SelectionCriteria(task="chat", tenant_tier=6)
    with pytest.raises(ValueError):
        SelectionCriteria(task="chat", tenant_tier=1, prefer_hosting="cloud")  # type: ignore[arg-type]
