"""The entry points end without interpreter finalization (temporalio/sdk-python#300) yet keep
what a normal exit gives: the exit status, flushed output and the atexit handlers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.process_exit import exit_code

SCRIPT = """
import atexit, sys
from workers.process_exit import run_then_exit

def entry():
    atexit.register(lambda: open({marker!r}, "w").write("atexit ran"))
    sys.stdout.write("buffered, no newline")
    {ending}

run_then_exit(entry)
print("never printed")
"""


@pytest.mark.parametrize(
    ("ending", "status"),
    [
        ("return None", 0),
        ("sys.exit(3)", 3),
        ("sys.exit('bad input')", 1),
        ("raise KeyboardInterrupt", 130),
        ("import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", 130),
        ("raise RuntimeError('unexpected')", 1),
    ],
)
def test_status_output_and_atexit_survive(tmp_path: Path, ending: str, status: int):
    marker = tmp_path / "marker"
    code = textwrap.dedent(SCRIPT).format(marker=str(marker), ending=ending)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert marker.read_text() == "atexit ran"
    if "bad input" in ending:
        assert "bad input" in proc.stderr
    if "unexpected" in ending:  # the traceback, as an uncaught error prints it
        assert "Traceback" in proc.stderr and "RuntimeError: unexpected" in proc.stderr


def test_exit_code_follows_sys_exit():
    assert [exit_code(SystemExit(c)) for c in (None, 0, 2)] == [0, 0, 2]


def test_radiant_console_script_keeps_exit_status():
    ok = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "RADIANT Orchestrator" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "no-such-command"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "No such command" in bad.stderr
