"""`radiant thermal list|show|set|warm|bulk|reconcile` and `radiant watch`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import psycopg
import typer
from rich.live import Live
from rich.table import Column
from sqlalchemy import text
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowQueryFailedError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.app_scope import id_problem, pair_problem
from activities.backends.base import endpoint_name
from activities.db.schema import NOTIFY_CHANNEL
from activities.fleet_activities import BulkSetInput, ReconcileInput
from activities.thermal_control import ThermalControl
from activities.workflow_status import running_task_queue
from models_catalog.catalog import Catalog
from models_catalog.errors import CatalogError
from models_catalog.types import ThermalState
from workers.cli.common import (
    DataTable,
    catalog_or_fail,
    console,
    emit_json,
    err_console,
    esc,
    fail,
    note_if_no_worker,
    run,
    served_pair,
)
from workers.settings import Settings, get_settings
from workers.temporal import TemporalUnavailableError, connect
from workflows.thermal import STILL_STARTING, ModelThermalWorkflow
from workflows.thermal_fleet import BulkThermalUpdateWorkflow, ThermalReconcileWorkflow
from workflows.thermal_types import (
    SetTargetRequest,
    ThermalStatus,
    WarmUpRequest,
    model_off_message,
)

app = typer.Typer(no_args_is_help=True)


def _app_opt(help: str = "App id (default RADIANT_APP_ID).") -> Any:
    return typer.Option(None, "--app", help=help)


def _env_opt(help: str = "Environment (default RADIANT_ENVIRONMENT).") -> Any:
    return typer.Option(None, "--env", help=help)


AppOpt = _app_opt()
EnvOpt = _env_opt()
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
#: `warm --deadline N` gives up after N s plus this (its status reads and round trips).
DEADLINE_MARGIN_S = 5.0


def _scope(
    app_id: str | None, env: str | None, *, read_only: bool = False
) -> tuple[Settings, str, str]:
    """The settings and the pair; a change to a pair outside RADIANT_APPS is refused, a read is
    not (a pair just taken out of service can still be inspected)."""
    settings = get_settings()
    if read_only:
        pair = (app_id or settings.app_id, env or settings.environment)
        if problem := pair_problem(*pair):  # an id no workflow could have: no record either
            fail(problem)
        return settings, *pair
    return settings, *served_pair(settings, app_id, env)


def _catalog(settings: Settings) -> Catalog:
    return catalog_or_fail(settings.catalog_dir)


def _deployable(catalog: Catalog, model: str) -> str:
    """Canonical id of a deployable model, or a clear error (unknown, alias-free, registry-only)."""
    try:
        return catalog.model(model).id
    except CatalogError as exc:
        from models_catalog.selection import resolve_any_model

        try:
            hosting, model_id = resolve_any_model(catalog, model)
        except CatalogError:
            hosting = ""
        if hosting == "external":
            fail(
                f"{model} is an external (API) model ({model_id}): only self-hosted models have "
                "thermal states (`radiant catalog list` shows which are)"
            )
        fail(str(exc))


def parse_state(value: str) -> ThermalState:
    try:
        return ThermalState(value.upper())
    except ValueError:
        fail(
            f"invalid thermal state {value!r}; choose one of "
            + ", ".join(s.value for s in ThermalState)
        )


async def _control(settings: Settings) -> ThermalControl:
    client = await connect(settings)
    return ThermalControl(
        client, settings.task_queue, settings.thermal_timings(), settings.app_scope()
    )


async def _note_if_unserved(control: ThermalControl, app_id: str, env: str, model: str) -> None:
    """The no-worker note for the queue that will serve the change: a model's running thermal
    workflow keeps the queue it started on, whatever RADIANT_TASK_QUEUE says now."""
    try:
        running = await running_task_queue(control.client, control.handle(app_id, env, model).id)
    except RPCError:
        running = None  # Temporal would not say: assume it starts on ours
    await note_if_no_worker(control.client, running or control.task_queue)


def _status_table(rows: list[ThermalStatus]) -> DataTable:
    table = DataTable(
        "model", "target", "current", "instances", "endpoint", "ready", "last activity", "error"
    )
    for st in rows:
        table.add_row(
            st.model_id,
            st.target_state.value,
            st.current_state.value,
            str(st.instance_count),
            st.endpoint_status or "-",
            "yes" if st.ready else "no",
            _iso(st.last_activity_at) if st.last_activity_at else "-",
            st.last_error or "",
        )
    return table


@app.command("list")
def list_states(
    app_id: str | None = AppOpt, env: str | None = EnvOpt, as_json: bool = JsonOpt
) -> None:
    """Every deployable model's recorded thermal state (catalog default where never changed)."""
    settings, app_id, env = _scope(app_id, env, read_only=True)
    catalog = _catalog(settings)
    rows = run(_recorded(settings, app_id, env))
    if not rows:
        # On stderr: --json output stays pure. A mistyped --app/--env lands here too.
        err_console.print(
            f"[yellow]note:[/] nothing is recorded for {esc(app_id)}/{esc(env)}: no model's "
            "state was ever set there; these are the catalog defaults.",
            highlight=False,
        )
    out = []
    for model in catalog.deployable_models():
        st = _recorded_status(catalog, app_id, env, model.id, rows.get(model.id))
        out.append(
            {
                **st.model_dump(
                    include={
                        "model_id",
                        "instance_count",
                        "transitioning",
                        "last_activity_at",
                        "last_error",
                    }
                ),  # fmt: skip
                "target_state": st.target_state.value,
                "current_state": st.current_state.value,
                "managed": model.id in rows,
            }
        )
    if as_json:
        emit_json({"app_id": app_id, "environment": env, "models": out})
        return
    table = DataTable(
        Column("model", overflow="fold"),  # ids stay whole in a narrow or piped output
        "target",
        "current",
        "instances",
        "transitioning",
        "last activity",
        "error",
        title=f"thermal states of {app_id}/{env}",
    )
    for r in out:
        table.add_row(
            str(r["model_id"]),
            str(r["target_state"]),
            str(r["current_state"]),
            str(r["instance_count"]),
            "yes" if r["transitioning"] else "",
            _iso(r["last_activity_at"]) if r["last_activity_at"] else "-",
            str(r["last_error"] or ""),
        )
    console.print(table)


