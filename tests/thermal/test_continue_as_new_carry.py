"""What the last pass before continue-as-new leaves pending is carried to the next run:

- a `recount` (the reconcile saw SageMaker's autoscaler move the count) that arrived while that
  pass ran: the next run re-reads the count, instead of waiting for the next reconcile;
- the reason an update rolled back, while the capacity step after it backs off: the retry in
  the next run still leaves it in last_error, as a retry within the same run does.

Real durations (no time skipping), a short history limit. RADIANT_RECORD_HISTORIES=1 keeps the
run started with a carried recount under tests/histories/ (see GUARD_HISTORIES)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.testing import ActivityEnvironment

from activities.backends.base import EndpointInfo
from activities.backends.local import LocalStandInBackend
from activities.thermal_activities import ThermalActivities
from models_catalog.catalog import load_catalog
from models_catalog.types import ThermalState
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import TIMINGS, ThermalHarness, running_harness
from tests.thermal.test_capacity_and_leases import ENV, MODEL
from tests.thermal.test_record_activity import ready_record
from tests.thermal.test_update_rolled_back import REASON, RollingBackBackend
from tests.thermal.test_warmup_and_failure_edges import _keep_history
from workflows.thermal import ModelThermalWorkflow
from workflows.thermal_types import (
    ModelThermalInput,
    SetTargetRequest,
    ThermalSnapshot,
    thermal_workflow_id,
)

LIMIT = 120  # history events: well past the setup of each test, reached on purpose


class GatedDescribe(LocalStandInBackend):
    """While `gate` is set and not yet opened, a describe reads the endpoint and then waits
    for it: the pass that asked stays under way for as long as the test needs."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()  # a describe waits at the gate

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        info = await super().describe_endpoint(name)
        if self.gate is not None and not self.gate.is_set():
            self.reading.set()
            await self.gate.wait()
        return info


async def _history_length(handle: WorkflowHandle) -> int:
    return (await handle.describe()).raw_description.workflow_execution_info.history_length


async def _continue_as_new(handle: WorkflowHandle, first_run: str) -> None:
    """Grow the run's history (touch signals) until it continues as new."""
    while (await handle.describe()).run_id == first_run:
        await handle.signal(ModelThermalWorkflow.touch)
        await asyncio.sleep(0.05)


async def test_a_recount_during_the_last_pass_is_acted_on_by_the_next_run(
    temporal_client: Client, catalog_db, tmp_path: Path
) -> None:
    """The autoscaler moves a HOT endpoint to 3, then to 4 while the workflow re-reads the
    first move: the second recount arrives during that pass, which ends at the history limit.
    The next run re-reads the count (4) and records it; before, it was dropped and the record
    kept 3 until the next reconcile."""
    backend = GatedDescribe(tmp_path)
    timings = TIMINGS.model_copy(update={"max_history_events": LIMIT})
    async with running_harness(temporal_client, catalog_db, tmp_path, backend, timings) as h:
        app = h.new_app()
        st = await asyncio.wait_for(
            h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.HOT)), 60
        )
        assert st.instance_count == 2
        handle = h.control.handle(app, ENV, MODEL)
        first_run = (await handle.describe()).run_id
        assert await _history_length(handle) < LIMIT - 20, "the setup reached the limit"

        backend.gate = asyncio.Event()
        await backend.set_capacity(st.endpoint_name, 3, 2, 5)  # the autoscaler, out of band
        await handle.signal(ModelThermalWorkflow.recount)
        await asyncio.wait_for(backend.reading.wait(), 10)  # the re-read saw 3 and waits
        await backend.set_capacity(st.endpoint_name, 4, 2, 5)
        await handle.signal(ModelThermalWorkflow.recount)  # during the pass
        while await _history_length(handle) < LIMIT:  # that pass ends at the limit
            await handle.signal(ModelThermalWorkflow.touch)
        assert (await handle.describe()).run_id == first_run, "continued as new too early"
        backend.gate.set()

        async def next_run() -> str | None:
            run_id = (await handle.describe()).run_id
            return run_id if run_id != first_run else None

        second_run = await wait_for(next_run, limit=20)
        first = await h.client.get_workflow_handle(handle.id, run_id=first_run).describe()
        assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

        async def recounted() -> bool:
            status = await h.control.status(app, ENV, MODEL)
            rows = await h.rows(
                "SELECT instance_count FROM thermal_states WHERE app_id = :a", a=app
            )
            return status.instance_count == 4 and rows[0]["instance_count"] == 4

        await wait_for(recounted, limit=10)
        # Billed as it ran: 3 from the pass's re-read (the first run), 4 from the next run's.
        rows = await h.rows(
            "SELECT instance_count, ended_at IS NULL AS open FROM endpoint_uptime "
            "WHERE app_id = :a ORDER BY started_at, id",
            a=app,
        )
        assert [(r["instance_count"], r["open"]) for r in rows] == [
            (2, False),
            (3, False),
            (4, True),
        ]
        assert (await h.control.status(app, ENV, MODEL)).current_state == ThermalState.HOT
        await _keep_history(h, app, "thermal-recount-carried", second_run)


