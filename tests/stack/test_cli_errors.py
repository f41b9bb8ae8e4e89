"""Bad input on the command line: one clear line and exit code 2, never a traceback, and
nothing contacted before the input is known to be good."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner, Result

from workers.cli.main import app

CASES = [
    (["thermal", "show", "nosuch"], "unknown model 'nosuch'"),
    (["thermal", "warm", "nosuch", "--wait"], "unknown model 'nosuch'"),
    (["thermal", "set", "yolov8n", "TEPID"], "invalid thermal state 'TEPID'"),
    (["thermal", "set", "llama-3.3-70b", "WARM"], "llama-3.3-70b"),
    (["thermal", "warm", "gpt-4o"], "gpt-4o is an external (API) model (openai-gpt-4o)"),
    (["thermal", "bulk", "WARM"], "--models"),
    (["thermal", "bulk", "WARM", "--models", ","], "names no model"),
    (["thermal", "warm", "yolov8n", "--deadline", "-5"], "--deadline"),
    (["watch", "--since", "-1"], "--since"),
    (["services", "enable", "nosuch"], "unknown service 'nosuch'"),
    (
        ["submit", "perception", "detect", "--tenant", "t", "--input", "x", "--option", "novalue"],
        "key=value",
    ),
]


def invoke(args: list[str], monkeypatch, tmp_path, **env: str) -> Result:
    """The CLI with these RADIANT_* settings (and a scratch data directory)."""
    for name, value in {**env, "DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(f"RADIANT_{name}", value)
    from workers.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("args", "words"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args: list[str], words: str, monkeypatch, tmp_path):
    # No server is running: a command that got past input checks would fail differently.
    result = invoke(
        args, monkeypatch, tmp_path, TEMPORAL_ADDRESS="127.0.0.1:1",
        DATABASE_URL="postgresql+psycopg://u:p@127.0.0.1:1/db",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["services", "status", "--app", "other"],
        ["services", "enable", "perception", "--app", "other"],
        ["litellm", "config", "--app", "other"],
        ["thermal", "set", "yolov8n", "WARM", "--app", "other"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_app_not_served_is_refused_before_anything_is_written(
    args: list[str], monkeypatch, tmp_path
):
    result = invoke(
        args, monkeypatch, tmp_path, APPS="radiant/dev", TEMPORAL_ADDRESS="127.0.0.1:1",
        DATABASE_URL="postgresql+psycopg://u:p@127.0.0.1:1/db",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "other/dev is not served by this deployment (RADIANT_APPS: radiant/dev)" in (
        " ".join(result.output.split())
    )


def test_a_pair_out_of_service_can_still_be_read(monkeypatch, tmp_path):
    """`thermal list` of a pair taken out of RADIANT_APPS is not refused for that reason (here
    it gets as far as the database, which is not there)."""
    result = invoke(
        ["thermal", "list", "--app", "other"], monkeypatch, tmp_path, APPS="radiant/dev",
        TEMPORAL_ADDRESS="127.0.0.1:1", DATABASE_URL="postgresql+psycopg://u:p@127.0.0.1:1/db",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "database is unavailable" in result.output and "RADIANT_APPS" not in result.output


def test_unreachable_temporal_is_one_line(monkeypatch, tmp_path):
    # (`thermal show` gives the record instead: tests/thermal/test_cli_thermal.py)
    result = invoke(
        ["thermal", "warm", "yolov8n"], monkeypatch, tmp_path, TEMPORAL_ADDRESS="127.0.0.1:1"
    )
    assert result.exit_code == 2 and "cannot reach Temporal at 127.0.0.1:1" in result.output


DB_READERS = [
    ["thermal", "list"],
    ["services", "status"],
    ["services", "enable", "perception"],
    ["watch", "--no-follow"],
]


@pytest.mark.parametrize("args", DB_READERS, ids=" ".join)
def test_unreachable_database_is_one_line(args: list[str], monkeypatch, tmp_path):
    """Commands that read PostgreSQL directly: a driver error becomes one line, exit 2."""
    url = "postgresql+psycopg://u:secretpw@127.0.0.1:1/db"
    result = invoke(args, monkeypatch, tmp_path, DATABASE_URL=url)
    assert result.exit_code == 2, result.output
    assert "the database is unavailable" in result.output and "port 1" in result.output
    assert "Traceback" not in result.output and "secretpw" not in result.output
