"""Provider health checks (seed 001 `checkProviderHealth`, with its bugs fixed).

A check is `GET {api root}/models` with the provider's credential and a 5 s timeout (the seed
sends HEAD, which several APIs answer 405; GET /models is cheap and authenticates):

- 2xx -> healthy (degraded when slower than `slow_ms`); 5xx -> unhealthy; other -> degraded
  (401/403: the key is wrong; 404/429: reachable but not serving us);
- timeout or connection error -> unhealthy.

Only *configured* providers are probed: without a key nothing is sent and the provider is
recorded `unknown` with "unconfigured" (on a machine without network this is every provider).
Results go to `provider_health` smoothed: latency and error rate are exponentially weighted
moving averages (new = old x 0.7 + sample x 0.3, the seed's weights), so one slow answer does not
swing selection; consecutive failures are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

import httpx
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models_catalog.external import Provider

HealthStatus = Literal["healthy", "degraded", "unhealthy", "unknown"]
ALPHA = Decimal("0.3")  # weight of the newest sample
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_SLOW_MS = 2000


class ProbeResult(BaseModel):
    provider_id: str
    status: HealthStatus
    checked: bool  # False: not probed (unconfigured, no URL)
    url: str | None = None
    http_status: int | None = None
    latency_ms: int | None = None  # only when the server answered
    error: str | None = None


def models_url(provider: Provider, base_override: str | None = None) -> str | None:
    base = base_override or provider.api_base or provider.vendor_api_url
    return f"{base.rstrip('/')}/models" if base else None


def auth_headers(provider: Provider, key: str) -> dict[str, str]:
    """The credential the way each API expects it."""
    if provider.litellm_provider == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if provider.litellm_provider == "gemini":
        return {"x-goog-api-key": key}
    return {"Authorization": f"Bearer {key}"}


def classify(http_status: int, latency_ms: int, slow_ms: int) -> HealthStatus:
    if 200 <= http_status < 300:
        return "degraded" if latency_ms > slow_ms else "healthy"
    return "unhealthy" if http_status >= 500 else "degraded"


async def probe(
    provider: Provider,
    environ: Mapping[str, str],
    *,
    base_override: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    slow_ms: int = DEFAULT_SLOW_MS,
) -> ProbeResult:
    key = environ.get(provider.api_key_env, "").strip()
    url = models_url(provider, base_override)
    if not key:
        return ProbeResult(
            provider_id=provider.id,
            status="unknown",
            checked=False,
            error=f"unconfigured: {provider.api_key_env} unset",
        )
    if url is None:
        return ProbeResult(
            provider_id=provider.id,
            status="unknown",
            checked=False,
            error="no API URL in the catalog",
        )
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            resp = await client.get(url, headers=auth_headers(provider, key))
    except (httpx.HTTPError, OSError) as exc:
        return ProbeResult(
            provider_id=provider.id,
            status="unhealthy",
            checked=True,
            url=url,
            error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__,
        )
    latency = int((time.monotonic() - started) * 1000)
    status = classify(resp.status_code, latency, slow_ms)
    error = (
        None
        if status == "healthy"
        else (f"HTTP {resp.status_code}" if resp.status_code >= 300 else f"slow: {latency} ms")
    )
    return ProbeResult(
        provider_id=provider.id,
        status=status,
        checked=True,
        url=url,
        http_status=resp.status_code,
        latency_ms=latency,
        error=error,
    )


async def probe_all(
    providers: list[Provider],
    environ: Mapping[str, str],
    *,
    base_overrides: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    slow_ms: int = DEFAULT_SLOW_MS,
) -> list[ProbeResult]:
    """Probe concurrently; providers sharing an account and URL (openai, openai-images, ...)
    share one request."""
    overrides = base_overrides or {}
    shared: dict[tuple[str | None, str], asyncio.Task[ProbeResult]] = {}
    tasks = []
    for p in providers:
        key = (models_url(p, overrides.get(p.id)), p.api_key_env)
        if key not in shared:
            shared[key] = asyncio.ensure_future(
                probe(
                    p,
                    environ,
                    base_override=overrides.get(p.id),
                    timeout_s=timeout_s,
                    slow_ms=slow_ms,
                )
            )
        tasks.append((p, shared[key]))
    out = []
    for p, task in tasks:
        res = await task
        out.append(res.model_copy(update={"provider_id": p.id}))
    return out


_UPSERT = text(
    """
    INSERT INTO provider_health AS ph (provider_id, status, avg_latency_ms, error_rate,
                                       consecutive_failures, last_error, last_checked_at)
    VALUES (:provider_id, :status, :latency, :failure, :failures, :error, now())
    ON CONFLICT (provider_id) DO UPDATE SET
        status = EXCLUDED.status,
        avg_latency_ms = CASE
            WHEN EXCLUDED.avg_latency_ms IS NULL THEN ph.avg_latency_ms
            WHEN ph.avg_latency_ms IS NULL THEN EXCLUDED.avg_latency_ms
            ELSE round(ph.avg_latency_ms * (1 - :alpha) + EXCLUDED.avg_latency_ms * :alpha)::int
        END,
        error_rate = CASE
            WHEN EXCLUDED.error_rate IS NULL THEN ph.error_rate
            WHEN ph.error_rate IS NULL THEN EXCLUDED.error_rate
            ELSE round(ph.error_rate * (1 - :alpha) + EXCLUDED.error_rate * :alpha, 6)
        END,
        consecutive_failures = CASE WHEN :checked AND EXCLUDED.status <> 'healthy'
                                    THEN ph.consecutive_failures + 1
                                    WHEN :checked THEN 0
                                    ELSE ph.consecutive_failures END,
        last_error = EXCLUDED.last_error,
        last_checked_at = now()
    """
)


async def record(engine: AsyncEngine, results: list[ProbeResult], known: set[str]) -> list[str]:
    """Upsert each result; returns the provider ids skipped because the catalog sync has not
    written their `providers` row yet (provider_health refers to it)."""
    skipped = []
    async with engine.begin() as conn:
        for r in results:
            if r.provider_id not in known:
                skipped.append(r.provider_id)
                continue
            failed = r.checked and r.status != "healthy"
            await conn.execute(
                _UPSERT,
                {
                    "provider_id": r.provider_id,
                    "status": r.status,
                    "latency": r.latency_ms,
                    "failure": (Decimal(1) if failed else Decimal(0)) if r.checked else None,
                    "failures": 1 if failed else 0,
                    "error": r.error,
                    "alpha": ALPHA,
                    "checked": r.checked,
                },
            )
    return skipped


async def known_providers(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return {r[0] for r in await conn.execute(text("SELECT id FROM providers"))}
