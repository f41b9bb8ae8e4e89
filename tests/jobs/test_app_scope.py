"""RADIANT_APPS: a deployment serves only its (app, environment) pairs. A job, an LLM request or
a thermal change naming another pair is refused before any cost, and no endpoint starts."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.app_scope import ERR_APP_NOT_SERVED, AppNotServedError, AppScope
from activities.llm.activities import LLMActivities, PrepareInput
from activities.llm.types import LLMRequest
from activities.thermal_control import ThermalControl
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import activity_types
from tests.fixtures.worker import running_harness
from tests.jobs.test_request_ids import rid
from tests.jobs.test_service_jobs import prepare, start_job
from workers.settings import Settings
from workflows.thermal_types import SetTargetRequest

CATALOG = load_catalog()


def test_patterns() -> None:
    scope = AppScope.parse(["radiant/prod", "lab/*"])
    assert scope.allows("radiant", "prod") and scope.allows("lab", "any-env")
    assert not scope.allows("radiant", "dev") and not scope.allows("invented", "prod")
    assert "invented/prod is not served" in (scope.problem("invented", "prod") or "")
    assert AppScope().allows("anything", "at-all")  # the default: any pair
    for bad in (["radiant"], ["radiant/"], ["a/b/c"], []):
        with pytest.raises(ValueError):
            AppScope.parse(bad)


def test_settings_read_radiant_apps(monkeypatch) -> None:
    monkeypatch.setenv("RADIANT_APPS", "radiant/prod, radiant/staging")
    assert Settings().app_scope().patterns == ("radiant/prod", "radiant/staging")
    monkeypatch.setenv("RADIANT_APPS", "radiant")
    with pytest.raises(ValueError, match="not app/environment"):
        Settings()


async def test_a_job_for_another_app_is_refused_before_any_cost(
    temporal_client, catalog_db, tenants, tmp_path
):
    big, _ = tenants
    async with running_harness(temporal_client, catalog_db, tmp_path, apps=["served/*"]) as h:
        await prepare(h, "other", "perception", [])  # enabled there, but not served here
        handle = await start_job(h, "other", big.name, "perception/detect")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == ERR_APP_NOT_SERVED
        assert "other/test is not served" in cause.message and "served/*" in cause.message
        assert await activity_types(handle) == ["jobs.plan"]

        with pytest.raises(AppNotServedError):  # nor may an admin start its models
            await h.control.set_target(
                "other", "test", "yolov8n", SetTargetRequest(state=ThermalState.WARM)
            )
        assert not await h.backend.list_endpoints("radiant-other-")

        await prepare(h, "served", "perception", [])  # a served pair runs as usual
        result = await (await start_job(h, "served", big.name, "perception/detect")).result()
        assert result.billed > 0


async def test_an_llm_request_for_another_app_is_refused(temporal_client, catalog_db, tmp_path):
    control = ThermalControl(temporal_client, "unused", apps=AppScope(("served/*",)))
    llm = LLMActivities(CATALOG, None, control, backend_kind="local", data_dir=tmp_path)
    req = LLMRequest(
        request_id=rid(), tenant="t", app_id="other", environment="test",
        messages=[{"role": "user", "content": "hi"}],
    )  # fmt: skip
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(llm.prepare, PrepareInput(kind="chat", request=req))
    assert info.value.type == ERR_APP_NOT_SERVED and info.value.non_retryable
