"""How the embedded stack (`radiant up` / `radiant demo`) ends when something goes wrong: a
worker that fails at start-up or a failed demo job is one line and a non-zero exit, never
"stopped" and exit 0 or a traceback; the stopping runs every step, and a second Ctrl-C or a
SIGTERM meanwhile does not cut it short. No servers: every part is stubbed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner, Result

import workers.main
from activities.db.errors import DatabaseUnavailableError
from workers.cli import stack
from workers.cli.main import app
from workers.process_exit import _interrupt


class Steps:
    """Records the stopping steps (and the SIGINT/SIGTERM handlers while each ran)."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.handlers: dict[str, tuple[object, object]] = {}

    def step(self, name: str, raises: BaseException | None = None):
        def run(*_: object) -> None:
            self.handlers[name] = (
                signal.getsignal(signal.SIGINT),
                signal.getsignal(signal.SIGTERM),
            )
            self.done.append(name)
            if raises is not None:
                raise raises

        return run


@pytest.fixture
def stub_stack(monkeypatch, tmp_path: Path) -> Steps:
    """A stack whose database, Temporal dev server and stopping steps are stubs; what the
    worker and the body do is up to the test."""
    steps = Steps()
    monkeypatch.setenv("RADIANT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RADIANT_DATABASE_URL", raising=False)
    from workers.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setattr(stack, "prepare_database", lambda settings: "postgresql://stub")
    monkeypatch.setattr("workers.temporal.start_dev_server", lambda settings, log: object())
    monkeypatch.setattr(stack, "_stop_local_endpoints", steps.step("endpoints"))
    monkeypatch.setattr("workers.temporal.stop_dev_server", steps.step("temporal"))
    monkeypatch.setattr("activities.db.embedded.release_embedded_postgres", steps.step("postgres"))

    async def never_reconciled(settings: object, limit_s: float = 120.0) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(stack, "_reconcile_at_start", never_reconciled)
    yield steps
    get_settings.cache_clear()


def failing_serve(exc: BaseException):
    async def serve(settings: object, stop: asyncio.Event | None = None) -> None:
        await asyncio.sleep(0.05)
        raise exc

    return serve


def invoke(*args: str) -> Result:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    result = CliRunner().invoke(app, list(args))
    # The stack leaves the handlers as it found them.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    return result


def error_lines(result: Result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (
            DatabaseUnavailableError(
                target="127.0.0.1:5432",
                url="postgresql://radiant_app:***@127.0.0.1:5432/radiant",
                reason='password authentication failed for user "radiant_app"',
            ),
            "PostgreSQL unavailable at 127.0.0.1:5432 (postgresql://radiant_app:***@"
            '127.0.0.1:5432/radiant): password authentication failed for user "radiant_app"',
        ),
        (
            RPCError("namespace default not found", RPCStatusCode.NOT_FOUND, b""),
            "Temporal refused the request: namespace default not found",
        ),
    ],
    ids=["database", "schedules"],
)
@pytest.mark.parametrize("command", [["up"], ["demo", "--no-stay"]], ids=["up", "demo"])
def test_a_worker_failing_at_start_up_is_one_line_and_exit_2(
    stub_stack: Steps, monkeypatch, command: list[str], exc: BaseException, words: str
):
    monkeypatch.setattr(workers.main, "serve", failing_serve(exc))
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [f"error: {words}"], result.output
    assert "Traceback" not in result.output
    assert stub_stack.done == ["endpoints", "temporal", "postgres"]  # and all of it stopped


def test_a_failed_demo_job_is_one_line_with_its_cause(stub_stack: Steps, monkeypatch):
    async def serve(settings: object, stop: asyncio.Event | None = None) -> None:
        assert stop is not None
        await stop.wait()

    async def no_reconcile(settings: object, limit_s: float = 120.0) -> None:
        return None

    async def demo(settings: object, all_operations: bool) -> None:
        failure = ApplicationError("model server for yolov8n did not start:\n  out of memory")
        raise WorkflowFailureError(cause=failure)

    monkeypatch.setattr(workers.main, "serve", serve)
    monkeypatch.setattr(stack, "_reconcile_at_start", no_reconcile)
    monkeypatch.setattr("workers.cli.demo._demo", demo)
    result = invoke("demo", "--no-stay")
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: Workflow execution failed: model server for yolov8n did not start: out of memory"
    ], result.output
    assert "Traceback" not in result.output
    assert stub_stack.done == ["endpoints", "temporal", "postgres"]


async def stopped_by_ctrl_c(settings: object, stop: asyncio.Event | None = None) -> None:
    """The worker as a Ctrl-C leaves it: stopped, no error."""


@pytest.mark.parametrize("failing", ["endpoints", "temporal"])
def test_every_stopping_step_runs_even_if_one_before_it_fails(
    stub_stack: Steps, monkeypatch, failing: str
):
    monkeypatch.setattr(workers.main, "serve", stopped_by_ctrl_c)
    failure = KeyboardInterrupt() if failing == "endpoints" else OSError("no such process")
    if failing == "endpoints":
        monkeypatch.setattr(stack, "_stop_local_endpoints", stub_stack.step(failing, failure))
    else:
        monkeypatch.setattr("workers.temporal.stop_dev_server", stub_stack.step(failing, failure))
    from workers.settings import get_settings

    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with pytest.raises(type(failure)):
        stack._run_locked_stack(get_settings(), None, True)
    assert stub_stack.done == ["endpoints", "temporal", "postgres"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_a_second_ctrl_c_or_a_sigterm_while_stopping_does_not_cut_it_short(
    stub_stack: Steps, monkeypatch
):
    """As under `radiant` (workers.process_exit), SIGTERM takes Ctrl-C's path."""

    def signalled(*_: object) -> None:
        stub_stack.done.append("endpoints")
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(workers.main, "serve", stopped_by_ctrl_c)
    monkeypatch.setattr(stack, "_stop_local_endpoints", signalled)
    from workers.settings import get_settings

    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        try:
            stack._run_locked_stack(get_settings(), None, True)
        except KeyboardInterrupt:  # (caught: it would end the whole test session)
            pytest.fail(f"a signal cut the stopping short after {stub_stack.done}")
        assert stub_stack.done == ["endpoints", "temporal", "postgres"]
        # Ctrl-C and SIGTERM work again afterwards, as they did before.
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def test_serve_closes_its_deps_and_gives_back_the_signal_handlers_when_it_fails(monkeypatch):
    closed: list[bool] = []

    class Deps:
        async def aclose(self) -> None:
            closed.append(True)

    async def connect(settings: object) -> object:
        return object()

    async def build_deps(settings: object) -> Deps:
        return Deps()

    async def ensure_schedules(client: object, settings: object) -> None:
        raise RPCError("schedules refused", RPCStatusCode.PERMISSION_DENIED, b"")

    monkeypatch.setattr(workers.main, "connect", connect)
    monkeypatch.setattr(workers.main, "build_deps", build_deps)
    monkeypatch.setattr(workers.main, "ensure_schedules", ensure_schedules)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with pytest.raises(RPCError):
            asyncio.run(workers.main.serve(object()))  # type: ignore[arg-type]
        assert closed == [True]
        # Not SIG_DFL (the closed loop's leftover): a SIGTERM still takes Ctrl-C's path.
        assert signal.getsignal(signal.SIGTERM) is _interrupt
    finally:
        signal.signal(signal.SIGTERM, previous_term)