async def _recorded(settings: Settings, app_id: str, env: str) -> dict[str, dict[str, Any]]:
    from activities.db.engine import create_app_engine, resolve_database_urls

    engine = create_app_engine(resolve_database_urls(settings).app)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT * FROM thermal_states WHERE app_id = :a AND environment = :e"),
                {"a": app_id, "e": env},
            )
            return {r["model_id"]: dict(r) for r in result.mappings()}
    finally:
        await engine.dispose()


@app.command("show")
def show(
    model: str, app_id: str | None = AppOpt, env: str | None = EnvOpt, as_json: bool = JsonOpt
) -> None:
    """One model's live state, from its thermal workflow (the recorded one when no worker
    answers or Temporal is unreachable)."""
    settings, app_id, env = _scope(app_id, env, read_only=True)
    catalog = _catalog(settings)
    model_id = _deployable(catalog, model)

    async def go() -> ThermalStatus:
        if (live := await _running_status(settings, app_id, env, model_id)) is not None:
            return live
        # No thermal workflow runs (never used here, or it ended: a closed workflow would
        # still answer with its last state), or it cannot answer: what `list` shows, the
        # record or the default.
        row = (await _recorded(settings, app_id, env)).get(model_id)
        return _recorded_status(catalog, app_id, env, model_id, row)

    st = run(go())
    emit_json(st) if as_json else console.print(_status_table([st]))


SHOW_QUERY_TIMEOUT = timedelta(seconds=5)  # a served query answers in milliseconds


async def _running_status(
    settings: Settings, app_id: str, env: str, model_id: str
) -> ThermalStatus | None:
    """The live state from the model's running workflow; None when none runs or it cannot
    answer (no Temporal, no worker on its queue, or none in time), the reason noted."""
    try:
        control = await _control(settings)
    except TemporalUnavailableError:
        unavailable = f"Temporal is unreachable at {esc(settings.temporal_address)}"
    else:
        queue = await running_task_queue(control.client, control.handle(app_id, env, model_id).id)
        if queue is None:
            return None
        # Only a worker answers the query: with none on the workflow's queue (or none in
        # time) the record, said so, instead of a hang until Temporal's own timeout.
        if not await note_if_no_worker(control.client, queue):
            with contextlib.suppress(_QueryTimeout):
                return await _live_status(control, app_id, env, model_id)
        unavailable = f"the live state of {esc(model_id)} is unavailable (no worker answered)"
    err_console.print(
        f"[yellow]note:[/] {unavailable}: showing the recorded state.", highlight=False
    )
    return None


