"""Kill -9 the worker in the middle of a warm-up, start another: exactly one running endpoint and
a consistent recorded state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowUpdateStage

from activities.backends.base import endpoint_name
from activities.backends.local import LocalStandInBackend
from activities.thermal_control import ThermalControl
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import WarmUpRequest

MODEL = "yolov8n"


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.main"],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def server_processes(name: str) -> list[int]:
    """Every live local model server of this endpoint, recorded or not (from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if (
            b"activities.backends.local_model_server" in cmd
            and name.encode() in cmd
            and state != "Z"
        ):
            pids.append(int(proc.name))
    return pids


async def test_worker_killed_mid_warmup(temporal_client: Client, catalog_db, tmp_path: Path):
    migrated_db = catalog_db
    app = f"crash{uuid.uuid4().hex[:6]}"
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    target = temporal_client.service_client.config.target_host
    env = {
        "RADIANT_TEMPORAL_ADDRESS": target,
        "RADIANT_TASK_QUEUE": queue,
        "RADIANT_DATABASE_URL": migrated_db.owner_url,
        "RADIANT_APP_DATABASE_URL": migrated_db.app_url,
        "RADIANT_DATA_DIR": str(tmp_path),
        "RADIANT_BACKEND": "local",
        "RADIANT_LOCAL_WARMUP_SECONDS": "4",  # a slow model load, so the kill lands mid-warm-up
        "RADIANT_THERMAL_POLL_SECONDS": "0.2",
    }
    log = tmp_path / "worker.log"
    name = endpoint_name(app, "test", MODEL)
    control = ThermalControl(temporal_client, queue, TIMINGS)
    first = start_worker(env, log)
    second = None
    try:
        update = await temporal_client.start_update_with_start_workflow(
            ModelThermalWorkflow.warm_up,
            WarmUpRequest(deadline_seconds=120),
            start_workflow_operation=control._start_op(app, "test", MODEL),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        # Mid-warm-up: a model server process exists but is still loading.
        await wait_for(lambda: asyncio.sleep(0, result=bool(server_processes(name))), limit=60)
        status = await control.status(app, "test", MODEL)
        assert not status.ready
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_worker(env, log)
        result = await asyncio.wait_for(update.result(), timeout=120)
        assert result.ready and result.instance_count == 1
        backend = LocalStandInBackend(tmp_path)
        endpoints = await backend.list_endpoints(f"radiant-{app}")
        assert [(e.endpoint_name, e.instance_count, e.status) for e in endpoints] == [
            (name, 1, "InService")
        ]
        assert len(server_processes(name)) == 1
        rows = await _rows(migrated_db.app_url, app)
        assert rows == [("COLD", 1)]
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        await LocalStandInBackend(tmp_path).delete_endpoint(name)


async def _rows(url: str, app: str) -> list[tuple[str, int]]:
    from sqlalchemy import text

    from activities.db.engine import create_app_engine

    engine = create_app_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT current_state, instance_count FROM thermal_states WHERE app_id = :a"),
                {"a": app},
            )
            return [tuple(r) for r in result]
    finally:
        await engine.dispose()
