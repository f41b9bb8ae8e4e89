"""App and environment ids are joined with `/` into workflow ids (`thermal/{app}/{env}/{model}`):
an id holding a `/` would name another pair's workflow (app `acme/eu` in env `prod` is app
`acme` in env `eu/prod`). Such ids are refused wherever a pair enters, before any workflow
starts or any cost: the CLI, ThermalControl, a job's plan, an LLM request's prepare."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.app_scope import AppScope
from activities.llm.activities import LLMActivities, PrepareInput
from activities.llm.types import LLMRequest
from activities.tenants import create_tenant
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.cli import invoke_cli
from tests.fixtures.waiting import activity_types
from tests.fixtures.worker import ThermalHarness
from tests.jobs.test_request_ids import rid
from workers.settings import Settings, SettingsError, get_settings
from workflows.service_job import ServiceJobWorkflow
from workflows.service_types import InputRef, ServiceRequest, job_workflow_id
from workflows.thermal_types import SetTargetRequest, WarmUpRequest, thermal_workflow_id

CATALOG = load_catalog()
INVALID_APP_ID = "InvalidAppId"  # activities.app_scope.ERR_INVALID_APP_ID
RULE = "letters, digits, '.', '_' or '-'"


def aliases(app: str) -> list[tuple[str, str]]:
    """Two pairs whose thermal workflow ids were one and the same."""
    return [(f"{app}/eu", "prod"), (app, "eu/prod")]


def assert_refused(err: BaseException, value: str) -> None:
    assert isinstance(err, ApplicationError), repr(err)
    assert err.type == INVALID_APP_ID and err.non_retryable, (err.type, err.message)
    assert repr(value) in err.message and RULE in err.message, err.message


def test_ids_every_default_and_test_uses_pass_and_slashes_do_not() -> None:
    from activities.app_scope import ERR_INVALID_APP_ID, check_pair, pair_problem

    assert ERR_INVALID_APP_ID == INVALID_APP_ID
    settings = Settings()
    check_pair(settings.app_id, settings.environment)  # radiant / dev
    for app, env in [
        (f"t{uuid.uuid4().hex[:8]}", "test"),  # the harnesses' new_app()
        (f"l{uuid.uuid4().hex[:8]}", "e"),
        ("acme-bar", "x" * 60),  # a long environment (its endpoint name is cut and hashed)
        ("ThinkTank", "prod"),
        ("a.b_c-9", "x" * 63),
    ]:
        assert pair_problem(app, env) is None, (app, env)
    for bad in ["acme/eu", "", "-acme", ".acme", "ac me", "acme*", "acm\u00e9", "x" * 64]:
        assert pair_problem(bad, "prod") and pair_problem("acme", bad), bad
    assert "app 'acme/eu' is not a valid id" in (pair_problem("acme/eu", "prod") or "")
    assert "environment 'eu/prod'" in (pair_problem("acme", "eu/prod") or "")
    with pytest.raises(ApplicationError) as info:
        check_pair("acme", "eu/prod")
    assert_refused(info.value, "eu/prod")


def test_the_scope_refuses_them_even_when_it_serves_any_pair() -> None:
    for app, env in aliases("acme"):
        assert not AppScope().allows(app, env)
        assert RULE in (AppScope().problem(app, env) or "")
        with pytest.raises(ApplicationError) as info:
            AppScope().check(app, env)
        assert_refused(info.value, "acme/eu" if "/" in app else "eu/prod")
    assert AppScope().problem("acme", "prod") is None


def test_settings_refuse_a_slash_in_radiant_app_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, label in [
        ("RADIANT_APP_ID", "acme/eu", "app"),
        ("RADIANT_ENVIRONMENT", "eu/prod", "environment"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            get_settings.cache_clear()
            try:
                with pytest.raises(SettingsError) as err:
                    get_settings()
            finally:
                get_settings.cache_clear()
        assert f"{name}: {label} {value!r} is not a valid id" in str(err.value)


async def test_control_refuses_ids_that_alias_another_pair(
    thermal: ThermalHarness, temporal_client: Client
) -> None:
    app = thermal.new_app()
    for a, e in aliases(app):
        bad = a if "/" in a else e
        off = SetTargetRequest(state=ThermalState.OFF)
        with pytest.raises(ApplicationError) as info:
            await thermal.control.set_target(a, e, "mobilesam", off)
        assert_refused(info.value, bad)
        with pytest.raises(ApplicationError) as info:
            await thermal.control.warm_up(a, e, "mobilesam", WarmUpRequest())
        assert_refused(info.value, bad)
        with pytest.raises(ApplicationError) as info:
            await thermal.control.status(a, e, "mobilesam")
        assert_refused(info.value, bad)
        with pytest.raises(ApplicationError) as info:
            thermal.control.handle(a, e, "mobilesam")
        assert_refused(info.value, bad)
    with pytest.raises(RPCError) as missing:  # no workflow was started for either
        await temporal_client.get_workflow_handle(
            thermal_workflow_id(app, "eu/prod", "mobilesam")
        ).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_cli_refuses_them_in_one_line(
    thermal: ThermalHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported reproduction: `set ... warm --app acme/eu --env prod` then `set ... off
    --app acme --env eu/prod` turned off the first pair's model."""
    app = thermal.new_app()
    (a1, e1), (a2, e2) = aliases(app)
    for args in (
        ("thermal", "set", "mobilesam", "warm", "--app", a1, "--env", e1),
        ("thermal", "set", "mobilesam", "off", "--app", a2, "--env", e2),
        ("thermal", "show", "mobilesam", "--app", a1, "--env", e1),  # a read: no scope check
    ):
        res = await invoke_cli(thermal, monkeypatch, *args)
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "is not a valid id" in lines[0], res.stderr
        assert "/" in lines[0] and RULE in " ".join(res.stderr.split()), res.stderr
    assert not await thermal.backend.list_endpoints(f"radiant-{app}-")


async def test_a_job_for_such_a_pair_is_refused_by_its_plan(
    thermal: ThermalHarness, catalog_db
) -> None:
    tenant = create_tenant(catalog_db.owner_url, f"ids-{uuid.uuid4().hex[:6]}", 5)
    for a, e in aliases(thermal.new_app()):
        request_id = uuid.uuid4().hex[:10]
        handle = await thermal.client.start_workflow(
            ServiceJobWorkflow.run,
            ServiceRequest(
                tenant=tenant.name,
                app_id=a,
                environment=e,
                request_id=request_id,
                service="perception",
                operation="detect",
                input=InputRef(uri="/x"),
            ),  # fmt: skip
            id=job_workflow_id(tenant.name, "perception", "detect", request_id),
            task_queue=thermal.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert_refused(info.value.cause, a if "/" in a else e)
        assert await activity_types(handle) == ["jobs.plan"]  # nothing after the plan


async def test_an_llm_request_for_such_a_pair_is_refused_before_any_cost(
    temporal_client: Client, tmp_path: Path
) -> None:
    control = ThermalControl(temporal_client, "unused")  # serves any (valid) pair
    llm = LLMActivities(CATALOG, None, control, backend_kind="local", data_dir=tmp_path)
    for a, e in aliases("acme"):
        req = LLMRequest(
            request_id=rid(), tenant="t", app_id=a, environment=e,
            messages=[{"role": "user", "content": "hi"}],
        )  # fmt: skip
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(llm.prepare, PrepareInput(kind="chat", request=req))
        assert_refused(info.value, a if "/" in a else e)
