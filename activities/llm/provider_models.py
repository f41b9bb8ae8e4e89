"""Daily full sync, model lists: what each provider says it serves versus the catalog.

Seed 001 `syncProviderModels` listed OpenAI's models, stubbed Google, and for Anthropic compared
against a hand-kept KNOWN list that predates Claude 4.5, so every current Claude model would have
been marked deprecated. Here the "known" list of every provider *is the catalog* (no second
list to go stale), and nothing is ever deprecated or inserted automatically:

- a listed model the catalog does not have -> logged for review ("new model discovered");
- a catalog model the provider does not list -> logged for review (it may be retired, or the
  key may lack access); a person decides, through the catalog.

Providers are listed only when configured (their key is set); otherwise "skipped: unconfigured".
Providers sharing an account (openai, openai-images, ...) are listed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, Field

from activities.llm.health import auth_headers
from models_catalog.catalog import Catalog
from models_catalog.external import Provider

# LiteLLM provider -> query string its list endpoint needs to return everything on one page.
_LIST_QUERY = {"anthropic": {"limit": "1000"}, "gemini": {"pageSize": "1000"}}
# Providers whose API has a model list (GET {root}/models). Others are skipped.
LISTABLE = {"openai", "anthropic", "gemini", "mistral", "deepseek", "xai", "cohere", "voyage"}


class ProviderListing(BaseModel):
    provider_ids: list[str]  # catalog providers sharing this account
    status: str  # listed | skipped: unconfigured | skipped: no list API | error: ...
    listed: int = 0
    unknown: list[str] = Field(default_factory=list)  # provider lists it, catalog does not
    missing: list[str] = Field(default_factory=list)  # catalog has it, provider does not list it


class ModelsReport(BaseModel):
    listings: list[ProviderListing]

    @property
    def discovered(self) -> int:
        return sum(len(x.unknown) for x in self.listings)


def _names(payload: Any) -> set[str]:
    if not isinstance(payload, dict):
        return set()
    rows = payload.get("data") or payload.get("models") or []
    out = set()
    for row in rows:
        if isinstance(row, dict):
            name = row.get("id") or row.get("name")
            if isinstance(name, str):
                out.add(name.removeprefix("models/"))
    return out


async def list_models(provider: Provider, key: str, base: str, timeout_s: float = 10.0) -> set[str]:
    params = _LIST_QUERY.get(provider.litellm_provider or "", {})
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        resp = await client.get(
            f"{base.rstrip('/')}/models", params=params, headers=auth_headers(provider, key)
        )
    resp.raise_for_status()
    return _names(resp.json())


async def sync_provider_models(
    catalog: Catalog,
    environ: Mapping[str, str],
    base_overrides: Mapping[str, str] | None = None,
) -> ModelsReport:
    groups: dict[tuple[str, str, str], list[Provider]] = {}
    for p in catalog.providers.values():
        if p.status != "active":
            continue
        base = (base_overrides or {}).get(p.id) or p.api_base or p.vendor_api_url or ""
        groups.setdefault((p.litellm_provider or "", p.api_key_env, base), []).append(p)
    listings = []
    for (lp, key_env, base), members in groups.items():
        ids = [p.id for p in members]
        key = environ.get(key_env, "").strip()
        if lp not in LISTABLE or not base:
            listings.append(ProviderListing(provider_ids=ids, status="skipped: no list API"))
            continue
        if not key:
            listings.append(ProviderListing(provider_ids=ids, status="skipped: unconfigured"))
            continue
        try:
            listed = await list_models(members[0], key, base)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            listings.append(
                ProviderListing(
                    provider_ids=ids, status=f"error: {type(exc).__name__}: {exc}"[:300]
                )
            )
            continue
        ours = {m.model_id for m in catalog.external_models.values() if m.provider_id in ids}
        listings.append(
            ProviderListing(
                provider_ids=ids,
                status="listed",
                listed=len(listed),
                unknown=sorted(listed - ours),
                missing=sorted(ours - listed),
            )
        )
    return ModelsReport(listings=listings)
