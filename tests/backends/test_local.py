"""LocalStandInBackend with real model-server processes (no mocks).

Every process a test starts is stopped by the `backend` fixture's finalizer, even on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.backends import local_process
from activities.backends.base import (
    AsyncInferenceFailed,
    AsyncInvocation,
    CapacityUnavailable,
    EndpointFailed,
    EndpointNameConflict,
    EndpointSpec,
    InvalidEndpointState,
    InvalidRequest,
    ModelError,
    ModelServerError,
    ServiceUnavailable,
    Unclassified,
)
from activities.backends.local import (
    LocalInstance,
    LocalRecord,
    LocalStandInBackend,
    pid_alive,
)
from tests.fixtures.waiting import wait_for
from workers.samples import SAMPLES

pytestmark = pytest.mark.slow

# Real inputs: the stand-ins decode what they are sent (a non-image is a 400, as from the real
# container), so requests carry the bundled samples.
PNG = SAMPLES["perception/detect"].read_bytes()


def spec(model: str = "yolov8m", category: str = "vision_detection",
         specialty: str = "object_detection", **over: Any) -> EndpointSpec:  # fmt: skip
    base: dict[str, Any] = {
        "endpoint_name": f"radiant-test-dev-{model}",
        "model_id": model,
        "image": "local/pytorch-inference:2.1",
        "instance_type": "ml.g5.xlarge",
        "instance_count": 1,
        "min_instances": 0,
        "max_instances": 3,
        "category": category,
        "specialty": specialty,
    }
    return EndpointSpec(**{**base, **over})


def record(backend: LocalStandInBackend, name: str) -> dict[str, Any]:
    return json.loads(backend.record_path(name).read_text())


# --------------------------------------------------------------------------- lifecycle


async def test_ensure_starts_a_real_server_answering_ping(
    backend: LocalStandInBackend,
) -> None:
    s = spec()
    info = await backend.ensure_endpoint(s)
    assert (info.status, info.instance_count, info.model_id) == ("InService", 1, "yolov8m")
    rec = record(backend, s.endpoint_name)
    [inst] = rec["instances"]
    assert rec["status"] == "InService" and pid_alive(inst["pid"])
    async with httpx.AsyncClient() as client:
        ping = await client.get(f"http://127.0.0.1:{inst['port']}/ping")
    assert ping.status_code == 200 and ping.headers["x-radiant-instance"] == inst["instance_id"]


async def test_ensure_is_idempotent(backend: LocalStandInBackend, tmp_path: Path) -> None:
    s = spec()
    first = await backend.ensure_endpoint(s)
    pids = backend.endpoint_pids(s.endpoint_name)
    again = await backend.ensure_endpoint(s)
    assert backend.endpoint_pids(s.endpoint_name) == pids and len(pids) == 1
    assert again.status == "InService" and again.created_at == first.created_at
    # Two workers racing for the same endpoint: the file lock lets only one start it.
    other = spec(model="yolov8n")
    second_worker = LocalStandInBackend(tmp_path)
    await asyncio.gather(backend.ensure_endpoint(other), second_worker.ensure_endpoint(other))
    assert len(backend.endpoint_pids(other.endpoint_name)) == 1


async def test_ensure_refuses_an_endpoint_another_app_owns(backend: LocalStandInBackend) -> None:
    """("test", "dev") and ("Test", "dev") share one endpoint name: the second owner gets a clear
    non-retryable error and the first one's server is left alone."""
    mine = spec(tags={"radiant:app": "test", "radiant:environment": "dev"})
    theirs = spec(tags={"radiant:app": "Test", "radiant:environment": "dev"}, instance_count=2)
    await backend.ensure_endpoint(mine)
    pids = backend.endpoint_pids(mine.endpoint_name)
    with pytest.raises(EndpointNameConflict) as exc:
        await backend.ensure_endpoint(theirs)
    assert not exc.value.retryable and "test/dev/yolov8m already owns" in exc.value.message
    assert backend.endpoint_pids(mine.endpoint_name) == pids and all(map(pid_alive, pids))
    assert len(pids) == 1  # the other owner's instance count was not applied either


async def test_set_capacity_changes_live_processes(backend: LocalStandInBackend) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    [first] = backend.endpoint_pids(s.endpoint_name)
    info = await backend.set_capacity(s.endpoint_name, 3, 1, 3)
    pids = backend.endpoint_pids(s.endpoint_name)
    assert (info.status, info.instance_count, info.desired_instance_count) == ("InService", 3, 3)
    assert len(set(pids)) == 3 and all(pid_alive(p) for p in pids) and pids[0] == first
    ports = {i["port"] for i in record(backend, s.endpoint_name)["instances"]}
    assert len(ports) == 3
    for _ in range(3):  # round-robin over the three instances
        await backend.invoke(s.endpoint_name, PNG, "image/png")
    info = await backend.set_capacity(s.endpoint_name, 1, 1, 3)
    assert (info.instance_count, backend.endpoint_pids(s.endpoint_name)) == (1, [first])
    assert not any(pid_alive(p) for p in pids[1:])  # the newest went, the oldest stays


