"""Provider health checks against local HTTP servers that answer, answer slowly, answer with
5xx or 4xx, refuse connections, or accept and never answer; smoothing in provider_health."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import text

from activities.db.catalog_sync import sync_catalog
from activities.llm import health
from models_catalog.catalog import load_catalog
from tests.llm.fakes import FakeBehaviour, closed_port, fake_server, silent_server

CAT = load_catalog()
OPENAI = CAT.providers["openai"]
ANTHROPIC = CAT.providers["anthropic"]
KEYS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"}


async def test_healthy_with_credentials_sent():
    with fake_server() as fake:
        res = await health.probe(OPENAI, KEYS, base_override=fake.v1)
        req = fake.behaviour.requests[-1]
    assert res.status == "healthy" and res.checked and res.http_status == 200
    assert res.latency_ms is not None and res.error is None
    assert (req["method"], req["path"]) == ("GET", "/v1/models")
    assert req["headers"]["authorization"] == "Bearer sk-o"
    with fake_server() as fake:
        await health.probe(ANTHROPIC, KEYS, base_override=fake.v1)
        assert fake.behaviour.requests[-1]["headers"]["x-api-key"] == "sk-a"


async def test_slow_answer_is_degraded():
    with fake_server(FakeBehaviour(delay=0.4)) as fake:
        res = await health.probe(OPENAI, KEYS, base_override=fake.v1, slow_ms=100)
    assert res.status == "degraded" and (res.latency_ms or 0) >= 400 and "slow" in (res.error or "")


@pytest.mark.parametrize(
    "code,status", [(500, "unhealthy"), (503, "unhealthy"), (401, "degraded"), (429, "degraded")]
)
async def test_http_errors(code, status):
    with fake_server(FakeBehaviour(head_status=code)) as fake:
        res = await health.probe(OPENAI, KEYS, base_override=fake.v1)
    assert res.status == status and res.http_status == code and res.error == f"HTTP {code}"


async def test_connection_refused_is_unhealthy():
    res = await health.probe(OPENAI, KEYS, base_override=closed_port())
    assert res.status == "unhealthy" and res.checked and res.latency_ms is None
    assert "ConnectError" in (res.error or "")


async def test_no_answer_times_out_unhealthy():
    with silent_server() as url:
        started = time.monotonic()
        res = await health.probe(OPENAI, KEYS, base_override=url, timeout_s=0.5)
        took = time.monotonic() - started
    assert res.status == "unhealthy" and "Timeout" in (res.error or "")
    assert took < health.DEFAULT_TIMEOUT_S  # the 0.5 s asked for, not the default (not speed)


async def test_unconfigured_provider_is_not_probed():
    with fake_server() as fake:
        res = await health.probe(OPENAI, {}, base_override=fake.v1)
        assert fake.behaviour.requests == []
    assert res.status == "unknown" and not res.checked
    assert res.error == "unconfigured: OPENAI_API_KEY unset"


async def test_shared_accounts_are_probed_once():
    ids = ["openai", "openai-images", "openai-embeddings"]
    with fake_server() as fake:
        results = await health.probe_all(
            [CAT.providers[i] for i in ids], KEYS, base_overrides={i: fake.v1 for i in ids}
        )
        assert len(fake.behaviour.requests) == 1
    assert [r.provider_id for r in results] == ids
    assert all(r.status == "healthy" for r in results)


@pytest.fixture
async def synced(migrated_db, app_engine):
    sync_catalog(migrated_db.owner_url, CAT)
    async with app_engine.begin() as conn:  # the app role may not DELETE: reset by update
        await conn.execute(
            text(
                "UPDATE provider_health SET status = 'unknown', "
                "avg_latency_ms = NULL, error_rate = NULL, "
                "consecutive_failures = 0 WHERE provider_id = 'xai'"
            )
        )
    return app_engine


async def _row(engine, provider_id):
    async with engine.connect() as conn:
        res = await conn.execute(
            text("SELECT * FROM provider_health WHERE provider_id = :p"), {"p": provider_id}
        )
        return dict(res.mappings().one())


async def test_record_smooths_latency_and_error_rate(synced):
    engine = synced
    known = await health.known_providers(engine)

    def r(status, latency, checked=True):
        return health.ProbeResult(
            provider_id="xai",
            status=status,
            checked=checked,
            latency_ms=latency,
            error=None if status == "healthy" else "x",
        )

    await health.record(engine, [r("healthy", 100)], known)
    row = await _row(engine, "xai")
    assert (row["status"], row["avg_latency_ms"], row["consecutive_failures"]) == (
        "healthy",
        100,
        0,
    )
    await health.record(engine, [r("healthy", 200)], known)
    row = await _row(engine, "xai")
    assert row["avg_latency_ms"] == 130  # 100 x 0.7 + 200 x 0.3
    assert row["error_rate"] == Decimal("0")
    await health.record(engine, [r("unhealthy", None)], known)
    await health.record(engine, [r("unhealthy", None)], known)
    row = await _row(engine, "xai")
    assert row["status"] == "unhealthy" and row["consecutive_failures"] == 2
    assert row["avg_latency_ms"] == 130  # a timeout has no latency: the average stands
    assert row["error_rate"] == Decimal("0.51")  # 0 -> 0.3 -> 0.51
    await health.record(engine, [r("unknown", None, checked=False)], known)
    row = await _row(engine, "xai")
    assert row["status"] == "unknown" and row["consecutive_failures"] == 2
    assert row["error_rate"] == Decimal("0.51")  # not probed: no sample
    skipped = await health.record(
        engine, [r("healthy", 1).model_copy(update={"provider_id": "nope"})], known
    )
    assert skipped == ["nope"]
