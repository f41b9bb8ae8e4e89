"""`radiant up` (the whole embedded stack in the foreground) and `radiant worker`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import typer

from workers.cli.common import console, esc, fail
from workers.settings import Settings, get_settings

log = logging.getLogger("radiant.up")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("worker")(worker)


def prepare_database(settings: Settings) -> str:
    """Embedded PostgreSQL (unless a URL is configured), migrations, catalog sync. Owner URL."""
    from activities.db.catalog_sync import sync_catalog
    from activities.db.engine import check_database, resolve_database_urls
    from activities.db.migrate import upgrade
    from models_catalog.catalog import load_catalog

    urls = resolve_database_urls(settings)
    check_database(urls.owner)
    upgrade(urls.owner)
    report = sync_catalog(urls.owner, load_catalog(settings.catalog_dir))
    console.print(
        f"[green]database ready[/] ({'embedded' if urls.embedded else 'configured'}); "
        f"catalog sync: {esc(report.summary())}"
    )
    return urls.owner


StackBody = Callable[[Settings], Awaitable[None]]

STACK_LOCK = "stack.lock"


@contextlib.contextmanager
def stack_lock(data_dir: Path) -> Iterator[None]:
    """One stack per data directory: a second `radiant up` / `demo` on the same data would
    fight over its ports and, on the way out, stop the first one's model servers. An flock,
    so a crashed stack never leaves it held."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / STACK_LOCK).open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            fail(
                f"another radiant stack (pid {holder}) is running on {data_dir}; stop it first, "
                "or give this one its own RADIANT_DATA_DIR"
            )
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_stack(settings: Settings, body: StackBody | None = None, *, stay: bool = True) -> None:
    """Bring the embedded stack up, run `body` (if any) against it, then keep serving until
    Ctrl-C when `stay`; always stop everything it started on the way out."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with stack_lock(settings.data_dir):
        _run_locked_stack(settings, body, stay)


def _run_locked_stack(settings: Settings, body: StackBody | None, stay: bool) -> None:
    from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.db.errors import DatabaseError
    from models_catalog.errors import CatalogError
    from workers.temporal import TemporalUnavailableError, start_dev_server
    from workers.temporal import web_ui as temporal_web_ui

    # (SIGTERM takes Ctrl-C's path: workers.process_exit, the `radiant` entry point.) The
    # handlers as they are now: the event loop's own come and go with it.
    handlers = _current_handlers()
    temporal: subprocess.Popen[bytes] | None = None
    try:
        prepare_database(settings)
        temporal = start_dev_server(settings, settings.data_dir / "temporal.log")
        console.print(
            f"[green]Temporal[/] at {esc(settings.temporal_address)}; "
            f"[bold]Web UI: {esc(temporal_web_ui(settings))}[/]"
        )
        asyncio.run(_serve_stack(settings, body, stay))
    except (DatabaseError, CatalogError, TemporalUnavailableError) as exc:
        fail(str(exc))
    except (WorkflowFailureError, WorkflowUpdateFailedError) as exc:
        fail(_failure_line(exc))  # a demo job (or its set-up) failed: why, not a traceback
    except RPCError as exc:  # e.g. the worker's schedules refused at start-up
        fail(_one_line(f"Temporal refused the request: {exc.message}"))
    except KeyboardInterrupt:
        pass
    finally:
        _stop_stack(settings, temporal, handlers)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _current_handlers() -> dict[signal.Signals, signal._HANDLER]:
    return {sig: signal.getsignal(sig) for sig in _SIGNALS}


def _still_stopping(signum: int, frame: object) -> None:
    """A second Ctrl-C (or a SIGTERM) while the stack stops: the stopping goes on, or the
    Temporal dev server and PostgreSQL would be left running. (A Python handler, not SIG_IGN:
    children started meanwhile must not inherit an ignored SIGINT/SIGTERM.)"""


def _stop_stack(
    settings: Settings,
    temporal: subprocess.Popen[bytes] | None,
    handlers: dict[signal.Signals, signal._HANDLER],
) -> None:
    """Stop everything the stack started, each step even if one before it failed, and not cut
    short by a signal; then put back the signal handlers the stack started with."""
    from activities.db.embedded import release_embedded_postgres
    from workers.temporal import stop_dev_server

    for sig in _SIGNALS:
        signal.signal(sig, _still_stopping)
    try:
        console.print("stopping ...")
        try:
            _stop_local_endpoints(settings)
        finally:
            try:
                if temporal is not None:
                    stop_dev_server(temporal)
            finally:
                if settings.database_url is None:
                    release_embedded_postgres(settings.data_dir)
        console.print("stopped")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "unknown error"


def _failure_line(exc: BaseException) -> str:
    """A failed workflow or update in one line: the failure's own words, then what caused it
    (the innermost application error: the reason a job failed)."""
    from workers.cli.common import failure_message

    outer, cause = str(exc), failure_message(exc)
    return _one_line(outer if cause in ("", outer) else f"{outer}: {cause}")


def up() -> None:
    """Start the embedded stack in the foreground: Temporal dev server with Web UI, PostgreSQL,
    migrations, catalog sync, schedules and a worker. Ctrl-C stops all of it."""
    run_stack(get_settings())


def _stop_local_endpoints(settings: Settings) -> None:
    """The local stand-in's model servers outlive a crashed worker on purpose (like SageMaker
    endpoints); a deliberate Ctrl-C of the dev stack stops them too, and ends their uptime
    intervals (the database is still up: it is released after this)."""
    if settings.backend != "local":
        return
    from activities.backends.factory import create_backend
    from activities.db.engine import create_app_engine, resolve_database_urls
    from activities.fleet_activities import end_uptime_of_stopped

    async def stop_all() -> None:
        backend = create_backend(settings)
        stopped: list[str] = []
        for info in await backend.list_endpoints("radiant-"):
            await backend.delete_endpoint(info.endpoint_name)
            stopped.append(info.endpoint_name)
        if not stopped:
            return
        engine = create_app_engine(resolve_database_urls(settings).app)
        try:
            await end_uptime_of_stopped(engine, stopped)
        finally:
            await engine.dispose()

    with contextlib.suppress(Exception):
        asyncio.run(stop_all())


async def _serve_stack(settings: Settings, body: StackBody | None, stay: bool) -> None:
    from workers.main import serve
    from workers.schedules import schedules

    console.print(f"[green]schedules[/]: {esc(', '.join(schedules(settings)))}")
    stop = asyncio.Event()
    worker_task = asyncio.ensure_future(serve(settings, stop))
    console.print("[green]worker running[/]")

    async def run_body() -> None:
        await _reconcile_at_start(settings)
        if body is not None:
            await body(settings)

    body_task = asyncio.ensure_future(run_body())
    try:
        # Ctrl-C stops the worker (serve() handles the signal); whatever the body was waiting
        # for then never comes, so the body is cancelled rather than awaited.
        done, _ = await asyncio.wait({worker_task, body_task}, return_when=asyncio.FIRST_COMPLETED)
        if worker_task in done:
            # The worker failed (at start-up: the database refused it, Temporal refused its
            # schedules, ...): that, not "stopped" and exit 0.
            worker_task.result()
        if body_task in done:
            body_task.result()  # a failure in the body surfaces here
            if stay:
                console.print("press Ctrl-C to stop")
                await worker_task
    finally:
        stop.set()
        body_task.cancel()
        with contextlib.suppress(BaseException):
            await body_task
        if not worker_task.done():  # (a failure of a done one has been raised above)
            with contextlib.suppress(Exception):
                await worker_task


async def _reconcile_at_start(settings: Settings, limit_s: float = 120.0) -> None:
    """The last `radiant up` stopped the local model servers behind the thermal workflows'
    backs; reconcile now (the schedule would within a minute) and wait until Postgres agrees
    with what runs, so the first jobs do not race the drift repair."""
    import uuid

    from sqlalchemy import text

    from activities.db.engine import create_app_engine, resolve_database_urls
    from activities.fleet_activities import ReconcileInput
    from workers.temporal import connect
    from workflows.thermal_fleet import ThermalReconcileWorkflow

    client = await connect(settings)
    report = await client.execute_workflow(
        ThermalReconcileWorkflow.run,
        ReconcileInput(),
        id=f"thermal-reconcile-startup-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    if not report.resynced:
        return
    console.print(f"reconciled {len(report.resynced)} model(s) whose endpoints had stopped")
    engine = create_app_engine(resolve_database_urls(settings).app)
    deadline = asyncio.get_running_loop().time() + limit_s
    try:
        while asyncio.get_running_loop().time() < deadline:
            async with engine.connect() as conn:
                stale = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM thermal_states WHERE instance_count > 0 "
                            "AND ('thermal/' || app_id || '/' || environment || '/' || model_id)"
                            " = ANY(:ids)"
                        ),
                        {"ids": report.resynced},
                    )
                ).scalar_one()
            if not stale:
                return
            await asyncio.sleep(0.3)
    finally:
        await engine.dispose()


def worker() -> None:
    """Run only a worker against the configured Temporal, PostgreSQL and backend."""
    from activities.db.errors import DatabaseError
    from models_catalog.errors import CatalogError
    from workers.main import main
    from workers.temporal import TemporalUnavailableError

    try:
        main()
    except (DatabaseError, CatalogError, TemporalUnavailableError) as exc:
        fail(str(exc))
