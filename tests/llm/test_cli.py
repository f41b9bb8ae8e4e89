"""`radiant select`, `radiant llm`, `radiant registry`, `radiant litellm config`: output, JSON, and
bad input as one line on stderr with exit code 2."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import litellm  # noqa: E402
import psycopg
import pytest
import typer
import yaml
from typer.testing import CliRunner

import activities.llm  # noqa: F401 - LiteLLM's bundled cost map, before litellm is imported
from activities.db.engine import libpq_conninfo
from activities.llm.proxy_config import build_proxy_config, render_proxy_config
from models_catalog.catalog import load_catalog
from models_catalog.selection import self_hosted_context_window
from tests.llm.conftest import LLMHarness
from workers.cli import litellm_config, registry, select
from workers.cli import llm as llm_cli
from workers.settings import get_settings

CAT = load_catalog()
REPO = Path(__file__).resolve().parents[2]
COMMITTED_CONFIG = REPO / "deploy" / "litellm" / "config.yaml"

cli = typer.Typer()
cli.command("select")(select.select_command)
cli.add_typer(llm_cli.app, name="llm")
cli.add_typer(registry.app, name="registry")
cli.add_typer(litellm_config.app, name="litellm")
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli, list(args))


def one_line_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr


@pytest.fixture
def settings_env(monkeypatch, migrated_db, tmp_path):
    monkeypatch.setenv("RADIANT_DATABASE_URL", migrated_db.owner_url)
    monkeypatch.setenv("RADIANT_APP_DATABASE_URL", migrated_db.app_url)
    monkeypatch.setenv("RADIANT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


# ----------------------------------------------------------------------------- litellm config


def test_litellm_config_generated_from_catalog_loads_in_a_router(tmp_path: Path):
    out = tmp_path / "deploy" / "litellm" / "config.yaml"
    res = invoke("litellm", "config", "--out", str(out), "--app", "radiant", "--env", "dev")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(out.read_text())
    names = {d["model_name"] for d in cfg["model_list"]}
    for dep in cfg["model_list"]:
        pid = dep["model_info"]["provider"]
        if pid == "self_hosted":
            assert dep["litellm_params"]["model"].startswith("sagemaker/radiant-radiant-dev-")
            continue
        assert CAT.providers[pid].litellm_provider is not None
        assert dep["litellm_params"]["api_key"] == f"os.environ/{CAT.providers[pid].api_key_env}"
    assert "midjourney-v6" not in names and "meshy-v3" not in names  # litellm_provider: null
    assert "mistral-7b-instruct" in names
    assert {"openai-gpt-4o": ["anthropic-claude-sonnet-4", "google-gemini-2-flash"]} in cfg[
        "router_settings"
    ]["fallbacks"]
    assert cfg["router_settings"]["num_retries"] == 0 == cfg["litellm_settings"]["num_retries"]
    assert cfg["router_settings"]["model_group_alias"]["gpt-4o"] == "openai-gpt-4o"
    router = litellm.Router(
        model_list=cfg["model_list"],
        fallbacks=cfg["router_settings"]["fallbacks"],
        model_group_alias=cfg["router_settings"]["model_group_alias"],
        num_retries=0,
    )
    assert names <= set(router.get_model_names())  # (plus the aliases)


def test_litellm_config_to_stdout_and_bad_output_path(tmp_path: Path):
    res = invoke("litellm", "config", "--no-self-hosted")
    assert res.exit_code == 0 and res.stdout.startswith("# LiteLLM proxy configuration")
    assert "sagemaker/" not in res.stdout
    one_line_error(invoke("litellm", "config", "--out", str(tmp_path)), "is a directory")


def test_committed_proxy_config_is_up_to_date():
    """docker-compose mounts deploy/litellm/config.yaml: it must match the catalog."""
    expected = render_proxy_config(
        build_proxy_config(CAT, self_hosted=("radiant", "dev"), aws_region="us-east-1")
    )
    assert COMMITTED_CONFIG.read_text() == expected, (
        "regenerate: radiant litellm config --out deploy/litellm/config.yaml"
    )


# ----------------------------------------------------------------------------- select


def test_select_explains_offline():
    res = invoke("select", "--tier", "3", "--no-state")
    assert res.exit_code == 0
    assert "chosen: mistral-7b-instruct (self-hosted, COLD" in res.stdout
    assert "provider openai not configured (OPENAI_API_KEY unset)" in res.stdout


def test_select_json_and_no_model_exit_1():
    res = invoke("select", "--tier", "1", "--no-state", "--json")
    data = json.loads(res.stdout)
    assert res.exit_code == 1 and data["choice"] is None
    assert all(e["does_task"] for e in data["excluded"]) and data["excluded"]
    res = invoke("select", "--tier", "1", "--no-state", "--json", "--all")
    assert any(not e["does_task"] for e in json.loads(res.stdout)["excluded"])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--no-state"], "--tier"),
        (["--tier", "9", "--no-state"], "between 1 and 5"),
        (["--tier", "2", "--hosting", "cloud", "--no-state"], "--hosting"),
        (["--tier", "2", "--model", "gpt-4oo", "--no-state"], "did you mean 'gpt-4o'"),
        (["--tenant", "acme", "--no-state"], "--tenant needs the database"),
    ],
)
def test_select_bad_input(args, needle):
    one_line_error(invoke("select", *args), needle)


def test_select_reads_tenant_and_state(settings_env, migrated_db):
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (name, tier) VALUES ('cli-t3', 3) ON CONFLICT (name) DO NOTHING"
        )
    res = invoke("select", "--tenant", "cli-t3", "--json", "--app", "nowhere")
    data = json.loads(res.stdout)
    assert res.exit_code == 0 and data["criteria"]["tenant_tier"] == 3
    assert data["choice"]["model_id"] == "mistral-7b-instruct"
    one_line_error(invoke("select", "--tenant", "ghost"), "unknown tenant 'ghost'")


def test_select_unknown_task_is_a_usage_error():
    res = invoke("select", "--task", "bogus", "--tier", "5", "--no-state")
    one_line_error(res, "unknown task 'bogus'; known: ")
    known = res.stderr.split("known: ", 1)[1].split(", ")
    assert {"chat", "completion", "embedding", "inference"} <= {k.strip() for k in known}


def test_select_no_model_points_to_all_for_hidden_exclusions():
    res = invoke("select", "--tier", "1", "--no-state")
    assert res.exit_code == 1 and "no model can serve it" in res.stdout
    assert "--all shows every exclusion" in res.stdout
    res = invoke("select", "--tier", "1", "--no-state", "--all")
    assert res.exit_code == 1 and "--all shows every exclusion" not in res.stdout


def test_select_refuses_a_tier_that_contradicts_the_tenant(settings_env, migrated_db):
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (name, tier) VALUES ('cli-t1', 1) ON CONFLICT (name) DO NOTHING"
        )
    one_line_error(
        invoke("select", "--tenant", "cli-t1", "--tier", "5"),
        "tenant cli-t1 is tier 1; drop --tier or pass the tenant's tier",
    )
    res = invoke("select", "--tenant", "cli-t1", "--tier", "1", "--json", "--app", "nowhere")
    assert res.exit_code in (0, 1), res.output
    assert json.loads(res.stdout)["criteria"]["tenant_tier"] == 1


# ----------------------------------------------------------------------------- registry


def test_registry_list_stats_history(settings_env, migrated_db):
    from activities.db.catalog_sync import sync_catalog

    sync_catalog(migrated_db.owner_url, CAT)
    res = invoke("registry", "list", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["external"] == len(CAT.external_models)
    assert data["self_hosted"] == len(CAT.models) + len(CAT.registry_entries)
    mistral = next(m for m in data["models"] if m["id"] == "mistral-7b-instruct")
    assert mistral["effective_thermal_state"] == "COLD" and mistral["thermal_state"] is None
    res = invoke("registry", "list", "--hosting", "external", "--category", "embedding", "--json")
    models = json.loads(res.stdout)["models"]
    assert models and all(m["category"] == "embedding" for m in models)
    assert all(m["health_status"] for m in models)
    res = invoke("registry", "list", "--hosting", "self_hosted")
    own = len(CAT.models) + len(CAT.registry_entries)
    assert res.exit_code == 0 and f"\n{own} models\n" in res.stdout
    stats = json.loads(invoke("registry", "stats", "--json").stdout)
    assert stats["external_count"] == len(CAT.external_models)
    assert stats["cold_count"] + stats["off_count"] + stats["warm_count"] + stats[
        "hot_count"
    ] + stats["automatic_count"] == len(CAT.models)
    res = invoke("registry", "history", "--json")
    assert res.exit_code == 0 and isinstance(json.loads(res.stdout), list)
    one_line_error(invoke("registry", "list", "--hosting", "cloud"), "--hosting")
    one_line_error(invoke("registry", "list", "--status", "gone"), "--status")
    one_line_error(invoke("registry", "list", "--category", "nonsense"), "unknown category")
    one_line_error(invoke("registry", "sync", "--type", "all"), "--type")


def test_registry_context_window_agrees_with_selection(settings_env, migrated_db):
    from activities.db.catalog_sync import sync_catalog

    sync_catalog(migrated_db.owner_url, CAT)
    models = json.loads(invoke("registry", "list", "--hosting", "self_hosted", "--json").stdout)
    by_id = {m["id"]: m for m in models["models"]}
    assert by_id["mistral-7b-instruct"]["context_window"] == 4096
    for model in CAT.models.values():  # the same rule selection applies
        assert by_id[model.id]["context_window"] == self_hosted_context_window(model)
    assert all("container_environment" not in m for m in models["models"])
    res = invoke("select", "--tier", "5", "--no-state", "--min-context", "5000")
    assert "mistral-7b-instruct: context window 4096 < 5000 needed" in res.stdout


def test_registry_history_json_times_are_iso(settings_env, migrated_db):
    with psycopg.connect(libpq_conninfo(migrated_db.owner_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO registry_sync_log (sync_type, status, started_at, finished_at, details) "
            "VALUES ('health', 'completed', '2026-12-03 14:35:00.383049+00', "
            "'2026-12-03 14:35:02+00', '{\"errors\": []}')"
        )
    res = invoke("registry", "history", "--type", "health", "--json")
    assert res.exit_code == 0, res.output
    run = next(r for r in json.loads(res.stdout) if r["finished_at"] == "2026-12-03T14:35:02Z")
    assert run["started_at"] == "2026-12-03T14:35:00.383049Z"
    assert run["details"] == {"errors": []} and run["models_added"] == 0
    res = invoke("registry", "history", "--type", "health")
    assert res.exit_code == 0 and "1.6s" in res.stdout  # the table still reads the times


def test_registry_unreachable_database(monkeypatch, tmp_path):
    monkeypatch.setenv("RADIANT_DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/db")
    monkeypatch.setenv("RADIANT_APP_DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/db")
    get_settings.cache_clear()
    try:
        res = invoke("registry", "stats")
    finally:
        get_settings.cache_clear()
    one_line_error(res, "127.0.0.1:1")
    assert "secret" not in res.stderr


# ----------------------------------------------------------------------------- through the worker


@pytest.fixture
def worker_env(settings_env, llm: LLMHarness):
    settings_env.setenv("RADIANT_TEMPORAL_ADDRESS", llm.client.service_client.config.target_host)
    settings_env.setenv("RADIANT_TASK_QUEUE", llm.task_queue)
    get_settings.cache_clear()
    return llm


async def test_registry_sync_and_history_through_the_worker(worker_env: LLMHarness):
    res = await asyncio.to_thread(invoke, "registry", "sync", "--type", "pricing")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("pricing sync completed (log id ")
    hist = await asyncio.to_thread(invoke, "registry", "history", "--type", "pricing", "--json")
    rows = json.loads(hist.stdout)
    assert rows and rows[0]["sync_type"] == "pricing" and rows[0]["status"] == "completed"


async def test_llm_chat_and_embed_through_the_worker(worker_env: LLMHarness):
    llm = worker_env
    tenant = llm.tenant("t1")
    res = await asyncio.to_thread(
        invoke,
        "llm",
        "chat",
        "Hello",
        "--tenant",
        tenant,
        "--model",
        "gpt-4o",
        "--app",
        llm.new_app(),
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "hello from the fake"
    assert "model openai-gpt-4o" in res.stderr
    res = await asyncio.to_thread(invoke, "llm", "embed", "a", "b", "--tenant", tenant, "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)["embeddings"]) == 2
    res = await asyncio.to_thread(
        invoke, "llm", "chat", "Hello", "--tenant", "ghost", "--model", "gpt-4o"
    )
    one_line_error(res, "unknown tenant 'ghost'")
    res = await asyncio.to_thread(
        invoke, "llm", "chat", "Hi", "--tenant", tenant, "--model", "mistral-7b-instruct"
    )
    one_line_error(res, "needs tier 3, tenant is tier 1")
