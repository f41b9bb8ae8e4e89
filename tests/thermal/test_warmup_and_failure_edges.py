"""Review fixes of ModelThermalWorkflow: the idle period of a slow COLD create, autoscaling owed
after a failed post-create capacity step, a blocked model not `transitioning`, timers while
waiting to continue as new, and a warm-up turned OFF while it waits.

Real durations (no time skipping): the idle time is 3 s, backoffs 1-4 s.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.backends.base import EndpointInfo
from activities.backends.errors import AccessDenied
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness, running_harness
from tests.thermal.test_capacity_and_leases import (
    ENV,
    MODEL,
    Faults,
    RecordingBackend,
    _set,
    settled_at,
)
from tests.thermal.test_replay import HISTORIES, replayer
from workers.cli.common import failure_message
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import ERR_MODEL_OFF, ERR_WARMUP_FAILED, WarmUpRequest


class AutoscalingDenied(RecordingBackend):
    """Fails the next `deny_autoscaling` capacity calls as RegisterScalableTarget would."""

    deny_autoscaling = 0

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        if self.deny_autoscaling:
            self.deny_autoscaling -= 1
            self.faults.capacity_calls.append((name, instance_count, min_instances, max_instances))
            raise AccessDenied(
                "not authorized: application-autoscaling:RegisterScalableTarget (injected)"
            )
        return await super().set_capacity(name, instance_count, min_instances, max_instances)


async def _keep_history(h: ThermalHarness, app: str, name: str, run_id: str | None = None) -> None:
    """Replay the model's workflow run; RADIANT_RECORD_HISTORIES=1 keeps it as a guard history
    (of the patched branch: see GUARD_HISTORIES in test_replay.py)."""
    handle = h.client.get_workflow_handle(h.control.handle(app, ENV, MODEL).id, run_id=run_id)
    history = await handle.fetch_history()
    await replayer().replay_workflow(history)
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(
            json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
        )


@pytest_asyncio.fixture
async def harness(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ThermalHarness, AutoscalingDenied]]:
    data_dir = tmp_path_factory.mktemp("review")
    backend = AutoscalingDenied(data_dir, faults=Faults())
    timings = TIMINGS.model_copy(update={"capacity_retry_seconds": 1.0})
    async with running_harness(temporal_client, catalog_db, data_dir, backend, timings) as h:
        yield h, backend


async def test_a_cold_create_longer_than_the_idle_time_is_not_deleted_when_ready(harness):
    """The idle period (3 s) starts when the warm-up is ready, not at the caller's arrival:
    a 4-s create no longer ends in a delete right after the caller heard "ready"."""
    h, backend = harness
    app = h.new_app()
    backend.faults.create_delay = 4.0
    st = await asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, WarmUpRequest()), 60)
    assert st.ready and st.instance_count == 1
    await asyncio.sleep(1.0)  # well within an idle period started at ready
    st = await h.control.status(app, ENV, MODEL)
    assert st.instance_count == 1 and not st.transitioning, st
    assert backend.faults.deletes == []
    await wait_for(settled_at(h, app, 0), limit=20)  # it still scales to zero when idle
    await _keep_history(h, app, "thermal-idle-from-ready")


async def test_autoscaling_that_failed_after_a_create_is_retried(harness):
    """The capacity step after a WARM create (registering autoscaling) fails: the retry after
    the backoff registers it, instead of finding the count right and dropping the error."""
    h, backend = harness
    app = h.new_app()
    backend.deny_autoscaling = 1
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await _set(h, app, ThermalState.WARM)
    assert "RegisterScalableTarget" in failure_message(info.value)
    assert len(backend.faults.capacity_calls) == 1
    await wait_for(settled_at(h, app, 1), limit=20)
    calls = backend.faults.capacity_calls
    assert len(calls) == 2, calls  # retried once, with the WARM bounds
    assert calls[1][3] > calls[1][2]
    st = await h.control.status(app, ENV, MODEL)
    assert st.current_state == ThermalState.WARM and st.last_error is None
    await _keep_history(h, app, "thermal-autoscaling-owed-after-create")


async def test_a_model_blocked_by_a_failed_transition_is_not_transitioning(harness):
    """A create that failed and could not be cleaned up blocks the model until new intent:
    neither the status query nor thermal_states says it is still transitioning."""
    h, backend = harness
    app = h.new_app()
    backend.faults.no_capacity_creates = 1000
    backend.faults.deny_delete = True
    with pytest.raises(WorkflowUpdateFailedError):
        await _set(h, app, ThermalState.WARM)
    st = await h.control.status(app, ENV, MODEL)
    assert st.last_error and not st.transitioning, st
    [row] = await h.rows(
        "SELECT transitioning, last_error FROM thermal_states WHERE app_id = :a", a=app
    )
    assert row["last_error"] and not row["transitioning"], row


async def test_a_timer_fires_while_waiting_to_continue_as_new(
    temporal_client: Client, catalog_db, tmp_path_factory: pytest.TempPathFactory
):
    """A warm-up arrives while a create that found no capacity backs off (4 s) and the history
    reaches its limit: waiting for that warm-up to finish before continuing as new, the run
    still retries the create at the backoff's end, so the warm-up is answered ready."""
    data_dir = tmp_path_factory.mktemp("review-drain")
    faults = Faults(no_capacity_creates=1)
    backend = RecordingBackend(data_dir, faults=faults)
    limit = 100  # past the failed create (~90 events with the warm-up)
    timings = TIMINGS.model_copy(
        update={"capacity_retry_seconds": 4.0, "max_history_events": limit}
    )
    async with running_harness(temporal_client, catalog_db, data_dir, backend, timings) as h:
        app = h.new_app()
        with pytest.raises(WorkflowUpdateFailedError):
            await _set(h, app, ThermalState.WARM)  # no capacity: a 4-s backoff
        handle = h.control.handle(app, ENV, MODEL)
        first_run = (await handle.describe()).run_id
        warm_up = asyncio.create_task(
            asyncio.wait_for(
                h.control.warm_up(app, ENV, MODEL, WarmUpRequest(deadline_seconds=15)), 60
            )
        )
        await asyncio.sleep(1.0)  # the warm-up waits on the backoff
        # Grow the history past its limit (a workflow task sees it there): the run now waits
        # for the warm-up to finish before it continues as new.
        while (desc := await handle.describe()).run_id == first_run and (
            desc.raw_description.workflow_execution_info.history_length < limit + 4
        ):
            await handle.signal(ModelThermalWorkflow.touch)
        assert desc.run_id == first_run, "continued as new before the warm-up came"
        assert len(faults.creates) == 1, "the create was retried before the drain began"
        st = await warm_up  # deadline error (15 s) without the timer
        assert st.ready and st.instance_count == 1
        assert len(faults.creates) == 2
        await _keep_history(h, app, "thermal-timers-before-continue-as-new", first_run)


async def test_a_warm_up_waiting_when_the_model_is_turned_off_is_told_it_is_off(harness):
    """A warm-up still waiting on its create when the model is turned OFF fails as a warm-up
    of an OFF model does (ERR_MODEL_OFF), not as a failed warm-up."""
    h, backend = harness
    app = h.new_app()
    backend.faults.create_delay = 3.0
    warm_up = asyncio.create_task(
        asyncio.wait_for(h.control.warm_up(app, ENV, MODEL, WarmUpRequest()), 60)
    )
    await asyncio.sleep(1.0)
    await _set(h, app, ThermalState.OFF)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await warm_up
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ERR_MODEL_OFF, cause
    assert cause.type != ERR_WARMUP_FAILED and f"{MODEL} is OFF" in cause.message
