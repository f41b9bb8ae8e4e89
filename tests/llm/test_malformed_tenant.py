"""A tenant reference that is neither an id nor a possible name (a NUL byte, which the driver
refuses with a DataError a retried activity would hit forever) is refused at once: no tenant
has it, and the request fails with UnknownTenant, non-retryable, before any query."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.llm.state import find_tenant
from activities.llm.types import LLMRequest, LLMResponse, llm_workflow_id
from tests.llm.conftest import LLMHarness
from workflows.service_types import ERR_UNKNOWN_TENANT

MALFORMED = ["acme\x00x", "\x00", " acme\x00 "]


@pytest.mark.parametrize("ref", MALFORMED, ids=repr)
async def test_find_tenant_refuses_malformed_without_a_query(llm: LLMHarness, ref: str):
    assert await find_tenant(llm.engine, ref) is None


async def test_find_tenant_still_finds_names_and_ids(llm: LLMHarness):
    name = llm.tenant("t1")
    by_name = await find_tenant(llm.engine, f" {name} ")
    assert by_name is not None and by_name.name == name
    by_id = await find_tenant(llm.engine, by_name.id)
    assert by_id == by_name


@pytest.mark.slow
async def test_nul_byte_tenant_fails_the_request_at_once(llm: LLMHarness):
    rid = uuid.uuid4().hex[:12]
    req = LLMRequest(
        request_id=rid,
        tenant="acme\x00x",
        app_id=llm.new_app(),
        environment="test",
        model="gpt-4o",
        messages=[{"role": "user", "content": "who am I?"}],
    )  # type: ignore[call-arg]
    handle = await llm.client.start_workflow(
        "ChatCompletionWorkflow",
        req,
        id=llm_workflow_id("acme", "chat", rid),
        task_queue=llm.task_queue,
        result_type=LLMResponse,
    )
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), 20)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == ERR_UNKNOWN_TENANT and cause.non_retryable
    assert "unknown tenant" in cause.message
