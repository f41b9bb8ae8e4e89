"""Process plumbing of the local stand-in for SageMaker hosting: which model-server processes
this worker started (so they are reaped and their exit codes known), whether a recorded process
is still the one we started (pid + start time, zombies count as gone), and the /ping probe."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import threading
from pathlib import Path

from activities.backends.local_model_server import ASYNC_RUNNING_HEADER, INSTANCE_HEADER

# Popen objects of the processes this worker started, so they are reaped (no zombies) and their
# exit codes are known. Adopted processes (another worker's children) are watched by pid.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
EXIT_CODES: dict[int, int] = {}
CHILDREN_LOCK = threading.Lock()


def proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def reap_child(pid: int) -> bool | None:
    """For a process this worker started: True if it has exited (exit code kept, zombie
    collected), False if running. None if it is not one of ours."""
    with CHILDREN_LOCK:
        proc = CHILDREN.get(pid)
        if proc is None:
            return None
        if proc.poll() is None:
            return False
        EXIT_CODES[pid] = proc.returncode
        del CHILDREN[pid]
        return True


def reap_exited_children() -> None:
    """Collect every child that has exited. Another worker on the same data dir may stop our
    children (its scale-in or delete): their records no longer list them, so nothing would
    probe, and reap, them by pid; left alone they stay zombies until this worker exits."""
    with CHILDREN_LOCK:
        for pid, proc in list(CHILDREN.items()):
            if proc.poll() is not None:
                EXIT_CODES[pid] = proc.returncode
                del CHILDREN[pid]


def pid_alive(pid: int, proc_start: int | None = None) -> bool:
    """Is the process we recorded (pid + start time) still running? Zombies and reused pids
    count as gone. Every check also reaps our exited children (cheap: a WNOHANG wait each)."""
    reap_exited_children()
    exited = reap_child(pid)
    if exited is not None:
        return not exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Another user's process. After a reboot our recorded pid may be reused by one:
        # /proc/<pid>/stat is world-readable, so the start time still tells.
        current = proc_start_ticks(pid)
        return proc_start is None or current is None or current == proc_start
    current = proc_start_ticks(pid)
    if proc_start is not None and current is not None and current != proc_start:
        return False  # the pid now belongs to another process
    if _proc_state(pid) in ("Z", "X"):
        if proc_start is not None and current == proc_start:  # ours (adopted child): collect
            with contextlib.suppress(ChildProcessError, OSError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)
        return False
    return True


def _ping(port: int, instance_id: str, timeout: float) -> http.client.HTTPResponse | None:
    """/ping of *this* instance (header check guards against port reuse); None if no answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        return resp if resp.getheader(INSTANCE_HEADER) == instance_id else None
    except OSError:
        return None
    finally:
        conn.close()


def ping_instance(port: int, instance_id: str, timeout: float = 1.0) -> int | None:
    """HTTP status of /ping from *this* instance."""
    resp = _ping(port, instance_id, timeout)
    return resp.status if resp is not None else None


def async_jobs_running(port: int, instance_id: str, timeout: float = 1.0) -> int:
    """How many async inferences the instance is still working on (0 if it does not say)."""
    resp = _ping(port, instance_id, timeout)
    value = resp.getheader(ASYNC_RUNNING_HEADER) if resp is not None else None
    return int(value) if value and value.isdigit() else 0
