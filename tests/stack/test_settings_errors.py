"""RADIANT_* variables that do not validate: the `radiant` command and the worker process say
which variable and why in one line (exit 2), not with a pydantic traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workers.settings import Settings, SettingsError, get_settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"RADIANT_BACKEND": "bogus"},
            "RADIANT_BACKEND: Input should be 'local' or 'sagemaker' (got 'bogus')",
        ),
        (
            {"RADIANT_THERMAL_POLL_SECONDS": "-1"},
            "RADIANT_THERMAL_POLL_SECONDS: Input should be greater than 0 (got '-1')",
        ),
        (
            {"RADIANT_APPS": "x"},
            "RADIANT_APPS: app pattern 'x' is not app/environment (or *) (got 'x')",
        ),
        (
            {"RADIANT_INPUT_ROOTS": "/srv/inputs,/"},
            "RADIANT_INPUT_ROOTS: an input root may not be / (tenants could read "
            "any file) (got '/srv/inputs,/')",
        ),
    ],
)
def test_a_bad_variable_is_named_in_one_line(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings_error(env, monkeypatch) == f"invalid settings: {expected}"


def settings_error(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The SettingsError these variables give (the cached settings cleared around it)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()
    return str(err.value)


@pytest.mark.parametrize("module", ["workers.cli.main", "workers.main"])
def test_the_command_and_the_worker_exit_2_with_that_line(module: str, tmp_path) -> None:
    args = [sys.executable, "-m", module] + (["config"] if module == "workers.cli.main" else [])
    env = {**os.environ, "RADIANT_BACKEND": "bogus", "RADIANT_DATA_DIR": str(tmp_path)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: invalid settings: RADIANT_BACKEND: Input should be 'local' or 'sagemaker' "
        "(got 'bogus')"
    )


def test_durations_and_ports_must_be_positive() -> None:
    for field, value in [
        ("thermal_idle_seconds", 0),
        ("job_poll_seconds", 0),
        ("reconcile_interval_seconds", 0),
        ("temporal_ui_port", 70000),
    ]:
        with pytest.raises(ValueError, match=field):
            Settings(**{field: value})
