"""Limits of the local stand-in: a bounded server log, reads checked on the opened file, config
updates at zero instances, and the instance identity checked before a request is served."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from activities.backends import local_model_server, standin_handlers
from activities.backends.base import ServiceUnavailable
from activities.backends.local import LocalStandInBackend, pid_alive
from tests.backends.test_local import PNG, record, spec
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.slow


def _log_files(backend: LocalStandInBackend, name: str) -> list[Path]:
    """Every log file of the endpoint (crash log, instance logs and their backups)."""
    return sorted(backend.root.glob(f"{name}.*log*"))


def _log_text(backend: LocalStandInBackend, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in _log_files(backend, name))


# --------------------------------------------------------------------------- 1. bounded log


async def test_the_access_log_is_bounded(backend: LocalStandInBackend) -> None:
    backend.log_max_bytes = 4096  # tiny, so a few dozen invocations rotate it
    s = spec("mistral-7b", "custom_category", "custom_specialty")
    await backend.ensure_endpoint(s)
    for _ in range(150):  # ~100 bytes of access log each: ~15 KB unbounded
        await backend.invoke(s.endpoint_name, b"x", "application/octet-stream")
    total = sum(p.stat().st_size for p in _log_files(backend, s.endpoint_name))
    assert total <= 2 * 4096 + 1024, {
        p.name: p.stat().st_size for p in _log_files(backend, s.endpoint_name)
    }
    assert any(p.name.endswith(".log.1") for p in _log_files(backend, s.endpoint_name))  # rotated
    assert '"POST /invocations HTTP/1.1" 200' in _log_text(backend, s.endpoint_name)  # still logs
    await backend.delete_endpoint(s.endpoint_name)
    assert _log_files(backend, s.endpoint_name) == []


# --------------------------------------------------------------------------- 2. read-root TOCTOU


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A detection model server in this process, reading only under `tmp_path / "root"`."""
    root = tmp_path / "root"
    root.mkdir()
    args = local_model_server.parse_args([
        "--model-id", "yolov8m", "--category", "vision_detection",
        "--specialty", "object_detection", "--instance-id", "i-test",
        "--read-root", str(root), "--async-dir", str(tmp_path / "async"),
    ])  # fmt: skip
    srv = local_model_server.ModelServer(args)
    srv.ready.set()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _swapping_check(
    monkeypatch: pytest.MonkeyPatch, root: Path, outside: Path
) -> Callable[[], None]:
    """Makes the read-root check race a swap: `root/dir` is a real directory while it is checked,
    and a symlink to `outside` right after (what another local user could do in between)."""
    real_check = standin_handlers.readable_path

    def setup() -> None:
        if (root / "dir").is_symlink():
            (root / "dir").unlink()
        (root / "dir").mkdir(exist_ok=True)
        (root / "dir" / "in.png").write_bytes(PNG)

    def check_then_swap(location: str, roots: tuple[Path, ...] | None) -> Path:
        path = real_check(location, roots)
        (root / "dir" / "in.png").unlink()
        (root / "dir").rmdir()
        (root / "dir").symlink_to(outside, target_is_directory=True)
        return path

    monkeypatch.setattr(standin_handlers, "readable_path", check_then_swap)
    monkeypatch.setattr(local_model_server, "readable_path", check_then_swap)  # the async check
    return setup


async def test_a_path_swapped_after_the_check_is_refused(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = server
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "in.png").write_bytes(PNG)  # the secret another user wants read
    (root / "link.png").symlink_to(outside / "in.png")
    async with httpx.AsyncClient() as client:
        # Unchanged: a symlink leading out is refused by the check itself.
        link = {"input_location": str(root / "link.png")}
        plain = await client.post(f"{base}/invocations", json=link)
        assert plain.status_code == 400 and "outside the directories" in plain.json()["error"]
        setup = _swapping_check(monkeypatch, root, outside)
        # Sync: the check passes on the real directory, the open would follow the new symlink.
        setup()
        location = str(root / "dir" / "in.png")
        swapped = await client.post(f"{base}/invocations", json={"input_location": location})
        assert swapped.status_code == 400, swapped.text
        assert "outside the directories" in swapped.json()["error"]
        # Async: the job's read is checked on the opened file as well.
        setup()
        inference_id = "0123456789abcdef" * 2
        queued = await client.post(f"{base}/invocations-async", headers={
            "X-Amzn-SageMaker-InputLocation": location,
            "X-Amzn-SageMaker-InferenceId": inference_id,
        })  # fmt: skip
        assert queued.status_code == 202, queued.text
    out, fail = local_model_server.async_paths(tmp_path / "async", inference_id)

    async def ended() -> bool:
        return out.exists() or fail.exists()

    await wait_for(ended)
    assert not out.exists() and "outside the directories" in fail.read_text()


