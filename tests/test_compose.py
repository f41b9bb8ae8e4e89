"""docker-compose.yml and the Dockerfile against the code they run (no Docker daemon needed).

Checks that the compose file names only real settings, gives the worker the non-owner database
role, registers exactly the search attributes the code uses, and wires ports, dependencies and
provider credentials consistently.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")

PREFIX = Settings.model_config.get("env_prefix", "")
SETTINGS_ENV = {f"{PREFIX}{name}".upper(): name for name in Settings.model_fields}

_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def resolve(value: str | None) -> str:
    """Compose interpolation with every variable unset: `${X:-d}` -> d, `$$` -> `$`."""
    assert value is not None, "expected a value"
    escaped = value.replace("$$", "\0")
    out = _INTERP.sub(lambda m: m.group("default") or "", escaped)
    return out.replace("\0", "$")


def env_of(service: str) -> dict[str, str | None]:
    env = SERVICES[service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: use the mapping form for environment"
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def setting_default(name: str) -> Any:
    value = Settings.model_fields[name].default
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# ------------------------------------------------------------------------------ structure


def test_services_exist():
    expected = {
        "postgresql",
        "temporal",
        "temporal-admin-tools",
        "temporal-ui",
        "migrate",
        "worker",
        "litellm",
    }
    assert expected <= set(SERVICES)


def test_every_radiant_variable_is_a_setting():
    named = set(re.findall(rf"\b{PREFIX}[A-Z0-9_]+\b", COMPOSE_TEXT))
    assert named, "the compose file should configure the worker through its settings"
    unknown = sorted(named - set(SETTINGS_ENV))
    assert not unknown, f"not fields of workers.settings.Settings: {unknown}"


def test_interpolation_defaults_equal_the_settings_defaults():
    for m in _INTERP.finditer(COMPOSE_TEXT):
        var, default = m.group("name"), m.group("default")
        if var in SETTINGS_ENV and default is not None:
            assert default == str(setting_default(SETTINGS_ENV[var])), var


def test_worker_environment_loads_into_settings(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    for key, value in env_of("worker").items():
        if key.startswith(PREFIX) and value is not None:
            monkeypatch.setenv(key, resolve(value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.temporal_address == "temporal:7233"
    assert settings.backend in ("local", "sagemaker")
    assert settings.app_database_url is not None
    assert str(settings.data_dir) == "/var/lib/radiant"


# ------------------------------------------------------------------------------ database roles


def test_worker_connects_only_as_the_application_role():
    app_user = setting_default("app_db_user")
    worker_env = env_of("worker")
    urls = {k: resolve(v) for k, v in worker_env.items() if k.endswith("DATABASE_URL") and v}
    assert f"{PREFIX}APP_DATABASE_URL" in urls
    for key, url in urls.items():
        assert make_url(url).username == app_user, f"worker {key} must use role {app_user}"
    # the owner's password is not even in the worker's environment
    assert not any("POSTGRES_PASSWORD" in (v or "") for v in worker_env.values())


def test_migrations_run_as_the_owner_and_create_the_same_app_role():
    migrate = env_of("migrate")
    owner = make_url(resolve(migrate[f"{PREFIX}DATABASE_URL"]))
    app = make_url(resolve(migrate[f"{PREFIX}APP_DATABASE_URL"]))
    assert owner.username != setting_default("app_db_user")
    assert owner.username == resolve(env_of("postgresql")["POSTGRES_USER"])
    assert app == make_url(resolve(env_of("worker")[f"{PREFIX}APP_DATABASE_URL"]))
    assert owner.host == app.host == "postgresql"


def test_temporal_persists_in_postgres_under_its_own_database():
    env = {k: resolve(v) for k, v in env_of("temporal").items()}
    assert SERVICES["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    own = {env["DBNAME"], env["VISIBILITY_DBNAME"]}
    assert resolve(env_of("postgresql")["POSTGRES_DB"]) not in own
    assert env["DEFAULT_NAMESPACE"] == setting_default("temporal_namespace")


# ------------------------------------------------------------------------------ search attributes

_TYPE_NAMES = {
    "TEXT": "Text",
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


def test_search_attributes_equal_the_ones_the_code_registers():
    if importlib.util.find_spec("workflows.search_attributes") is None:
        pytest.skip("workflows.search_attributes (ALL_SEARCH_ATTRIBUTES) is not written yet")
    from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

    service = SERVICES["temporal-admin-tools"]
    assert service["image"].startswith("temporalio/admin-tools:")
    pairs = dict(p.split("=", 1) for p in service["environment"]["SEARCH_ATTRIBUTES"].split())
    expected = {k.name: _TYPE_NAMES[k.indexed_value_type.name] for k in ALL_SEARCH_ATTRIBUTES}
    assert pairs == expected
    script = resolve(service["command"][0])
    assert "temporal operator search-attribute create" in script
    assert "${SEARCH_ATTRIBUTES}" in script
    # registered in the namespace the worker uses
    assert (
        env_of("temporal-admin-tools")["TEMPORAL_NAMESPACE"]
        == (env_of("worker")[f"{PREFIX}TEMPORAL_NAMESPACE"])
    )


# ------------------------------------------------------------------------------ wiring


def _published(service: str) -> dict[int, int]:
    """container port -> host port (defaults resolved)."""
    out = {}
    for spec in SERVICES[service].get("ports", []):
        host, _, container = resolve(str(spec)).rpartition(":")
        out[int(container)] = int(host)
    return out


def test_ports_match_the_settings():
    temporal_port = int(setting_default("temporal_address").rpartition(":")[2])
    assert _published("temporal") == {temporal_port: temporal_port}
    assert _published("temporal-ui") == {8080: setting_default("temporal_ui_port")}
    assert _published("litellm") == {4000: 4000}
    assert _published("postgresql") == {5432: 5432}
    assert env_of("worker")[f"{PREFIX}TEMPORAL_ADDRESS"] == f"temporal:{temporal_port}"


def test_start_order():
    def deps(service: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in SERVICES[service]["depends_on"].items()}

    assert deps("worker") == {
        "migrate": "service_completed_successfully",
        "temporal": "service_healthy",
        "temporal-admin-tools": "service_completed_successfully",
    }
    assert deps("migrate") == {"postgresql": "service_healthy"}
    assert deps("temporal")["postgresql"] == "service_healthy"
    for name, service in SERVICES.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep}'s healthcheck"


def test_migrate_and_worker_run_the_radiant_image():
    for name in ("migrate", "worker"):
        assert SERVICES[name]["build"]["dockerfile"] == "Dockerfile"
    assert SERVICES["worker"]["command"] == ["worker"]  # ENTRYPOINT is `radiant`
    assert SERVICES["migrate"]["command"] == ["radiant db upgrade && radiant catalog sync"]


def test_cli_commands_used_by_compose_exist():
    import typer

    from workers.cli.main import app

    root = typer.main.get_command(app)
    used = [("worker",), ("db", "upgrade"), ("catalog", "sync")]
    missing: list[str] = []
    for path in used:
        cmd: Any = root
        for part in path:
            cmd = getattr(cmd, "commands", {}).get(part)
            if cmd is None:
                missing.append(" ".join(path))
                break
    assert not missing, f"compose runs commands the CLI lacks: {missing}"


def test_litellm_service():
    svc = SERVICES["litellm"]
    assert svc["image"].startswith("ghcr.io/berriai/litellm:")
    mount = svc["volumes"][0]
    assert mount["source"] == "./deploy/litellm/config.yaml"
    assert mount["target"] in svc["command"]


def test_provider_credentials_reach_litellm_and_the_worker():
    from models_catalog.external import load_external_catalog

    catalog = load_external_catalog()
    needed = {p.api_key_env for p in catalog.providers.values() if p.litellm_provider}
    for service in ("litellm", "worker"):
        env = env_of(service)
        assert needed <= set(env), f"{service} lacks {sorted(needed - set(env))}"
        # passed through (unset unless provided), never given a placeholder value
        assert all(env[k] is None for k in needed)


def test_aws_credentials_come_from_the_environment():
    for service in ("worker", "litellm"):
        env = env_of(service)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert env[key] == f"${{{key}:-}}", f"{service} {key}"


# ------------------------------------------------------------------------------ Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile():
    ins = _instructions(DOCKERFILE)
    froms = [rest for word, rest in ins if word == "FROM"]
    assert all("python:${PYTHON_VERSION}-slim" in f for f in froms)
    assert "ARG PYTHON_VERSION=3.11" in DOCKERFILE
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    assert ("ENTRYPOINT", '["radiant"]') in final
    assert ("CMD", '["worker"]') in final
    users = [rest for word, rest in final if word == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert any(w == "RUN" and "pip install" in r and "radiant-orchestrator" in r for w, r in final)


def test_dockerignore_keeps_secrets_out():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", ".venv/", ".git"):
        assert entry in ignored