class _QueryTimeout(Exception):
    pass


async def _live_status(
    control: ThermalControl, app_id: str, env: str, model_id: str
) -> ThermalStatus:
    """The running workflow's status; _QueryTimeout when no worker answers in time."""
    try:
        return await _loaded_status(
            control, app_id, env, model_id, limit_s=10.0, rpc_timeout=SHOW_QUERY_TIMEOUT
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise _QueryTimeout from exc
        raise


def _recorded_status(
    catalog: Catalog, app_id: str, env: str, model_id: str, row: dict[str, Any] | None
) -> ThermalStatus:
    """A model's state as `thermal_states` records it, or its catalog default (no row)."""
    default = catalog.model(model_id).thermal.default_state
    return ThermalStatus(
        app_id=app_id,
        environment=env,
        model_id=model_id,
        endpoint_name=(row or {}).get("endpoint_name") or endpoint_name(app_id, env, model_id),
        target_state=row["target_state"] if row else default,
        current_state=row["current_state"] if row else default,
        instance_count=row["instance_count"] if row else 0,
        endpoint_status=None,
        transitioning=bool(row and row["transitioning"]),
        ready=False,
        in_flight=0,
        last_activity_at=row["last_activity_at"] if row else None,
        last_error=row["last_error"] if row else None,
        transitions=0,
    )


@app.command("set")
def set_state(
    model: str,
    state: str,
    app_id: str | None = AppOpt,
    env: str | None = EnvOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Set a model's target state and wait until it is applied."""
    target = parse_state(state)
    settings, app_id, env = _scope(app_id, env)
    model_id = _deployable(_catalog(settings), model)

    async def go() -> ThermalStatus:
        control = await _control(settings)
        await _note_if_unserved(control, app_id, env, model_id)
        with console.status(f"{esc(model_id)}: applying {target.value} ..."):
            return await control.set_target(app_id, env, model_id, SetTargetRequest(state=target))

    st = run(go())
    emit_json(st) if as_json else console.print(_status_table([st]))


@app.command("warm")
def warm(
    model: str,
    wait: bool = typer.Option(False, "--wait", help="Show progress until the model is ready."),
    deadline: float | None = typer.Option(None, min=1, help="Seconds to wait at most."),
    app_id: str | None = AppOpt,
    env: str | None = EnvOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Warm a model up (COLD models start an endpoint; OFF models are refused)."""
    settings, app_id, env = _scope(app_id, env)
    model_id = _deployable(_catalog(settings), model)

    async def bounded() -> ThermalStatus:
        if deadline is None:
            return await go()
        # The workflow times the wait from when it accepts the warm-up; with no worker it
        # never does, so the CLI keeps its own clock (a margin for the round trips).
        limit = asyncio.timeout(deadline + DEADLINE_MARGIN_S)
        try:
            async with limit:
                return await go()
        except (TimeoutError, RPCTimeoutOrCancelledError):
            # The SDK turns the cancellation of a wait on an update into its own error, which
            # asyncio.timeout passes on as it is: the limit says whether it was the deadline.
            if not limit.expired():
                raise
            why = "the warm-up goes on" if accepted else "no worker accepted the warm-up in time"
            fail(f"{model_id} was not ready within {deadline:g}s; {why}")

    accepted = False

    async def go() -> ThermalStatus:
        nonlocal accepted
        control = await _control(settings)
        await _note_if_unserved(control, app_id, env, model_id)
        start = control._start_op(app_id, env, model_id)
        handle = await control.client.start_update_with_start_workflow(
            ModelThermalWorkflow.warm_up,
            WarmUpRequest(requester="cli", deadline_seconds=deadline),
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        accepted = True
        if not wait:
            # Accepted is not started: an OFF model refuses the warm-up once its workflow has
            # loaded its state, so look before saying anything.
            st = await _loaded_status(control, app_id, env, model_id)
            if st.target_state == ThermalState.OFF:
                fail(model_off_message(app_id, env, model_id))
            return st
        result = asyncio.ensure_future(handle.result())
        try:
            return await _follow(control, result, app_id, env, model_id, as_json)
        finally:  # interrupted or out of time: no orphan task failing at shutdown
            result.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await result

    st = run(bounded())
    if as_json:
        emit_json(st)
    elif not wait:
        console.print(_status_table([st]))


async def _follow(
    control: ThermalControl,
    result: asyncio.Future[ThermalStatus],
    app_id: str,
    env: str,
    model_id: str,
    as_json: bool,
) -> ThermalStatus:
    """Show the model's status live until the warm-up answers; its answer."""
    # --json: stdout carries only the JSON, the live progress goes to stderr.
    live_console = err_console if as_json else console
    with Live(console=live_console, refresh_per_second=4) as live:
        while not result.done():
            try:
                st = await control.status(app_id, env, model_id)
                live.update(_status_table([st]))
            except Exception:  # the workflow may be between runs (continue-as-new)
                pass
            await asyncio.wait({result}, timeout=0.5)
        if result.exception() is not None:
            live.update("")  # the error goes on its own line, not after the last table
            live.stop()
        final = result.result()
        live.update(_status_table([final]))
    return final


async def _loaded_status(
    control: ThermalControl,
    app_id: str,
    env: str,
    model_id: str,
    limit_s: float = 60.0,
    rpc_timeout: timedelta | None = None,
) -> ThermalStatus:
    """The status once a just-started thermal workflow has loaded its state (its query says
    "still starting" until then); `rpc_timeout` bounds each query (RPCError when over)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        try:
            if rpc_timeout is None:
                return await control.status(app_id, env, model_id)
            return await control.handle(app_id, env, model_id).query(
                ModelThermalWorkflow.status, rpc_timeout=rpc_timeout
            )
        except WorkflowQueryFailedError as exc:
            if STILL_STARTING not in str(exc) or loop.time() > deadline:
                raise  # e.g. the model cannot be managed: the workflow's reason, at once
            await asyncio.sleep(0.2)


@app.command("bulk")
def bulk(
    state: str,
    models: str | None = typer.Option(None, help="Comma-separated model ids."),
    all_models: bool = typer.Option(False, "--all", help="Every deployable model."),
    concurrency: int = typer.Option(4, min=1, max=64, help="Transitions at a time."),
    app_id: str | None = AppOpt,
    env: str | None = EnvOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Change many models' target state at once, with bounded concurrency."""
    target = parse_state(state)
    settings, app_id, env = _scope(app_id, env)
    catalog = _catalog(settings)
    if all_models == bool(models):
        fail("give either --models a,b,c or --all")
    ids = (
        [m.id for m in catalog.deployable_models()]
        if all_models
        # canonical ids, each once (an id and its alias are one model)
        else list(
            dict.fromkeys(
                _deployable(catalog, m.strip()) for m in (models or "").split(",") if m.strip()
            )
        )
    )
    if not ids:
        fail("--models names no model; give --models a,b,c or --all")

    async def go() -> list[Any]:
        client = await connect(settings)
        await note_if_no_worker(client, settings.task_queue)
        return await client.execute_workflow(
            BulkThermalUpdateWorkflow.run,
            BulkSetInput(
                app_id=app_id,
                environment=env,
                model_ids=ids,
                state=target,
                max_concurrency=concurrency,
            ),
            id=f"thermal-bulk/{app_id}/{env}/{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )

    results = run(go())
    if as_json:
        emit_json(results)
    else:
        table = DataTable("model", "ok", "state", "instances", "error")
        for r in results:
            table.add_row(
                r.model_id,
                "yes" if r.ok else "NO",
                r.status.current_state.value if r.status else "-",
                str(r.status.instance_count) if r.status else "-",
                r.error or "",
            )
        console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("reconcile")
def reconcile(
    delete_orphans: bool = typer.Option(False, help="Delete endpoints no thermal workflow owns."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the reconcile now (the schedule runs it every minute)."""
    settings = get_settings()

    async def go() -> Any:
        client = await connect(settings)
        await note_if_no_worker(client, settings.task_queue)
        return await client.execute_workflow(
            ThermalReconcileWorkflow.run,
            ReconcileInput(delete_orphans=delete_orphans),
            id=f"thermal-reconcile-manual-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )

    report = run(go())
    if as_json:
        emit_json(report)
        return
    console.print(f"checked {report.checked} recorded models, {report.endpoints} running endpoints")
    for line in report.drift:
        console.print(f"[yellow]drift[/] {esc(line)}")
    for o in report.orphans:
        console.print(
            f"[red]orphan[/] {esc(o.endpoint_name)} ({o.instance_count} instance(s))"
            + (" deleted" if o.deleted else "")
        )
    for o in report.unmanaged:
        console.print(
            f"[magenta]unmanaged[/] {esc(o.endpoint_name)} ({o.instance_count} instance(s)): no "
            "radiant ownership tags, never deleted automatically"
        )


def watch(
    since: int = typer.Option(
        10, min=0, help="Show this many earlier notifications (in scope) first."
    ),
    follow: bool = typer.Option(True, help="Keep following new notifications."),
    app_id: str | None = _app_opt("Only this app's notifications (default: every app's)."),
    env: str | None = _env_opt("Only this environment's notifications (default: every one's)."),
    model: str | None = typer.Option(
        None, "--model", help="Only this model's notifications (an alias names its model)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Follow notifications (warm-up started, ready, went cold, failed, ...) live.

    --app, --env and --model narrow the watch, each on its own or together: the earlier
    notifications, the live ones and those caught up after a lost connection are all only
    the matching ones. A notification that names no app, environment or model is out of any
    scope that asks for one: the fleet's `thermal.reconcile` reports (no app) are printed
    only by an unscoped watch, service state changes (no model) not with --model."""
    settings = get_settings()
    for label, value in (("app", app_id), ("environment", env)):
        if value is not None and (problem := id_problem(label, value)):
            fail(problem)  # an id no notification could carry
    model_id = _deployable(_catalog(settings), model) if model else None
    scope = {"app_id": app_id, "environment": env, "model_id": model_id}
    watcher = _Watcher(as_json, {col: v for col, v in scope.items() if v is not None})
    run(_watch(settings, since, follow, watcher))


def _iso(created: Any) -> str:
    """Backlog rows (datetimes) and live notifications (ISO strings) printed alike."""
    if isinstance(created, str):
        with contextlib.suppress(ValueError):
            created = datetime.fromisoformat(created.replace("Z", "+00:00"))
    if isinstance(created, datetime):
        return created.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(created)


WATCH_RETRY_FIRST_S = 0.5  # a lost connection is retried after this, doubling up to
WATCH_RETRY_MAX_S = 10.0  # this, until it is back (or Ctrl-C)
WATCH_SEEN_IDS = 1024  # the ids printed lately: each notification is printed once
#: After a lost connection the catch-up reads from this many ids below the highest seen: a
#: lower id committed while the watch was away (ids commit out of order) is printed too.
WATCH_CATCH_UP_IDS = WATCH_SEEN_IDS // 2


class _RecentIds:
    """The last `size` ids seen (ids can commit out of order: a lower one may come later)."""

    def __init__(self, size: int = WATCH_SEEN_IDS) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._size = size

    def add(self, row_id: int) -> bool:
        """True the first time `row_id` is seen."""
        if row_id in self._ids:
            return False
        self._order.append(row_id)
        self._ids.add(row_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class _Watcher:
    """Prints each notification once: the backlog, the live ones (LISTEN) and, after a lost
    connection, those committed while it was down (read by id)."""

    def __init__(self, as_json: bool, scope: dict[str, str] | None = None) -> None:
        self.as_json = as_json
        #: The notifications printed: those whose columns (app_id, environment, model_id;
        #: the NOTIFY message carries them too) hold these values; NULL matches no value.
        self.scope = scope or {}
        self.where = " AND ".join(f"{col} = %s" for col in self.scope) or "TRUE"
        self.seen = _RecentIds()
        self.last_id = 0  # the highest id seen (or present when the watch started)
        self.start_id = 0  # the highest id when the watch started (older ones: the backlog)

    def show(self, row_id: int, created: Any, kind: str, payload: Any) -> None:
        if not self.seen.add(row_id):
            return  # e.g. committed between LISTEN and the SELECT: both have it
        self.last_id = max(self.last_id, row_id)
        if self.as_json:
            line = {"created_at": _iso(created), "kind": kind, "payload": payload}
            typer.echo(json.dumps(line, default=str))
            return
        what = ""
        if isinstance(payload, dict):
            what = payload.get("model_id") or payload.get("service_id") or ""
        console.print(
            f"{_iso(created)} [bold]{esc(kind)}[/] {esc(what)} "
            f"{esc(json.dumps(payload, default=str))}"
        )

    def in_scope(self, message: dict[str, Any]) -> bool:
        return all(message.get(col) == value for col, value in self.scope.items())

    async def rows(self, conn: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> None:
        """Print the notifications `sql` selects (its `{where}`: those in scope) by id."""
        cur = await conn.execute(sql.format(where=self.where), (*self.scope.values(), *params))
        for row_id, created, kind, payload in await cur.fetchall():
            self.show(row_id, created, kind, payload)

    async def follow(self, conn: psycopg.AsyncConnection[Any]) -> NoReturn:
        """Print the notifications of a LISTENing connection until it fails."""
        while True:
            truncated = None
            # notifies() holds the connection until closed: closed before reading a row.
            async with contextlib.aclosing(conn.notifies()) as notes:
                async for note in notes:
                    data = json.loads(note.payload)
                    if not self.in_scope(data):
                        continue
                    if data.get("payload_truncated"):
                        truncated = data
                        break
                    self.show(
                        data["id"],
                        data.get("created_at"),
                        data.get("kind", "?"),
                        data.get("payload"),
                    )
            if truncated is not None:
                # Over pg_notify's size limit the trigger leaves the payload out: the row has
                # it (notifications arriving meanwhile wait in the connection's backlog).
                cur = await conn.execute(
                    "SELECT payload FROM notifications WHERE id = %s", (truncated["id"],)
                )
                row = await cur.fetchone()
                kind = truncated.get("kind", "?")
                self.show(
                    truncated["id"], truncated.get("created_at"), kind, row[0] if row else None
                )


async def _watch(settings: Settings, since: int, follow: bool, watcher: _Watcher) -> None:
    from activities.db.engine import libpq_conninfo, one_line, resolve_database_urls

    conninfo = libpq_conninfo(resolve_database_urls(settings).app)
    # A database that is not there at the start fails the command (exit 2); a connection lost
    # later is reconnected below.
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        if follow:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")  # first: nothing committed is missed
        cur = await conn.execute("SELECT coalesce(max(id), 0) FROM notifications")
        watcher.last_id = watcher.start_id = (await cur.fetchone() or (0,))[0]
        await watcher.rows(
            conn,
            "SELECT id, created_at, kind, payload FROM (SELECT * FROM notifications "
            "WHERE {where} ORDER BY id DESC LIMIT %s) t ORDER BY id",
            since,
        )
        if not follow:
            return
        try:
            await watcher.follow(conn)
        except psycopg.OperationalError as exc:
            lost = exc
    while True:  # the connection was lost: back with a backoff, then follow again
        err_console.print(
            f"[yellow]note:[/] lost the database connection ({esc(one_line(lost))}); "
            "reconnecting ...",
            highlight=False,
        )
        async with await _reconnect(conninfo, watcher) as conn:
            try:
                await watcher.follow(conn)
            except psycopg.OperationalError as exc:
                lost = exc


async def _reconnect(conninfo: str, watcher: _Watcher) -> psycopg.AsyncConnection[Any]:
    """A new LISTENing connection once the database answers again (Ctrl-C stops trying), after
    printing what was committed while there was none."""
    delay = WATCH_RETRY_FIRST_S
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 2, WATCH_RETRY_MAX_S)
        conn = None
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")  # first, as at the start
            await watcher.rows(
                conn,
                "SELECT id, created_at, kind, payload FROM notifications "
                "WHERE {where} AND id > %s ORDER BY id",
                max(watcher.start_id, watcher.last_id - WATCH_CATCH_UP_IDS),  # printed: skipped
            )
            return conn
        except psycopg.OperationalError:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
