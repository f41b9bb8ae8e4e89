"""The README's run path on a real embedded stack: `radiant up` brings Temporal (with the Web
UI), PostgreSQL, migrations, catalog sync, schedules and a worker up; Ctrl-C stops all of it and
a second `up` reuses the data. `radiant demo` runs every service end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIANT_")}
    env.update(
        {
            "RADIANT_DATA_DIR": str(data_dir),
            "RADIANT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "RADIANT_TEMPORAL_UI_PORT": str(free_port()),
            "RADIANT_THERMAL_IDLE_SECONDS": "30",
            "RADIANT_THERMAL_POLL_SECONDS": "0.2",
            "RADIANT_JOB_POLL_SECONDS": "0.2",
        }
    )
    return env


def radiant(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_http(url: str, timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli.main", "up"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=180) == 0


@pytest.mark.slow
def test_up_serves_web_ui_schedules_and_stops_cleanly(tmp_path: Path):
    env = stack_env(tmp_path / "data")
    log = tmp_path / "up.log"
    proc = up(env, log)
    try:
        ui = wait_http(f"http://127.0.0.1:{env['RADIANT_TEMPORAL_UI_PORT']}/")
        assert ui.status_code == 200
        deadline = time.monotonic() + 180
        while "worker running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "worker running" in log.read_text(), log.read_text()[-2000:]
        listed = radiant("thermal", "reconcile", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        report = json.loads(listed.stdout)
        assert report["checked"] == 0 and report["endpoints"] == 0  # a fresh stack: nothing yet
        sched = subprocess.run(
            [
                str(Path(sys.executable).with_name("temporal")),
                "schedule",
                "list",
                "--address",
                env["RADIANT_TEMPORAL_ADDRESS"],
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        for name in (
            "radiant-thermal-reconcile",
            "radiant-registry-health",
            "radiant-registry-full",
        ):
            assert name in sched.stdout
    finally:
        stop(proc)
    text = log.read_text()
    assert "Web UI: http://localhost:" in text and "stopped" in text
    # nothing left listening, and a second start reuses the data (temporal.db, postgres/)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(env["RADIANT_TEMPORAL_UI_PORT"]))) != 0
    assert (tmp_path / "data" / "temporal.db").exists()
    proc = up(env, log)
    try:
        assert wait_http(f"http://127.0.0.1:{env['RADIANT_TEMPORAL_UI_PORT']}/").status_code == 200
    finally:
        stop(proc)


@pytest.mark.slow
def test_demo_runs_every_operation(tmp_path: Path):
    env = stack_env(tmp_path / "data")
    done = radiant("demo", "--all-operations", "--no-stay", env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for key in (
        "perception/analyze",
        "scientific/protein/fold",
        "reconstruction/render",
        "medical/transcribe",
        "geospatial/change",
    ):
        assert f"done {key}" in out
    assert "Usage of demo-tenant" in out and "Web UI:" in out
    # The way out stopped the model servers: their uptime intervals end with them instead of
    # billing on until the next `radiant up` reconciles.
    margin = radiant("usage", "margin", "--json", env=env)
    assert margin.returncode == 0, margin.stderr
    uptime = json.loads(margin.stdout)["uptime"]
    assert uptime and all(u["intervals"] > 0 for u in uptime)
    assert [u for u in uptime if u["open_intervals"]] == [], uptime


def test_a_second_stack_on_the_same_data_is_refused_and_touches_nothing(tmp_path: Path):
    """A second `radiant up` on a data directory a stack serves: one line, exit 2, and the
    first stack's model servers keep running (its way out used to stop them)."""
    import asyncio

    from activities.backends.local import LocalStandInBackend
    from tests.backends.test_local import spec
    from workers.cli.stack import stack_lock

    data = tmp_path / "data"
    backend = LocalStandInBackend(data)
    info = asyncio.run(backend.ensure_endpoint(spec()))
    try:
        with stack_lock(data):  # the first stack
            second = radiant("up", env=stack_env(data), timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another radiant stack" in lines[0], second.stderr
        still = asyncio.run(backend.describe_endpoint(info.endpoint_name))
        assert still is not None and (still.status, still.instance_count) == ("InService", 1)
    finally:
        asyncio.run(backend.delete_endpoint(info.endpoint_name))