async def test_a_rollback_note_is_kept_when_the_backoff_spans_continue_as_new(
    temporal_client: Client, catalog_db, tmp_path: Path
) -> None:
    """A WARM warm-up's update rolled back and the capacity step after it was refused: the
    model backs off (4 s), and continues as new meanwhile. The retry in the next run succeeds
    and, as within one run, last_error still says why the old config serves."""
    backend = RollingBackBackend(tmp_path, refuse_capacity=1)
    timings = TIMINGS.model_copy(
        update={"capacity_retry_seconds": 4.0, "max_history_events": LIMIT}
    )
    async with running_harness(temporal_client, catalog_db, tmp_path, backend, timings) as h:
        app = h.new_app()
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await h.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.WARM))
        assert REASON in str(failed.value.cause) and "refused" in str(failed.value.cause)
        handle = h.control.handle(app, ENV, MODEL)
        first_run = (await handle.describe()).run_id
        assert await _history_length(handle) < LIMIT - 20, "the setup reached the limit"

        await asyncio.wait_for(_continue_as_new(handle, first_run), 10)
        assert len(backend.capacity_calls) == 1, "retried before it continued as new"

        async def registered() -> bool:
            st = await h.control.status(app, ENV, MODEL)
            return len(backend.capacity_calls) == 2 and "refused" not in (st.last_error or "")

        await wait_for(registered, limit=20)
        st = await h.control.status(app, ENV, MODEL)
        assert st.ready and st.current_state == ThermalState.WARM and st.instance_count == 1
        assert REASON in (st.last_error or "") and "the next create" in (st.last_error or ""), st
        [row] = await h.rows("SELECT last_error FROM thermal_states WHERE app_id = :a", a=app)
        assert row["last_error"] == st.last_error


async def test_records_go_on_when_the_server_clock_stepped_back_across_continue_as_new(
    thermal: ThermalHarness,
) -> None:
    """The last run recorded at a workflow time an hour ahead of the next run's clock (the
    server's clock stepped back in between). The next run stamps its records no earlier than
    the last one it carries, so they are written; before, Postgres skipped each as older until
    the clock passed that hour."""
    app = thermal.new_app()
    ahead = datetime.now(UTC) + timedelta(hours=1)
    acts = ThermalActivities(load_catalog(), thermal.backend, thermal.engine)
    last = ready_record(app, seq=5, count=0, event=None, at=ahead)
    await ActivityEnvironment().run(acts.record, last.model_copy(update={"environment": ENV}))
    snapshot = ThermalSnapshot(
        target_state=ThermalState.COLD,
        current_state=ThermalState.COLD,
        seq=5,
        last_recorded_at=ahead,
    )
    await thermal.client.start_workflow(
        ModelThermalWorkflow.run,
        ModelThermalInput(
            app_id=app, environment=ENV, model_id=MODEL, timings=TIMINGS, snapshot=snapshot
        ),
        id=thermal_workflow_id(app, ENV, MODEL),
        task_queue=thermal.task_queue,
    )
    st = await asyncio.wait_for(
        thermal.control.set_target(app, ENV, MODEL, SetTargetRequest(state=ThermalState.OFF)), 60
    )
    assert st.current_state == ThermalState.OFF
    [row] = await thermal.rows(
        "SELECT current_state, record_seq, record_at FROM thermal_states WHERE app_id = :a",
        a=app,
    )
    assert (row["current_state"], row["record_seq"]) == ("OFF", 6)
    assert row["record_at"] == ahead  # carried: the next record is not stamped earlier