def test_read_under_roots_checks_the_opened_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_under_roots = standin_handlers.read_under_roots
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "ok").write_bytes(b"ok")
    (root / "link").symlink_to(outside / "secret")
    assert read_under_roots(str(root / "ok"), (root,)) == b"ok"
    assert read_under_roots(str(outside / "secret"), None) == b"secret"  # in-process callers
    with pytest.raises(standin_handlers.BadInput, match="outside the directories"):
        read_under_roots(str(root / "link"), (root,))
    with pytest.raises(standin_handlers.BadInput, match="does not exist"):
        read_under_roots(str(root / "missing"), (root,))
    # The check says "inside" (as if the link pointed inside while checked); the file opened
    # is outside: refused.
    monkeypatch.setattr(standin_handlers, "readable_path", lambda loc, roots: root / "ok")
    with pytest.raises(standin_handlers.BadInput, match="outside the directories"):
        read_under_roots(str(root / "link"), (root,))
    # Without /proc: the opened file must be the one the name resolves to again.
    monkeypatch.setattr(standin_handlers, "_opened_path", lambda fd: None)
    with pytest.raises(standin_handlers.BadInput, match="outside the directories"):
        read_under_roots(str(root / "link"), (root,))
    assert read_under_roots(str(root / "ok"), (root,)) == b"ok"


# --------------------------------------------------------------------------- 3. zero instances


async def test_a_config_update_at_zero_instances_keeps_zero(
    backend: LocalStandInBackend,
) -> None:
    """As UpdateEndpoint with RetainAllVariantProperties: the instance count survives."""
    s = spec(async_inference=True)
    before = await backend.ensure_endpoint(s)
    [pid] = backend.endpoint_pids(s.endpoint_name)
    await backend.set_capacity(s.endpoint_name, 0, 0, 3)
    assert not pid_alive(pid)
    after = await backend.ensure_endpoint(s.model_copy(update={"image": "local/new-image:2"}))
    assert (after.status, after.instance_count, after.desired_instance_count) == ("InService", 0, 0)
    assert after.config_name != before.config_name
    assert backend.endpoint_pids(s.endpoint_name) == []
    assert record(backend, s.endpoint_name)["spec"]["image"] == "local/new-image:2"
    # It scales out again on the new config.
    info = await backend.set_capacity(s.endpoint_name, 1, 0, 3)
    assert (info.status, info.instance_count, info.config_name) == (
        "InService",
        1,
        after.config_name,
    )


# --------------------------------------------------------------------------- 4. port reuse


async def test_another_instance_on_a_reused_port_runs_nothing(
    backend: LocalStandInBackend,
) -> None:
    """The port of a dead instance now serves another endpoint's instance: the router's request
    is refused before it runs, and the router goes on as for a dead instance."""
    a, b = spec(), spec(model="yolov8n")
    await backend.ensure_endpoint(a)
    await backend.ensure_endpoint(b)
    [b_inst] = record(backend, b.endpoint_name)["instances"]
    rec = backend._load(a.endpoint_name)
    assert rec is not None
    [a_pid] = backend.endpoint_pids(a.endpoint_name)
    os.kill(a_pid, 9)
    rec.instances[0].port = b_inst["port"]  # as if the OS gave a's old port to b's instance
    backend._save(rec)
    with pytest.raises(ServiceUnavailable, match="another process"):
        await backend.invoke(a.endpoint_name, PNG, "image/png")
    served = _log_text(backend, b.endpoint_name)
    assert '"POST /invocations HTTP/1.1" 200' not in served, served
    # b's own requests are served, and a request naming no instance (a manual call) too.
    assert (
        json.loads((await backend.invoke(b.endpoint_name, PNG, "image/png")).body)["detections"]
        is not None
    )
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{b_inst['port']}/invocations"
        assert (await client.post(url, content=PNG)).status_code == 200
