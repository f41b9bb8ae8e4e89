"""Determinism: LLM and registry-sync histories replay without nondeterminism errors: fresh ones
recorded in this run, and the ones committed under tests/llm/histories/ (older code's histories;
refresh on purpose with RADIANT_RECORD_HISTORIES=1 pytest tests/llm/test_replay.py)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.llm.registry_sync import RegistrySyncInput
from activities.llm.types import LLMRequest, llm_workflow_id
from tests.llm.conftest import LLMHarness
from workers.llm_registration import LLM_WORKFLOWS
from workflows.llm import ChatCompletionWorkflow, EmbeddingWorkflow
from workflows.registry_sync import RegistrySyncWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
NAMES = (
    "chat-external",
    "chat-self-hosted",
    "chat-background-warm-up",
    "embedding",
    "sync-thermal",
)
pytestmark = pytest.mark.slow


def replayer() -> Replayer:
    return Replayer(workflows=LLM_WORKFLOWS, data_converter=pydantic_data_converter)


def request(llm: LLMHarness, tenant: str, app: str, **kw: object) -> LLMRequest:
    kw.setdefault("messages", [{"role": "user", "content": "replay me"}])
    return LLMRequest(
        request_id=uuid.uuid4().hex[:12],
        tenant=llm.tenant(tenant),
        app_id=app,
        environment="test",
        **kw,
    )  # type: ignore[arg-type]


async def test_fresh_histories_replay(llm: LLMHarness):
    runs = [
        (ChatCompletionWorkflow, "chat", request(llm, "t1", llm.new_app(), model="gpt-4o")),
        (
            ChatCompletionWorkflow,
            "chat",
            request(llm, "t3", llm.new_app(), prefer_hosting="self_hosted"),
        ),
        (ChatCompletionWorkflow, "chat", request(llm, "t3", llm.new_app())),
        (
            EmbeddingWorkflow,
            "embedding",
            request(llm, "t1", llm.new_app(), messages=[], input=["a", "b"]),
        ),
    ]
    ids = []
    for wf, kind, req in runs:
        wid = llm_workflow_id(req.tenant, kind, req.request_id)
        await llm.client.execute_workflow(wf.run, req, id=wid, task_queue=llm.task_queue)
        ids.append(wid)
    sync_id = f"registry-sync/thermal/replay-{uuid.uuid4().hex[:8]}"
    await llm.client.execute_workflow(RegistrySyncWorkflow.run, RegistrySyncInput(
        sync_type="thermal"), id=sync_id, task_queue=llm.task_queue)  # fmt: skip
    ids.append(sync_id)
    histories = [await llm.client.get_workflow_handle(w).fetch_history() for w in ids]
    for history in histories:
        await replayer().replay_workflow(history)
    if os.environ.get("RADIANT_RECORD_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        for name, history in zip(NAMES, histories, strict=True):
            (HISTORIES / f"{name}.json").write_text(
                json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()})
            )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_histories_replay(path: Path):
    data = json.loads(path.read_text())  # noqa: ASYNC240 - a small local file
    await replayer().replay_workflow(
        WorkflowHistory.from_json(data["workflow_id"], data["history"])
    )


def test_recorded_histories_exist():
    # plus the older code's histories guarding `workflow.patched` branches, named so a lost
    # one fails instead of silently dropping its replay case
    guards = {
        "old-chat-cancelled-while-metering",
        "chat-cancelled-while-metering",
        # tests/llm/test_cancelled_call.py: a cancel during the provider call
        "old-llm-cancelled-mid-call",
        "llm-cancelled-mid-call",
        # tests/llm/test_hold_release.py: a cancel while the hold of a cold model waits
        # (llm-release-failed-hold, llm-cancel-ends-cancelled)
        "old-llm-cancelled-hold",
        "llm-cancelled-hold",
        # tests/llm/test_cancel_status.py: a cancel during planning
        # (llm-cancel-ends-cancelled)
        "old-llm-cancelled-prepare",
        "llm-cancelled-prepare",
    }
    assert {p.stem for p in HISTORIES.glob("*.json")} == set(NAMES) | guards, (
        "record: RADIANT_RECORD_HISTORIES=1 pytest tests/llm/test_replay.py"
    )
