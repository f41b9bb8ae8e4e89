"""The local stand-in backend of the tests in this folder, on the test's own data directory,
torn down with every endpoint and process it started."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.backends import local_process
from activities.backends.local import LocalStandInBackend
from activities.backends.local_process import pid_alive


def _kill_everything(data_dir: Path, before: set[int]) -> None:
    """Finalizer: delete every recorded endpoint, then kill any process a test started."""
    cleaner = LocalStandInBackend(data_dir, stop_timeout_seconds=2)
    for record in (data_dir / "local_endpoints").glob("*.json"):
        try:
            cleaner._delete(record.stem)
        except Exception:  # keep cleaning; the kill loop below is the safety net
            pass
    for pid in set(local_process.CHILDREN) - before:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            pid_alive(pid)  # reaps it


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalStandInBackend]:
    before = set(local_process.CHILDREN)
    b = LocalStandInBackend(tmp_path, stop_timeout_seconds=3, orphan_grace_seconds=1)
    try:
        yield b
    finally:
        _kill_everything(tmp_path, before)
