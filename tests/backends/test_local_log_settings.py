"""Log rotation settings of the local stand-in are the worker's, not the endpoint's: changing
them replaces no fleet, and stopping an instance removes all its logs whatever it rotated with."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.backends.local import LocalStandInBackend
from tests.backends.test_local import record, spec

pytestmark = pytest.mark.slow


async def test_new_log_settings_keep_the_running_fleet(
    backend: LocalStandInBackend, tmp_path: Path
) -> None:
    s = spec()
    first = await backend.ensure_endpoint(s)
    pids = backend.endpoint_pids(s.endpoint_name)
    # a worker restarted with another rotation size: the same endpoint, not a new config
    resized = LocalStandInBackend(tmp_path, stop_timeout_seconds=3, log_max_bytes=4096)
    again = await resized.ensure_endpoint(s)
    assert (again.status, again.config_name) == ("InService", first.config_name)
    assert resized.endpoint_pids(s.endpoint_name) == pids


async def test_scale_in_removes_every_rotated_log_of_the_stopped_instance(
    backend: LocalStandInBackend,
) -> None:
    s = spec()
    await backend.ensure_endpoint(s)
    await backend.set_capacity(s.endpoint_name, 2, 1, 3)
    newest = record(backend, s.endpoint_name)["instances"][-1]["instance_id"]
    current = backend.instance_log_path(s.endpoint_name, newest)
    # as a server started by a worker that kept more backups than this one would
    kept = [current.with_name(f"{current.name}.{n}") for n in (1, 2, 3)]
    for path in kept:
        path.write_text("old\n")
    await backend.set_capacity(s.endpoint_name, 1, 1, 3)  # stops the newest
    assert [p.name for p in [current, *kept] if p.exists()] == []
