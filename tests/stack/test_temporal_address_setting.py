"""RADIANT_TEMPORAL_ADDRESS must be host:port: a bad value stops `radiant` with one line naming
the variable (exit 2) before anything starts, not a ValueError traceback after PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.stack.test_settings_errors import settings_error
from workers.settings import Settings

MESSAGE = "expected host:port with a port from 1 to 65535 (e.g. localhost:7233)"


@pytest.mark.parametrize(
    "address",
    [
        "localhost",
        "localhost:",
        ":7233",
        "localhost:0",
        "localhost:65536",
        "localhost:http",
        "http://localhost:7233",
        "::1:7233",
        "[::1]7233",
        "local host:7233",
    ],
)
def test_a_bad_temporal_address_is_named_in_one_line(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings_error({"RADIANT_TEMPORAL_ADDRESS": address}, monkeypatch) == (
        f"invalid settings: RADIANT_TEMPORAL_ADDRESS: {MESSAGE} (got {address!r})"
    )


@pytest.mark.parametrize(
    "address", ["localhost:7233", "127.0.0.1:1", "temporal.example.com:65535", "[::1]:7233"]
)
def test_a_host_and_port_are_accepted(address: str) -> None:
    assert Settings(temporal_address=address).temporal_address == address


def test_radiant_up_exits_2_before_starting_anything(tmp_path) -> None:
    env = {**os.environ, "RADIANT_TEMPORAL_ADDRESS": "localhost", "RADIANT_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: invalid settings: RADIANT_TEMPORAL_ADDRESS: {MESSAGE} (got 'localhost')"
    )
    assert not (tmp_path / "postgres").exists()  # the embedded PostgreSQL was never started
