"""A command that waits on a task queue no worker polls says so (one stderr line) instead of
looking hung; with a worker there, it says nothing."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from tests.fixtures.cli import invoke_cli
from tests.fixtures.waiting import wait_for
from tests.fixtures.worker import ThermalHarness
from workers.samples import SAMPLES
from workers.temporal import worker_polling


async def test_worker_polling_tells_a_served_queue_from_an_empty_one(thermal: ThermalHarness):
    # A worker shows up after its first poll reaches the server.
    await wait_for(lambda: worker_polling(thermal.client, thermal.task_queue))
    assert await worker_polling(thermal.client, f"nobody-{uuid.uuid4().hex[:6]}") is False


async def test_a_waiting_command_without_a_worker_says_so(
    thermal: ThermalHarness, monkeypatch: pytest.MonkeyPatch
):
    served = await invoke_cli(thermal, monkeypatch, "thermal", "reconcile", "--json")
    assert served.exit_code == 0, served.output
    assert "no worker is polling" not in served.stderr

    empty = f"nobody-{uuid.uuid4().hex[:6]}"
    queue_less = dataclasses.replace(thermal, task_queue=empty)
    # Nothing serves that queue: the job is accepted and queued, and the user is told why
    # nothing will happen yet.
    result = await invoke_cli(
        queue_less, monkeypatch, "submit", "perception", "detect", "--tenant", "anyone",
        "--input", str(SAMPLES["perception/detect"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"no worker is polling task queue '{empty}'" in " ".join(result.stderr.split())
    job_id = next(w for w in result.stdout.split() if w.startswith("job/"))

    # Its progress is a query no worker can answer: say so at once, not after a timeout.
    shown = await invoke_cli(queue_less, monkeypatch, "jobs", "show", job_id, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["progress"]["stage"] == "queued"
    assert "no worker is polling" in " ".join(shown.stderr.split())
    await thermal.client.get_workflow_handle(job_id).terminate("test: nothing serves it")