async def test_delete_kills_processes_and_removes_record(backend: LocalStandInBackend) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    pids = backend.endpoint_pids(s.endpoint_name)
    await backend.delete_endpoint(s.endpoint_name)
    for pid in pids:
        assert not pid_alive(pid)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, not a zombie
        assert local_process.EXIT_CODES.get(pid) == 0  # exited cleanly on SIGTERM
    assert not backend.record_path(s.endpoint_name).exists()
    assert await backend.describe_endpoint(s.endpoint_name) is None
    await backend.delete_endpoint(s.endpoint_name)  # idempotent


async def test_restarted_worker_adopts_existing_endpoints(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    a, b = spec(), spec(model="whisper-turbo", category="audio_stt", specialty="speech_to_text")
    await backend.ensure_endpoint(a)
    await backend.ensure_endpoint(b)
    pids = backend.endpoint_pids(a.endpoint_name)
    restarted = LocalStandInBackend(tmp_path)  # no memory of the first backend
    listed = await restarted.list_endpoints("radiant-test-")
    assert sorted((i.endpoint_name, i.status, i.instance_count) for i in listed) == sorted(
        [(a.endpoint_name, "InService", 1), (b.endpoint_name, "InService", 1)]
    )
    assert await restarted.list_endpoints("radiant-other-") == []
    result = await restarted.invoke(b.endpoint_name, b"\0" * 64000, "audio/wav")
    assert json.loads(result.body)["duration_s"] == 2.0
    await restarted.set_capacity(a.endpoint_name, 2, 1, 3)
    assert restarted.endpoint_pids(a.endpoint_name)[0] == pids[0]  # adopted, not restarted
    await restarted.delete_endpoint(a.endpoint_name)
    assert not any(pid_alive(p) for p in pids)


async def test_killed_process_is_detected_and_healed(backend: LocalStandInBackend) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    first, second = backend.endpoint_pids(s.endpoint_name)
    os.kill(second, signal.SIGKILL)
    info = await wait_for(lambda: _with_count(backend, s.endpoint_name, 1, f"(pid {second})"))
    assert info.status == "InService" and info.desired_instance_count == 2
    os.kill(first, signal.SIGKILL)
    info = await wait_for(lambda: _with_count(backend, s.endpoint_name, 0, f"(pid {first})"))
    assert info.status == "OutOfService"  # nothing serves: reported, not hidden
    [listed] = await backend.list_endpoints("radiant-test-")
    assert listed.status == "OutOfService"
    healed = await backend.ensure_endpoint(s)  # the workflow's converge step
    assert (healed.status, healed.instance_count) == ("InService", 2)
    assert not {first, second} & set(backend.endpoint_pids(s.endpoint_name))


async def _with_count(backend: LocalStandInBackend, name: str, n: int, note: str = ""):  # type: ignore[no-untyped-def]
    info = await backend.describe_endpoint(name)
    exited = (info.status_message or "").partition("exited: ")[2].partition(";")[0] if info else ""
    ok = info and info.instance_count == n and note in exited
    return info if ok else None


async def test_config_change_replaces_the_fleet(backend: LocalStandInBackend) -> None:
    s = spec()
    before = await backend.ensure_endpoint(s)
    [old_pid] = backend.endpoint_pids(s.endpoint_name)
    after = await backend.ensure_endpoint(s.model_copy(update={"image": "local/new-image:2"}))
    assert after.status == "InService" and after.config_name != before.config_name
    [new_pid] = backend.endpoint_pids(s.endpoint_name)
    assert new_pid != old_pid and not pid_alive(old_pid) and pid_alive(new_pid)


async def test_failed_config_change_rolls_back_to_the_old_fleet(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec()
    before = await backend.ensure_endpoint(s)
    [old_pid] = backend.endpoint_pids(s.endpoint_name)
    broken = s.model_copy(update={"model_data_url": str(tmp_path / "missing.tar.gz")})
    after = await backend.ensure_endpoint(broken)
    assert after.status == "InService" and after.config_name == before.config_name
    assert "update rolled back" in (after.failure_reason or "")
    assert "model data not found" in (after.failure_reason or "")
    assert backend.endpoint_pids(s.endpoint_name) == [old_pid] and pid_alive(old_pid)
    assert (await backend.invoke(s.endpoint_name, PNG, "image/png")).body  # still serving


# --------------------------------------------------------------------------- warm-up and failure


async def test_slow_warmup_is_observable(tmp_path: Path, backend: LocalStandInBackend) -> None:
    slow = LocalStandInBackend(tmp_path, warmup_seconds=1.0, ready_wait_seconds=0.1)
    s = spec()
    info = await slow.ensure_endpoint(s)
    assert (info.status, info.instance_count) == ("Creating", 0)
    with pytest.raises(InvalidEndpointState) as exc:
        await slow.set_capacity(s.endpoint_name, 2, 1, 3)  # only InService can scale
    assert exc.value.retryable
    with pytest.raises(InvalidEndpointState):
        await slow.invoke(s.endpoint_name, b"x", "image/png")
    started = time.monotonic()
    ready = await wait_for(lambda: _in_service(slow, s.endpoint_name))
    assert ready.instance_count == 1 and time.monotonic() - started > 0.5
    assert record(slow, s.endpoint_name)["status"] == "InService"  # persisted by describe


async def _in_service(backend: LocalStandInBackend, name: str):  # type: ignore[no-untyped-def]
    info = await backend.describe_endpoint(name)
    return info if info and info.status == "InService" else None


async def test_server_that_fails_to_start_makes_the_endpoint_failed(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec(model_data_url=str(tmp_path / "missing" / "model.tar.gz"))
    info = await backend.ensure_endpoint(s)
    assert info.status == "Failed" and info.instance_count == 0
    assert "model data not found" in (info.failure_reason or "")
    assert "exit code 2" in (info.failure_reason or "")
    described = await backend.describe_endpoint(s.endpoint_name)
    assert described is not None and described.status == "Failed"
    with pytest.raises(EndpointFailed) as exc:
        await backend.ensure_endpoint(s)  # only delete is allowed on Failed
    assert not exc.value.retryable and "model data not found" in (exc.value.failure_reason or "")
    with pytest.raises(EndpointFailed):
        await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    await backend.delete_endpoint(s.endpoint_name)
    assert await backend.describe_endpoint(s.endpoint_name) is None


async def test_orphaned_server_exits_when_its_record_is_gone(backend: LocalStandInBackend) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    backend.record_path(s.endpoint_name).unlink()  # as if deleted while its worker was down
    await wait_for(lambda: asyncio.sleep(0, result=not pid_alive(pid)), limit=8)


# --------------------------------------------------------------------------- inference


SCHEMAS = [
    ("yolov8m", "vision_detection", "object_detection", PNG,
     {"detections", "image_size", "method"}),
    ("efficientnet-b0", "vision_classification", "image_classification",
     SAMPLES["perception/classify"].read_bytes(), {"predictions", "features", "method"}),
    ("sam2", "vision_segmentation", "instance_segmentation", PNG,
     {"masks", "image_size", "method"}),
    ("whisper-turbo", "audio_stt", "speech_to_text", b"\0" * 1000,
     {"text", "segments", "duration_s", "language", "noise_floor_dbfs"}),
    ("esm2-3b", "scientific_protein", "protein_embeddings", b"MKTAYIAKQR",
     {"embedding", "length", "id", "embeddings", "dim", "features"}),
    ("alphafold2", "scientific_protein", "protein_folding", b'{"sequence": "MKTAYIAK"}',
     {"pdb", "plddt", "mean_plddt", "length", "id", "method"}),
    ("prithvi-100m", "geospatial", "satellite_analysis",
     SAMPLES["geospatial/classify"].read_bytes(),
     {"task", "predictions", "dominant", "indices", "size", "method"}),
    ("mistral-7b", "custom_category", "custom_specialty", b"tif",
     {"result", "input_bytes", "sha256"}),
]  # fmt: skip


async def test_invoke_returns_each_reference_schema(backend: LocalStandInBackend) -> None:
    for model, category, specialty, payload, keys in SCHEMAS:
        s = spec(model, category, specialty)
        await backend.ensure_endpoint(s)
        result = await backend.invoke(s.endpoint_name, payload, "application/octet-stream")
        body = json.loads(result.body)
        assert set(body) == keys | {"model", "stand_in"}, model
        assert body["stand_in"] is True and body["model"] == model
        assert result.content_type == "application/json"
        again = await backend.invoke(s.endpoint_name, payload, "application/octet-stream")
        assert again.body == result.body  # deterministic
        await backend.delete_endpoint(s.endpoint_name)
    assert body["input_bytes"] == 3  # the last one: the generic stand-in


async def test_detection_and_folding_values(backend: LocalStandInBackend) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    body = json.loads((await backend.invoke(s.endpoint_name, PNG, "image/png")).body)
    assert body["detections"]
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 and 0 <= y1 < y2 and 0 < d["score"] <= 1 and d["label"]
    fold = spec("alphafold2", "scientific_protein", "protein_folding")
    await backend.ensure_endpoint(fold)
    out = json.loads((await backend.invoke(fold.endpoint_name, b"MKTAYIAK", "text/plain")).body)
    assert len(out["plddt"]) == 8 and out["pdb"].count(" CA ") == 8  # N, CA, C, O per residue
    with pytest.raises(ModelError) as exc:  # the container's 4xx: not retryable
        await backend.invoke(fold.endpoint_name, b"not a protein!", "text/plain")
    assert not exc.value.retryable and exc.value.http_status == 400


async def test_a_quick_model_is_not_queued_behind_slow_ones(
    backend: LocalStandInBackend,
) -> None:
    """One HTTP client serves every endpoint: more slow calls in flight than httpx's default
    pool (100 connections) must not hold up a call to another model."""
    slow = spec("yolov8m", endpoint_name="radiant-test-dev-slow",
                environment={"RADIANT_LOCAL_INVOKE_SECONDS": "6"})  # fmt: skip
    quick = spec("yolov8n", endpoint_name="radiant-test-dev-quick")
    await backend.ensure_endpoint(slow)
    await backend.ensure_endpoint(quick)
    slow_calls = [
        asyncio.create_task(backend.invoke(slow.endpoint_name, PNG, "image/png"))
        for _ in range(110)
    ]
    await asyncio.sleep(1.0)  # the slow calls are on the wire, the server sleeping in each
    body = json.loads((await backend.invoke(quick.endpoint_name, PNG, "image/png")).body)
    assert body["model"] == "yolov8n"
    assert not any(t.done() for t in slow_calls)  # answered while every slow call still ran
    for result in await asyncio.gather(*slow_calls):
        assert json.loads(result.body)["model"] == "yolov8m"


async def test_a_slow_container_times_out_without_trying_another_instance(
    tmp_path: Path, backend: LocalStandInBackend
) -> None:
    s = spec(instance_count=2, environment={"RADIANT_LOCAL_INVOKE_SECONDS": "3"})
    await backend.ensure_endpoint(s)
    impatient = LocalStandInBackend(tmp_path, invoke_timeout_seconds=1.0)
    try:
        with pytest.raises(ModelServerError, match="did not answer within 1s") as exc:
            await impatient.invoke(s.endpoint_name, PNG, "image/png")
        assert exc.value.retryable  # a Temporal retry, not a second copy on the other instance
    finally:
        await impatient.aclose()


async def test_llm_speaks_tgi_and_openai(backend: LocalStandInBackend) -> None:
    s = spec("mistral-7b-instruct", "llm_text", "text_generation")
    await backend.ensure_endpoint(s)
    tgi = json.loads((await backend.invoke(
        s.endpoint_name, b'{"inputs": "Hello", "parameters": {"max_new_tokens": 8}}',
        "application/json")).body)  # fmt: skip
    assert isinstance(tgi, list) and set(tgi[0]) == {"generated_text"}
    port = record(backend, s.endpoint_name)["instances"][0]["port"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as client:
        hi = [{"role": "user", "content": "Hi"}]
        chat = (await client.post("/chat/completions", json={"model": "m", "messages": hi})).json()
        assert chat["object"] == "chat.completion"
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["usage"]["total_tokens"] > 0
        stream = await client.post("/chat/completions", json={"messages": hi, "stream": True})
        events = [ln for ln in stream.text.splitlines() if ln.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        pieces = [json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1]]
        assert "".join(pieces) == chat["choices"][0]["message"]["content"]
        emb = (await client.post("/embeddings", json={"input": ["a", "b"]})).json()
        assert [row["index"] for row in emb["data"]] == [0, 1]
        assert (await client.get("/models")).json()["data"][0]["id"] == "mistral-7b-instruct"


async def test_async_invoke_writes_and_fetches_result(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec(async_inference=True)
    await backend.ensure_endpoint(s)
    [inv] = await _start_async(backend, s.endpoint_name, tmp_path)
    assert inv.output_location.startswith(str(tmp_path / "local_async"))
    result = await wait_for(lambda: backend.fetch_async_result(inv))
    assert "detections" in json.loads(result)
    # Same as a synchronous call on the same input.
    sync = await backend.invoke(s.endpoint_name, PNG, "image/png")
    assert json.loads(sync.body) == json.loads(result)
    # A missing input fails the inference, and fetching says so.
    bad = await backend.invoke_async(s.endpoint_name, str(tmp_path / "nope.bin"), "image/png")

    async def failed() -> bool:
        try:
            await backend.fetch_async_result(bad)
        except AsyncInferenceFailed:
            return True
        return False

    await wait_for(failed)
    # A real-time endpoint refuses async invocations (as SageMaker does).
    rt = spec(model="yolov8n")
    await backend.ensure_endpoint(rt)
    with pytest.raises(InvalidRequest):
        await backend.invoke_async(rt.endpoint_name, str(tmp_path / "request.bin"), "image/png")


async def test_async_endpoint_can_scale_to_zero_but_realtime_cannot(
    backend: LocalStandInBackend,
) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    with pytest.raises(InvalidRequest, match="delete_endpoint"):
        await backend.set_capacity(s.endpoint_name, 0, 0, 3)
    a = spec(model="yolov8n", async_inference=True)
    await backend.ensure_endpoint(a)
    [pid] = backend.endpoint_pids(a.endpoint_name)
    info = await backend.set_capacity(a.endpoint_name, 0, 0, 3)
    assert info.instance_count == 0 and not pid_alive(pid)


# --------------------------------------------------------------------------- robustness


async def _start_async(
    backend: LocalStandInBackend, name: str, tmp_path: Path, count: int = 1
) -> list[AsyncInvocation]:
    """`count` asynchronous invocations of the sample PNG, queued on endpoint `name`."""
    source = tmp_path / "request.bin"
    source.write_bytes(PNG)
    return [await backend.invoke_async(name, str(source), "image/png") for _ in range(count)]


async def _fetched(backend: LocalStandInBackend, inv: AsyncInvocation) -> bytes | str | None:
    """The result, or the failure text: the inference has ended either way."""
    try:
        return await backend.fetch_async_result(inv)
    except AsyncInferenceFailed as exc:
        return str(exc)


def server_log(backend: LocalStandInBackend, name: str) -> str:
    """The logs of the endpoint's model servers (each instance has its own, rotated)."""
    return "".join(p.read_text(errors="replace") for p in backend.root.glob(f"{name}.*.log*"))


def _async_posts(backend: LocalStandInBackend, name: str) -> Counter[str]:
    """Async invocations each instance accepted, from its own log lines."""
    lines = server_log(backend, name).splitlines()
    return Counter(
        ln.split("[", 1)[1].split("]", 1)[0] for ln in lines if '"POST /invocations-async' in ln
    )


async def test_async_invocations_round_robin_over_instances(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec(async_inference=True, instance_count=2)
    await backend.ensure_endpoint(s)
    invs = await _start_async(backend, s.endpoint_name, tmp_path, count=4)
    for inv in invs:
        await wait_for(lambda inv=inv: backend.fetch_async_result(inv))
    ids = [i["instance_id"] for i in record(backend, s.endpoint_name)["instances"]]
    assert _async_posts(backend, s.endpoint_name) == {ids[0]: 2, ids[1]: 2}


async def test_scale_in_drains_running_async_jobs(
    tmp_path: Path, backend: LocalStandInBackend
) -> None:
    """Stopping an instance lets its running async jobs finish (bounded), none is lost."""
    patient = LocalStandInBackend(tmp_path, stop_timeout_seconds=5, orphan_grace_seconds=1)
    s = spec(async_inference=True, instance_count=2,
             environment={"RADIANT_LOCAL_INVOKE_SECONDS": "1.5"})  # fmt: skip
    await patient.ensure_endpoint(s)
    invs = await _start_async(patient, s.endpoint_name, tmp_path, count=4)
    info = await patient.set_capacity(s.endpoint_name, 1, 0, 3)  # while all four run
    assert info.instance_count == 1
    for inv in invs:
        result = await wait_for(lambda inv=inv: _fetched(patient, inv), limit=10)
        assert "detections" in json.loads(result)


async def test_blue_green_switch_drains_running_async_jobs(
    tmp_path: Path, backend: LocalStandInBackend
) -> None:
    patient = LocalStandInBackend(tmp_path, stop_timeout_seconds=5, orphan_grace_seconds=1)
    s = spec(async_inference=True, environment={"RADIANT_LOCAL_INVOKE_SECONDS": "1.5"})
    await patient.ensure_endpoint(s)
    [old_pid] = patient.endpoint_pids(s.endpoint_name)
    [inv] = await _start_async(patient, s.endpoint_name, tmp_path)
    after = await patient.ensure_endpoint(s.model_copy(update={"image": "local/new-image:2"}))
    assert after.status == "InService" and old_pid not in patient.endpoint_pids(s.endpoint_name)
    result = await wait_for(lambda: _fetched(patient, inv), limit=10)
    assert "detections" in json.loads(result)


async def test_stopped_instance_fails_async_jobs_it_cannot_finish(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    """A job longer than the drain bound gets a failure file (SageMaker's failure
    notification), so the caller polling for it learns it is gone instead of waiting forever."""
    s = spec(async_inference=True, environment={"RADIANT_LOCAL_INVOKE_SECONDS": "60"})
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    [inv] = await _start_async(backend, s.endpoint_name, tmp_path)
    await backend.delete_endpoint(s.endpoint_name)
    assert local_process.EXIT_CODES.get(pid) == 0  # drained and exited, not SIGKILLed
    with pytest.raises(AsyncInferenceFailed, match="instance stopped"):
        await backend.fetch_async_result(inv)


async def test_scale_in_keeps_the_instance_running_async_work(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec(async_inference=True, instance_count=2,
             environment={"RADIANT_LOCAL_INVOKE_SECONDS": "4"})  # fmt: skip
    await backend.ensure_endpoint(s)
    oldest, newest = record(backend, s.endpoint_name)["instances"]
    source = tmp_path / "request.bin"
    source.write_bytes(PNG)
    # Round-robin: the first job (no input: fails at once) goes to the oldest instance, the
    # second (4 s, longer than the 2 s drain) to the newest, which scale-in stops by default.
    quick = await backend.invoke_async(s.endpoint_name, str(tmp_path / "nope"), "image/png")
    slow = await backend.invoke_async(s.endpoint_name, str(source), "image/png")
    await wait_for(lambda: _fetched(backend, quick))
    running = [
        local_process.async_jobs_running(i["port"], i["instance_id"]) for i in (oldest, newest)
    ]
    assert running == [0, 1]
    await backend.set_capacity(s.endpoint_name, 1, 0, 3)
    assert backend.endpoint_pids(s.endpoint_name) == [newest["pid"]]  # the busy one stays
    result = await wait_for(lambda: _fetched(backend, slow), limit=10)
    assert "detections" in json.loads(result)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """Stands in for another user's process (signalling it is made to fail with EPERM)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_pid_reused_by_another_user_does_not_block_delete(
    backend: LocalStandInBackend,
    stranger: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,  # last: undone before `stranger` is killed
) -> None:
    """After a reboot a recorded pid may belong to another user's process (signals fail with
    EPERM): delete must finish, and the model be created again."""
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == stranger.pid:
            raise PermissionError(1, "Operation not permitted")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    ticks = local_process.proc_start_ticks(stranger.pid)
    assert ticks is not None
    assert not pid_alive(stranger.pid, ticks + 1)  # another process under our pid
    s = spec()
    now = datetime.now(UTC)
    for proc_start in (ticks + 1, None):  # None: a record without start time: cannot tell
        inst = LocalInstance(instance_id="i-old", pid=stranger.pid, proc_start=proc_start,
                             port=1, config_hash="x", started_at=now)  # fmt: skip
        backend._save(LocalRecord(
            endpoint_name=s.endpoint_name, model_id=s.model_id, spec=s, config_hash="x",
            status="InService", created_at=now, updated_at=now, desired_instance_count=1,
            min_instances=0, max_instances=3, instances=[inst],
        ))  # fmt: skip
        await backend.delete_endpoint(s.endpoint_name)
        assert await backend.describe_endpoint(s.endpoint_name) is None
    assert stranger.poll() is None  # never signalled
    info = await backend.ensure_endpoint(s)
    assert info.status == "InService"


async def test_failed_scale_out_raises_a_retryable_capacity_error(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    model_data = tmp_path / "model.tar.gz"
    model_data.write_bytes(b"weights")
    s = spec(model_data_url=str(model_data))
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    model_data.unlink()  # new instances now fail to start; the running one keeps serving
    with pytest.raises(CapacityUnavailable) as exc:
        await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    assert exc.value.retryable and exc.value.code == "CapacityUnavailable"
    assert "model data not found" in (exc.value.failure_reason or "")
    info = await backend.describe_endpoint(s.endpoint_name)
    assert info is not None and (info.status, info.instance_count) == ("InService", 1)
    assert "scale-out rolled back" in (info.failure_reason or "")
    assert backend.endpoint_pids(s.endpoint_name) == [pid] and pid_alive(pid)


# --------------------------------------------------------------------------- review fixes


async def test_a_process_that_cannot_be_started_fails_the_change_not_the_fleet(
    backend: LocalStandInBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fork/exec failing (EAGAIN) is a retryable error; the old fleet keeps serving."""
    s = spec()
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    config = record(backend, s.endpoint_name)["config_hash"]

    def no_fork(rec: LocalRecord) -> LocalInstance:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(backend, "_spawn", no_fork)
    with pytest.raises(ServiceUnavailable) as exc:
        await backend.ensure_endpoint(s.model_copy(update={"image": "local/new-image:2"}))
    assert exc.value.retryable and "could not start" in exc.value.message
    with pytest.raises(ServiceUnavailable):
        await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    info = await backend.describe_endpoint(s.endpoint_name)
    assert info is not None and (info.status, info.instance_count) == ("InService", 1)
    assert info.config_name == config and "rolled back" in (info.failure_reason or "")
    assert backend.endpoint_pids(s.endpoint_name) == [pid] and pid_alive(pid)
    # A create leaves nothing behind: the retry starts over.
    other = spec(model="yolov8n")
    with pytest.raises(ServiceUnavailable):
        await backend.ensure_endpoint(other)
    assert await backend.describe_endpoint(other.endpoint_name) is None


async def test_an_update_that_started_no_process_rolls_back(
    backend: LocalStandInBackend,
) -> None:
    """A worker that died between recording the update and starting its first process leaves
    Updating with nothing pending: that is a failed change, not a finished switch."""
    s = spec()
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    rec = backend._load(s.endpoint_name)
    assert rec is not None
    new = s.model_copy(update={"image": "local/new-image:2"})
    rec.previous_spec, rec.spec, rec.status = rec.spec, new, "Updating"
    rec.config_hash = new.config_hash(s.category or "", s.specialty or "")
    backend._save(rec)
    info = await backend.describe_endpoint(s.endpoint_name)
    assert info is not None and (info.status, info.instance_count) == ("InService", 1)
    assert "update rolled back" in (info.failure_reason or "")
    assert record(backend, s.endpoint_name)["spec"]["image"] == s.image
    assert pid_alive(pid)


async def test_async_result_paths_are_the_servers_choice(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    """Any local user reaches the port: a request cannot make the server write elsewhere."""
    s = spec(async_inference=True)
    await backend.ensure_endpoint(s)
    [inst] = record(backend, s.endpoint_name)["instances"]
    source, victim = tmp_path / "request.bin", tmp_path / "victim.txt"
    source.write_bytes(PNG)
    victim.write_text("important")
    inference_id = "0123456789abcdef" * 2
    url = f"http://127.0.0.1:{inst['port']}/invocations-async"
    base = {
        "X-Amzn-SageMaker-InputLocation": str(source),
        "X-Radiant-Output-Location": str(victim),
        "X-Radiant-Failure-Location": str(victim),
    }
    async with httpx.AsyncClient() as client:
        bad = await client.post(url, headers={**base, "X-Amzn-SageMaker-InferenceId": "../x"})
        ok = await client.post(url, headers={**base, "X-Amzn-SageMaker-InferenceId": inference_id})
    assert bad.status_code == 400 and ok.status_code == 202
    out = tmp_path / "local_async" / f"{inference_id}.out"
    assert ok.json()["OutputLocation"] == str(out)
    inv = AsyncInvocation(inference_id=inference_id, output_location=str(out))
    assert "detections" in json.loads(await wait_for(lambda: backend.fetch_async_result(inv)))
    assert victim.read_text() == "important"
    # A real-time endpoint's server has no async directory at all.
    rt = spec(model="yolov8n")
    await backend.ensure_endpoint(rt)
    [inst] = record(backend, rt.endpoint_name)["instances"]
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"http://127.0.0.1:{inst['port']}/invocations-async",
            headers={**base, "X-Amzn-SageMaker-InferenceId": inference_id},
        )
    assert resp.status_code == 404


async def test_endpoint_names_and_records_are_checked(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    keep = tmp_path / "keep.log"
    keep.write_text("x")
    for name in ("../keep", "a/b", "", "-x"):
        for call in (
            backend.describe_endpoint(name),
            backend.endpoint_tags(name),
            backend.delete_endpoint(name),
            backend.set_capacity(name, 1, 0, 3),
            backend.invoke(name, PNG, "image/png"),
            backend.invoke_async(name, "/x", "image/png"),
        ):
            with pytest.raises(InvalidRequest, match="invalid endpoint name"):
                await call
    assert sorted(os.listdir(tmp_path)) == ["keep.log", "local_async", "local_endpoints"]
    # An unreadable record is a clear, non-retryable error, and the reconcile skips it.
    name = "radiant-test-dev-broken"
    backend.record_path(name).write_text('{"endpoint_name": "x"}')
    with pytest.raises(Unclassified, match="unreadable record") as exc:
        await backend.describe_endpoint(name)
    assert not exc.value.retryable
    assert await backend.list_endpoints("radiant-") == []


async def test_an_interrupted_delete_is_finished_by_describe(
    backend: LocalStandInBackend,
) -> None:
    """A worker that died mid-delete left the record Deleting (and the processes running):
    the next describe (or the reconcile's list) finishes the delete."""
    s = spec()
    await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    rec = backend._load(s.endpoint_name)
    assert rec is not None
    rec.status = "Deleting"
    backend._save(rec)
    assert await backend.describe_endpoint(s.endpoint_name) is None
    assert not pid_alive(pid) and not backend.record_path(s.endpoint_name).exists()


# --------------------------------------------------------------------------- hardening


async def test_model_server_reads_only_under_its_read_roots(
    backend: LocalStandInBackend, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Any local user reaches the port: a request cannot make the server read files outside
    data_dir and the input roots (symlinks and '..' are followed before the check)."""
    s = spec(async_inference=True)
    await backend.ensure_endpoint(s)
    [inst] = record(backend, s.endpoint_name)["instances"]
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not under data_dir (tmp_path)
    secret = elsewhere / "secret.png"
    secret.write_bytes(PNG)
    (tmp_path / "link.png").symlink_to(secret)
    inside = tmp_path / "spool" / "in.png"
    inside.parent.mkdir()
    inside.write_bytes(PNG)
    outside = [str(secret), f"file://{secret}", str(tmp_path / "link.png"),
               f"{tmp_path}/../{elsewhere.name}/secret.png"]  # fmt: skip
    base = f"http://127.0.0.1:{inst['port']}"
    async with httpx.AsyncClient() as client:
        for location in outside:
            sync = await client.post(f"{base}/invocations", json={"input_location": location})
            assert sync.status_code == 400, location
            assert "outside the directories" in sync.json()["error"]
            queued = await client.post(f"{base}/invocations-async", headers={
                "X-Amzn-SageMaker-InputLocation": location,
                "X-Amzn-SageMaker-InferenceId": "0123456789abcdef" * 2,
            })  # fmt: skip
            assert queued.status_code == 400 and "outside the directories" in queued.text
        # A JSON envelope read as an async request cannot point outside either.
        envelope = tmp_path / "request.json"
        envelope.write_text(json.dumps({"input_location": str(secret)}))
        inv = await backend.invoke_async(s.endpoint_name, str(envelope), "application/json")
        with pytest.raises(AsyncInferenceFailed, match="outside the directories"):
            await wait_for(lambda: backend.fetch_async_result(inv))
        # data_dir and the bundled samples (the default input root) are readable.
        for location in (str(inside), str(SAMPLES["perception/detect"])):
            ok = await client.post(f"{base}/invocations", json={"input_location": location})
            assert ok.status_code == 200 and "detections" in ok.json(), ok.text


def test_a_model_server_without_read_roots_reads_no_local_path(tmp_path: Path) -> None:
    from activities.backends.local_model_server import parse_args
    from activities.backends.standin_handlers import BadInput, Request, resolve

    (tmp_path / "in.png").write_bytes(PNG)
    body = json.dumps({"input_location": str(tmp_path / "in.png")}).encode()
    assert parse_args(["--model-id", "m"]).read_root == []
    with pytest.raises(BadInput, match="outside the directories"):
        resolve(Request(body, "application/json", "m", read_roots=()))
    assert resolve(Request(body, "application/json", "m", (tmp_path,))).data == PNG


async def test_other_read_roots_replace_the_fleet(
    backend: LocalStandInBackend, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The read roots are part of the deployed config: a fleet started with others (or by a
    server that had none) is replaced by the next ensure, blue/green."""
    s = spec()
    before = await backend.ensure_endpoint(s)
    [old] = backend.endpoint_pids(s.endpoint_name)
    wider = LocalStandInBackend(
        tmp_path, stop_timeout_seconds=3, read_roots=[tmp_path_factory.mktemp("inputs")]
    )
    after = await wider.ensure_endpoint(s)
    assert after.status == "InService" and after.config_name != before.config_name
    [new] = wider.endpoint_pids(s.endpoint_name)
    assert new != old and not pid_alive(old)
    assert (await wider.invoke(s.endpoint_name, PNG, "image/png")).body


async def test_stopping_instance_finishes_the_sync_invocations_it_serves(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    """Delete (like scale-in and a blue/green switch: all SIGTERM) lets a sync invocation the
    instance is serving finish within the drain time instead of cutting it off. The input is
    a FIFO, so the request is provably inside the server until the test writes it."""
    s = spec()
    await backend.ensure_endpoint(s)
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    body = json.dumps({"input_location": str(fifo)}).encode()
    call = asyncio.create_task(backend.invoke(s.endpoint_name, body, "application/json"))

    async def server_reads_fifo() -> int | None:
        try:  # succeeds once the server has opened the FIFO for reading
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    fd = await wait_for(server_reads_fifo)
    delete = asyncio.create_task(backend.delete_endpoint(s.endpoint_name))

    async def signalled() -> bool:
        return "signal 15: stopping" in server_log(backend, s.endpoint_name)

    await wait_for(signalled)
    try:
        os.set_blocking(fd, True)
        os.write(fd, PNG)
    except BrokenPipeError:  # the server is already gone (without the drain)
        pass
    finally:
        os.close(fd)
    result = await call
    assert "detections" in json.loads(result.body)
    await delete


def test_control_plane_calls_do_not_starve_invocations(
    backend: LocalStandInBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control-plane calls that take long (ensure waits for /ping) run on their own threads:
    with as many of them as asyncio's default executor has threads, an invocation still gets
    its record read (it waited for them before)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    s = spec()
    release, entered = threading.Event(), []

    def stuck(name: str) -> None:
        entered.append(name)
        release.wait(60)

    async def both_stuck() -> bool:
        return len(entered) == 2

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(2))  # this loop only (asyncio.run's own)
        await backend.ensure_endpoint(s)
        await backend.invoke(s.endpoint_name, PNG, "image/png")  # the connection is made
        monkeypatch.setattr(backend, "_describe", stuck)
        slow = [asyncio.create_task(backend.describe_endpoint(s.endpoint_name)) for _ in "ab"]
        try:
            await wait_for(both_stuck)
            result = await asyncio.wait_for(backend.invoke(s.endpoint_name, PNG, "image/png"), 20)
            assert "detections" in json.loads(result.body)
        finally:
            release.set()
            await asyncio.gather(*slow)
            await backend.aclose()

    asyncio.run(main())


async def test_children_stopped_by_another_worker_are_reaped(tmp_path: Path) -> None:
    """Another worker's scale-in or delete stops a process this worker started: its record
    forgets it, yet this worker (its parent) must still collect it, not keep a zombie."""
    from activities.backends.local_process import CHILDREN

    backend = LocalStandInBackend(tmp_path)
    stopped, other = spec(), spec(model="yolov8n")
    await backend.ensure_endpoint(stopped)
    await backend.ensure_endpoint(other)
    try:
        [pid] = backend.endpoint_pids(stopped.endpoint_name)
        os.kill(pid, signal.SIGKILL)  # as the other worker's stop would (without our Popen)

        async def collected() -> bool:
            # Any probe of ours collects it; the zombie is waitable only once all of its
            # threads are gone, which may be a moment after /proc first says Z.
            await backend.describe_endpoint(other.endpoint_name)
            return _state(pid) is None and pid not in CHILDREN

        await wait_for(collected, limit=8)
    finally:
        await backend.delete_endpoint(other.endpoint_name)
        await backend.delete_endpoint(stopped.endpoint_name)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
