"""`LocalStandInBackend`: the local stand-in for SageMaker hosting (DESIGN 4, embedded default).

Process model. Each endpoint *instance* is a real model-server process
(`python -m activities.backends.local_model_server`) started in its own session, so a worker
crash does not take endpoints with it. It binds 127.0.0.1 port 0 and writes the port to a file;
warm-up is the real process start until `GET /ping` answers 200 (plus an optional configurable
load delay). A server reads inputs only under `read_roots` (data_dir, which holds the worker's
spools, and the worker's input roots; part of the config hash). Instance count = number of
processes; `set_capacity` starts or stops processes. The stand-in has no autoscaler: min/max are
recorded, not acted on.

Record. `data_dir/local_endpoints/<name>.json` (written to a temp file + `os.replace`, changed
only under an `fcntl.flock` on `<name>.lock`, so two workers cannot double-start) holds the spec,
status, desired count and one entry per process (instance id, pid, process start time, port,
config hash, log offset). A restarted worker, or the reconcile through `list_endpoints`, adopts
endpoints from their records and finishes a delete whose worker died; a dead pid (os.kill(pid,
0), zombie or reused pid, also another user's) or an instance whose /ping does not answer is
reported. Stopping an instance (scale-in, delete, blue/green switch) is SIGTERM: the server
refuses new requests, lets the sync invocations it serves and its running async jobs finish for
up to `stop_timeout - 1` s and writes a failure file for the async jobs left; scale-in stops idle
instances first. Each server logs to its own `<name>.<instance>.log`, rotated at
`log_max_bytes` (LOG_BACKUPS old files kept, all removed when the instance stops), so a busy
endpoint's log stays bounded; stderr, which then carries only crash output, goes to
`<name>.log`. The rotation (`log_max_bytes`, LOG_BACKUPS) is the worker's setting, not the
endpoint's, so it is not in the config hash: changing it never replaces a running fleet (that
would restart every model to resize a log). A server keeps the rotation it was started with;
instances started later (scale-out, replacing one that exited, a config change) get the new one.
A process that exits while starting turns the endpoint Failed with the tail of its log and of
its crash output as `failure_reason`. The router names the instance it means in each request: a
server that got the port of an instance that died refuses the request before running it.

Control-plane calls (which may wait for /ping) run on their own thread pool, so they never
delay an invocation's record read.

Status vocabulary is SageMaker's: Creating while the first processes start, InService when all
answer /ping, Updating while scaling out or replacing the config (blue/green: the old processes
serve until the new ones are ready; an async endpoint at 0 instances stays at 0, as SageMaker's
update with RetainAllVariantProperties keeps the count), Failed when a process exits during
Creating, OutOfService (reported, not stored) when no process of an InService endpoint is left
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError

from activities.backends.base import (
    TAG_MODEL,
    AsyncInferenceFailed,
    AsyncInvocation,
    CapacityUnavailable,
    EndpointFailed,
    EndpointInfo,
    EndpointNotFound,
    EndpointSpec,
    EndpointStatus,
    InvalidEndpointState,
    InvalidRequest,
    InvokeResult,
    ModelError,
    ModelServerError,
    ServiceUnavailable,
    Throttled,
    Unclassified,
    check_capacity,
    check_same_owner,
    check_sync_payload,
    is_valid_endpoint_name,
)
from activities.backends.local_model_server import (
    DRAINING_HEADER,
    EXPECT_INSTANCE_HEADER,
    INSTANCE_HEADER,
    LOG_BACKUPS,
    LOG_MAX_BYTES,
    async_paths,
)
from activities.backends.local_process import (
    CHILDREN,
    CHILDREN_LOCK,
    EXIT_CODES,
    async_jobs_running,
    pid_alive,
    ping_instance,
    proc_start_ticks,
)

log = logging.getLogger(__name__)

RECORD_VERSION = 1
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_INHERITED_ENV = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "PYTHONPATH"})
Probe = Literal["ready", "starting", "dead"]
T = TypeVar("T")
# Threads per pool (as the SageMaker backend): control-plane calls hold theirs for up to
# ready_wait (or a stop's drain); an invocation's record read or async-result read is quick.
CONTROL_THREADS = 16
INFERENCE_THREADS = 16


def _now() -> datetime:
    return datetime.now(UTC)


class LocalInstance(BaseModel):
    instance_id: str
    pid: int
    proc_start: int | None = None  # /proc start ticks: tells our process from a reused pid
    port: int | None = None  # known once the server has written its port file
    config_hash: str
    started_at: datetime
    log_offset: int = 0  # where this process's crash output (stderr) begins in <name>.log


class LocalRecord(BaseModel):
    version: int = RECORD_VERSION
    endpoint_name: str
    model_id: str
    spec: EndpointSpec
    config_hash: str
    previous_spec: EndpointSpec | None = None  # during a config update: what to roll back to
    status: EndpointStatus
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime  # last status change; start deadlines count from here
    desired_instance_count: int
    min_instances: int
    max_instances: int
    instances: list[LocalInstance] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)  # instance ids the current change started


def _container_error(status: int) -> type[ModelError | ModelServerError | Throttled]:
    """As the SageMaker classification of a container's answer (errors.RULES): 429 is
    throttling (retried), 5xx a model-server error (a few tries per input), other 4xx the
    input's fault."""
    if status == 429:
        return Throttled
    return ModelServerError if status >= 500 else ModelError


class LocalStandInBackend:
    """The local stand-in for SageMaker hosting; see the module docstring."""

    kind = "local"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        warmup_seconds: float | None = None,
        invoke_seconds: float | None = None,
        ready_wait_seconds: float = 10.0,
        startup_timeout_seconds: float = 120.0,
        stop_timeout_seconds: float = 5.0,
        invoke_timeout_seconds: float = 70.0,
        orphan_grace_seconds: float = 30.0,
        read_roots: Sequence[Path | str] | None = None,
        log_max_bytes: int = LOG_MAX_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_max_bytes = log_max_bytes  # per instance log file (LOG_BACKUPS old ones kept)
        if read_roots is None:  # as Settings.input_roots' default: the bundled samples
            from workers.samples import SAMPLES_DIR

            read_roots = [SAMPLES_DIR]
        # Where model servers may read inputs: data_dir (the spools the worker writes) and the
        # worker's input roots. Sorted, so the config hash does not depend on their order.
        self.read_roots = sorted({Path(r).resolve() for r in [self.data_dir, *read_roots]})
        self.root = self.data_dir / "local_endpoints"
        self.async_dir = self.data_dir / "local_async"
        self.root.mkdir(parents=True, exist_ok=True)
        self.async_dir.mkdir(parents=True, exist_ok=True)
        if warmup_seconds is None:  # the model server's simulated load time
            warmup_seconds = float(os.environ.get("RADIANT_LOCAL_WARMUP_SECONDS", "0") or 0)
        self.warmup_seconds = warmup_seconds
        if invoke_seconds is None:  # the model server's simulated inference time
            invoke_seconds = float(os.environ.get("RADIANT_LOCAL_INVOKE_SECONDS", "0") or 0)
        self.invoke_seconds = invoke_seconds
        # ensure/set_capacity wait this long for /ping before returning Creating/Updating.
        self.ready_wait = ready_wait_seconds
        self.startup_timeout = startup_timeout_seconds  # then Failed (SageMaker's health check)
        self.stop_timeout = stop_timeout_seconds
        self.invoke_timeout = invoke_timeout_seconds
        self.orphan_grace = orphan_grace_seconds
        self._rr: dict[str, itertools.count[int]] = {}
        # Own pools, not asyncio's default executor: six endpoints warming up would hold all of
        # its threads (cpu count + 4), and every invocation's record read would queue behind.
        self._control_pool = ThreadPoolExecutor(CONTROL_THREADS, "local-control")
        self._inference_pool = ThreadPoolExecutor(INFERENCE_THREADS, "local-inference")
        # One HTTP client per event loop: a new client per call costs a TLS context (~5 ms of
        # CPU, most of an invocation's overhead) and a TCP handshake. httpx clients are bound
        # to the loop that first used them, hence the per-loop map.
        self._http: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _deployed_hash(self, spec: EndpointSpec) -> str:
        """The spec's config hash plus which reference stand-in serves it and what it may read:
        a fleet started with other read roots (or by a server without them) is replaced."""
        roots = [f"read-root:{r}" for r in self.read_roots]
        return spec.config_hash(spec.model_category or "", spec.model_specialty or "", *roots)

    # ------------------------------------------------------------------ files

    def _file(self, name: str, suffix: str) -> Path:
        """`root/<name><suffix>`. Every path of an endpoint is made here, so every entry point
        checks the name first (as SageMaker does): '/' or '..' would reach outside `root`."""
        if not is_valid_endpoint_name(name):
            raise InvalidRequest(f"invalid endpoint name {name!r}")
        return self.root / f"{name}{suffix}"

    def record_path(self, name: str) -> Path:
        return self._file(name, ".json")

    def log_path(self, name: str) -> Path:
        """The servers' stderr: crash output only (their log is `instance_log_path`)."""
        return self._file(name, ".log")

    def instance_log_path(self, name: str, instance_id: str) -> Path:
        """One server's log; rotated copies are this path + `.1`, ..."""
        return self._file(name, f".{instance_id}.log")

    def _instance_logs(self, name: str, instance_id: str) -> list[Path]:
        """The log files of an instance, oldest first. Globbed, not LOG_BACKUPS of them: a
        server keeps the rotation it was started with, which may be another worker's."""
        current = self.instance_log_path(name, instance_id)
        backups = [p for p in self.root.glob(f"{current.name}.*") if p.suffix[1:].isdigit()]
        backups.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
        return [*backups, current]

    def _port_file(self, name: str, instance_id: str) -> Path:
        return self._file(name, f".{instance_id}.port")

    @contextlib.contextmanager
    def _locked(self, name: str, blocking: bool = True) -> Iterator[bool]:
        # The lock file is never deleted: unlinking a locked file lets a third party lock anew.
        with open(self._file(name, ".lock"), "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self, name: str) -> LocalRecord | None:
        path = self.record_path(name)
        try:
            return LocalRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:  # corrupt, or another version's: retrying cannot help
            first = exc.errors()[0]
            raise Unclassified(
                f"endpoint {name}: unreadable record {path} ({first['msg']} at "
                f"{'.'.join(map(str, first['loc'])) or 'top level'}); fix or remove it"
            ) from None

    def _save(self, rec: LocalRecord) -> None:
        path = self.record_path(rec.endpoint_name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(rec.model_dump_json(indent=2))
        os.replace(tmp, path)  # atomic: readers see the old or the new record, never half

    def _remove_files(self, name: str) -> None:
        record = self.record_path(name)  # checks the name before the glob uses it
        for pattern in (f"{name}.*.port", f"{name}.*.log", f"{name}.*.log.*"):
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        self.log_path(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ process control

    def _spawn(self, rec: LocalRecord) -> LocalInstance:
        spec, name = rec.spec, rec.endpoint_name
        instance_id = f"i-{uuid.uuid4().hex[:10]}"
        port_file = self._port_file(name, instance_id)
        log_file = self.log_path(name)
        offset = log_file.stat().st_size if log_file.exists() else 0
        warmup = spec.environment.get("RADIANT_LOCAL_WARMUP_SECONDS") or self.warmup_seconds
        infer = spec.environment.get("RADIANT_LOCAL_INVOKE_SECONDS") or self.invoke_seconds
        cmd = [
            sys.executable, "-m", "activities.backends.local_model_server",
            "--endpoint-name", name, "--model-id", spec.model_id,
            "--category", spec.model_category or "", "--specialty", spec.model_specialty or "",
            "--instance-id", instance_id, "--port-file", str(port_file),
            "--record-path", str(self.record_path(name)),
            "--orphan-grace-seconds", str(self.orphan_grace), "--warmup-seconds", str(warmup),
            "--invoke-seconds", str(infer), "--drain-seconds", str(self._drain_seconds()),
            "--log-file", str(self.instance_log_path(name, instance_id)),
            "--log-max-bytes", str(self.log_max_bytes), "--log-backups", str(LOG_BACKUPS),
            *itertools.chain.from_iterable(("--read-root", str(r)) for r in self.read_roots),
        ]  # fmt: skip
        if spec.model_data_url:
            cmd += ["--model-data", spec.model_data_url]
        if spec.async_inference:  # the only directory the server writes results to
            cmd += ["--async-dir", str(self.async_dir)]
        # Like a container: PrimaryContainer.Environment, not the worker's secrets.
        env = {k: v for k, v in os.environ.items() if k in _INHERITED_ENV}
        env.update(spec.environment)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
        with open(log_file, "ab") as log_fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=log_fh,
                env=env,
                start_new_session=True,  # survives the worker (and its Ctrl-C)
                close_fds=True,
            )
        with CHILDREN_LOCK:
            CHILDREN[proc.pid] = proc
        log.info("endpoint %s: started instance %s (pid %d)", name, instance_id, proc.pid)
        return LocalInstance(
            instance_id=instance_id,
            pid=proc.pid,
            proc_start=proc_start_ticks(proc.pid),
            config_hash=rec.config_hash,
            started_at=_now(),
            log_offset=offset,
        )

    def _spawn_into(self, rec: LocalRecord, count: int) -> None:
        for _ in range(count):
            try:
                inst = self._spawn(rec)
            except OSError as exc:  # fork/exec or the log failed (EAGAIN, ENOMEM, ENOSPC, ...)
                self._abort_change(rec, f"could not start a model-server process: {exc}")
                raise ServiceUnavailable(
                    f"endpoint {rec.endpoint_name}: could not start a model-server process: {exc}"
                ) from exc
            rec.instances.append(inst)
            rec.pending.append(inst.instance_id)
            self._save(rec)  # recorded right away: a crash now leaves no unknown process

    def _abort_change(self, rec: LocalRecord, reason: str) -> None:
        """Undo a change whose processes could not all be started (the lock is held): a create
        leaves nothing behind (a retry starts over), an update or scale-out rolls back."""
        if rec.status == "Creating":
            self._stop(rec.endpoint_name, rec.instances)
            self._remove_files(rec.endpoint_name)
            return
        pending = [i for i in rec.instances if i.instance_id in rec.pending]
        self._fail_change(rec, pending, reason)
        rec.updated_at = _now()
        self._save(rec)

    def _finish_delete(self, rec: LocalRecord) -> None:
        """Stop the processes and remove the files (the lock is held; the record may already
        say Deleting: a delete is finished by whoever comes next)."""
        self._stop(rec.endpoint_name, rec.instances)
        self._remove_files(rec.endpoint_name)
        self._rr.pop(rec.endpoint_name, None)

    def _drain_seconds(self) -> float:
        """How long a stopping model server lets its requests and async jobs finish: inside
        `_stop`'s wait (with a second to write failure files and exit), so SIGKILL never loses
        a job."""
        return max(0.0, self.stop_timeout - 1.0)

    def _signal(self, name: str, inst: LocalInstance, signum: int) -> bool:
        """False when the process is gone, or not ours to signal (another user's process under
        a reused pid, e.g. after a reboot): either way there is nothing of ours to stop."""
        try:
            os.kill(inst.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            log.warning("endpoint %s: pid %d is not ours any more", name, inst.pid)
            return False
        return True

    def _stop(self, name: str, instances: list[LocalInstance]) -> None:
        """SIGTERM (the server drains its async jobs), wait, SIGKILL. Only signals a pid whose
        start time is still ours."""
        live = [i for i in instances if pid_alive(i.pid, i.proc_start)]
        live = [i for i in live if self._signal(name, i, signal.SIGTERM)]
        deadline = time.monotonic() + self.stop_timeout
        while live and time.monotonic() < deadline:
            time.sleep(0.02)
            live = [i for i in live if pid_alive(i.pid, i.proc_start)]
        for inst in live:
            log.warning("endpoint %s: instance %s ignored SIGTERM, killing", name, inst.pid)
            self._signal(name, inst, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while live and time.monotonic() < deadline:
            time.sleep(0.02)
            live = [i for i in live if pid_alive(i.pid, i.proc_start)]
        for inst in instances:
            self._port_file(name, inst.instance_id).unlink(missing_ok=True)
            for path in self._instance_logs(name, inst.instance_id):
                path.unlink(missing_ok=True)

    def _probe(self, name: str, inst: LocalInstance) -> Probe:
        if not pid_alive(inst.pid, inst.proc_start):
            return "dead"
        if inst.port is None:
            try:
                inst.port = int(self._port_file(name, inst.instance_id).read_text())
            except (OSError, ValueError):
                return "starting"
        return "ready" if ping_instance(inst.port, inst.instance_id) == 200 else "starting"

    def _probe_all(self, rec: LocalRecord) -> dict[str, Probe]:
        return {i.instance_id: self._probe(rec.endpoint_name, i) for i in rec.instances}

    def _failure_reason(self, name: str, inst: LocalInstance) -> str:
        """Its log's last lines, then its crash output (a traceback bypasses the log)."""
        text = ""
        for path in self._instance_logs(name, inst.instance_id):
            with contextlib.suppress(OSError):
                text += path.read_bytes()[-4000:].decode("utf-8", "replace")
        try:
            with open(self.log_path(name), "rb") as fh:
                fh.seek(inst.log_offset)
                text += "\n" + fh.read().decode("utf-8", "replace")
        except OSError:
            pass
        lines = [ln for ln in text.splitlines() if ln.strip()]
        tail = "\n".join(lines[-8:])[-1500:]
        code = EXIT_CODES.get(inst.pid)
        exit_text = f"exit code {code}" if code is not None else "exited"
        return f"instance {inst.instance_id} (pid {inst.pid}) {exit_text}: {tail or 'no output'}"

    # ------------------------------------------------------------------ status

    def _settle(self, rec: LocalRecord, wait: float) -> tuple[LocalRecord, dict[str, Probe]]:
        """Wait (bounded) for a transitional endpoint to settle, applying the outcome (the caller
        holds the lock)."""
        deadline = time.monotonic() + wait
        while True:
            probes = self._probe_all(rec)
            if rec.status in ("Creating", "Updating") and self._transition(rec, probes):
                probes = self._probe_all(rec)
            if rec.status not in ("Creating", "Updating") or time.monotonic() >= deadline:
                return rec, probes
            time.sleep(0.05)

    def _transition(self, rec: LocalRecord, probes: dict[str, Probe]) -> bool:
        """Creating/Updating -> InService, Failed or rolled back, judged on the *pending*
        instances (those this change started; an older instance dying meanwhile is healed later,
        not a failed change). True if it changed `rec`; the caller holds the lock."""
        if rec.status not in ("Creating", "Updating"):
            return False
        pending = [i for i in rec.instances if i.instance_id in rec.pending]
        dead = [i for i in pending if probes.get(i.instance_id) == "dead"]
        limit = rec.spec.container_startup_timeout_s or self.startup_timeout
        overdue = (_now() - rec.updated_at).total_seconds() > limit
        if rec.status == "Updating" and rec.previous_spec is not None and not pending:
            # A config update that started no new process (its worker died first): "all new
            # instances ready" would be vacuously true and stop the only fleet that serves.
            self._fail_change(rec, pending, "no instance of the new config was started")
        elif dead:
            self._fail_change(rec, pending, self._failure_reason(rec.endpoint_name, dead[0]))
        elif overdue and any(probes.get(i.instance_id) != "ready" for i in pending):
            slow = next(i for i in pending if probes.get(i.instance_id) != "ready")
            reason = f"instance {slow.instance_id} did not answer /ping within {limit:.0f}s"
            self._fail_change(rec, pending, reason)
        elif all(probes.get(i.instance_id) == "ready" for i in pending):
            old = [i for i in rec.instances if i.config_hash != rec.config_hash]
            if old:  # blue/green switch: the new fleet serves, the old one goes
                self._stop(rec.endpoint_name, old)
                rec.instances = [i for i in rec.instances if i not in old]
            rec.previous_spec, rec.pending = None, []
            rec.status, rec.failure_reason = "InService", None
        else:
            return False
        rec.updated_at = _now()
        self._save(rec)
        return True

    def _fail_change(self, rec: LocalRecord, pending: list[LocalInstance], reason: str) -> None:
        name = rec.endpoint_name
        log.warning("endpoint %s: %s", name, reason)
        self._stop(name, pending if rec.status == "Updating" else rec.instances)
        rec.instances = [i for i in rec.instances if i not in pending]
        rec.pending = []
        if rec.status == "Creating":  # like SageMaker: Failed, nothing keeps running
            rec.instances, rec.status, rec.failure_reason = [], "Failed", reason
            return
        if rec.previous_spec is not None:  # a config update failed: back to the old fleet
            rec.spec, rec.previous_spec = rec.previous_spec, None
            # The old fleet's own hash, not a recomputed one: the read roots may have changed.
            rec.config_hash = next(
                (i.config_hash for i in rec.instances), self._deployed_hash(rec.spec)
            )
            reason = f"update rolled back: {reason}"
        else:  # a scale-out failed: keep what runs (SageMaker's RollingBack -> InService)
            reason = f"scale-out rolled back: {reason}"
        rec.desired_instance_count = len(rec.instances)
        rec.status, rec.failure_reason = "InService", reason

    @staticmethod
    def _tags_of(rec: LocalRecord) -> dict[str, str]:
        return {**rec.spec.tags, TAG_MODEL: rec.model_id}

    def _info(self, rec: LocalRecord, probes: dict[str, Probe]) -> EndpointInfo:
        ready = [i for i in rec.instances if probes.get(i.instance_id) == "ready"]
        dead = [i for i in rec.instances if probes.get(i.instance_id) == "dead"]
        status: EndpointStatus = rec.status
        message = None
        if dead or (rec.status == "InService" and len(ready) < len(rec.instances)):
            silent = [i for i in rec.instances if i not in ready and i not in dead]
            message = f"{len(ready)} of {rec.desired_instance_count} instances answer /ping"
            if dead:
                message += "; exited: " + ", ".join(f"{i.instance_id} (pid {i.pid})" for i in dead)
            if silent:
                message += "; not answering: " + ", ".join(
                    f"{i.instance_id} (pid {i.pid})" for i in silent
                )
        if rec.status == "InService" and not ready and rec.desired_instance_count > 0:
            status = "OutOfService"  # nothing left serving: an incident, not InService
        return EndpointInfo(
            endpoint_name=rec.endpoint_name,
            model_id=rec.model_id,
            status=status,
            instance_count=len(ready),
            desired_instance_count=rec.desired_instance_count,
            failure_reason=rec.failure_reason,
            created_at=rec.created_at,
            async_inference=rec.spec.async_inference,
            config_name=rec.config_hash,
            tags=self._tags_of(rec),
            status_message=message,
        )

    def _heal(self, rec: LocalRecord, desired: int) -> None:
        """Drop dead instances and start or stop processes to reach `desired` (lock held)."""
        probes = self._probe_all(rec)
        dead = [i for i in rec.instances if probes[i.instance_id] == "dead"]
        if dead:
            log.warning("endpoint %s: %d instance(s) exited", rec.endpoint_name, len(dead))
            self._stop(rec.endpoint_name, dead)  # removes their port files
            rec.instances = [i for i in rec.instances if i not in dead]
        rec.desired_instance_count = desired
        extra = len(rec.instances) - desired
        if extra > 0:
            victims = self._scale_in_victims(rec, extra)
            rec.instances = [i for i in rec.instances if i not in victims]
            self._save(rec)  # out of the record first: the router stops using them
            self._stop(rec.endpoint_name, victims)
        elif extra < 0:
            rec.status, rec.updated_at, rec.failure_reason = "Updating", _now(), None
            self._spawn_into(rec, -extra)
        self._save(rec)

    def _scale_in_victims(self, rec: LocalRecord, extra: int) -> list[LocalInstance]:
        """Newest first (the oldest are the warmest); on an async endpoint idle instances
        first, since a stopping one must drain (or fail) the jobs it runs."""
        newest_first = rec.instances[::-1]
        if rec.spec.async_inference:
            busy = {
                i.instance_id: async_jobs_running(i.port, i.instance_id) if i.port else 0
                for i in newest_first
            }
            newest_first.sort(key=lambda i: busy[i.instance_id])  # stable: ties stay newest first
        return newest_first[:extra]

    # ------------------------------------------------------------------ sync operations

    def _ensure(self, spec: EndpointSpec) -> EndpointInfo:
        name = spec.endpoint_name
        with self._locked(name):
            rec = self._load(name)
            if rec is not None and rec.status == "Deleting":  # an interrupted delete: finish it
                self._finish_delete(rec)
                rec = None
            if rec is None:
                return self._create(spec)
            check_same_owner(spec, self._tags_of(rec))
            rec, probes = self._settle(rec, 0)
            if rec.status == "Failed":
                raise EndpointFailed(
                    f"endpoint {name} is Failed: {rec.failure_reason}",
                    failure_reason=rec.failure_reason,
                )
            if rec.config_hash != self._deployed_hash(spec):
                return self._update_config(rec, spec)
            missing = len(rec.instances) < rec.desired_instance_count
            if rec.status == "InService" and ("dead" in probes.values() or missing):
                self._heal(rec, rec.desired_instance_count)  # replace exited processes
            rec, probes = self._settle(rec, self.ready_wait)
            return self._info(rec, probes)

    def _create(self, spec: EndpointSpec) -> EndpointInfo:
        now = _now()
        rec = LocalRecord(
            endpoint_name=spec.endpoint_name,
            model_id=spec.model_id,
            spec=spec,
            config_hash=self._deployed_hash(spec),
            status="Creating",
            created_at=now,
            updated_at=now,
            desired_instance_count=max(1, spec.instance_count),
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
        )
        self._save(rec)  # the record exists before any process does
        log.info("endpoint %s: creating", rec.endpoint_name)
        self._spawn_into(rec, rec.desired_instance_count)
        rec, probes = self._settle(rec, self.ready_wait)
        return self._info(rec, probes)

    def _update_config(self, rec: LocalRecord, spec: EndpointSpec) -> EndpointInfo:
        """UpdateEndpoint: a new fleet with the new spec; the old one serves until it is ready."""
        if rec.status != "InService":
            raise InvalidEndpointState(f"endpoint {rec.endpoint_name} is {rec.status}")
        if rec.desired_instance_count == 0 and not rec.instances:
            # An async endpoint scaled to 0: SageMaker's update keeps the count
            # (RetainAllVariantProperties), so nothing starts; the next scale-out uses the new
            # config.
            rec.spec, rec.config_hash = spec, self._deployed_hash(spec)
            rec.updated_at, rec.failure_reason = _now(), None
            self._save(rec)
            return self._info(rec, {})
        rec.previous_spec, rec.spec, rec.config_hash = rec.spec, spec, self._deployed_hash(spec)
        rec.status, rec.updated_at, rec.failure_reason = "Updating", _now(), None
        self._save(rec)
        self._spawn_into(rec, max(1, rec.desired_instance_count))
        rec, probes = self._settle(rec, self.ready_wait)
        return self._info(rec, probes)

    def _describe(self, name: str) -> EndpointInfo | None:
        rec = self._load(name)
        if rec is None:
            return None
        probes = self._probe_all(rec)
        if rec.status in ("Creating", "Updating", "Deleting"):
            # Persist Creating -> InService/Failed when nobody else is mid-change (no waiting);
            # Deleting with the lock free: its worker died mid-delete, so finish the delete.
            with self._locked(name, blocking=False) as got:
                if got:
                    rec = self._load(name)
                    if rec is None:
                        return None
                    if rec.status == "Deleting":
                        self._finish_delete(rec)
                        return None
                    probes = self._probe_all(rec)
                    if self._transition(rec, probes):
                        probes = self._probe_all(rec)
        return self._info(rec, probes)

    def _set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        with self._locked(name):
            rec = self._load(name)
            if rec is None:
                raise EndpointNotFound(f"endpoint {name} does not exist")
            rec, probes = self._settle(rec, 0)
            if rec.status == "Failed":
                raise EndpointFailed(
                    f"endpoint {name} is Failed: {rec.failure_reason}",
                    failure_reason=rec.failure_reason,
                )
            if rec.status != "InService":  # OutOfService is reported, never stored
                raise InvalidEndpointState(
                    f"endpoint {name} is {rec.status}; only InService scales"
                )
            is_async = rec.spec.async_inference
            desired = check_capacity(
                instance_count, min_instances, max_instances, async_inference=is_async
            )
            rec.min_instances, rec.max_instances = min_instances, max_instances
            self._heal(rec, desired)
            rec, probes = self._settle(rec, self.ready_wait)
            if rec.status == "InService" and rec.failure_reason and len(rec.instances) < desired:
                # The scale-out rolled back: not a success. Retryable, like SageMaker's
                # insufficient capacity; the record keeps the reason.
                raise CapacityUnavailable(
                    f"endpoint {name}: could not scale to {desired} instances, "
                    f"{len(rec.instances)} serve: {rec.failure_reason}",
                    failure_reason=rec.failure_reason,
                )
            return self._info(rec, probes)

    def _delete(self, name: str) -> None:
        with self._locked(name):
            rec = self._load(name)
            if rec is None:
                self._remove_files(name)  # leftovers of an interrupted delete
                return
            rec.status, rec.updated_at = "Deleting", _now()
            self._save(rec)  # a crash from here on is finished by the next describe/delete/ensure
            self._finish_delete(rec)
            log.info("endpoint %s: deleted", name)

    def _list(self, prefix: str) -> list[EndpointInfo]:
        infos = []
        for path in sorted(self.root.glob("*.json")):
            name = path.stem
            if not name.startswith(prefix) or not is_valid_endpoint_name(name):
                continue  # a stray file, not an endpoint record
            try:
                info = self._describe(name)
            except (Unclassified, ValueError) as exc:  # not ours / a future format
                log.warning("skipping unreadable endpoint record %s: %s", path, exc)
                continue
            if info is not None:
                infos.append(info)
        return infos

    # ------------------------------------------------------------------ the interface

    async def _control(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._control_pool, fn, *args)

    async def _inference(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._inference_pool, fn, *args)

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        return await self._control(self._ensure, spec)

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        return await self._control(self._describe, name)

    async def endpoint_tags(self, name: str) -> dict[str, str] | None:
        """The tags the endpoint was created with (None: no such endpoint), as SageMaker keeps
        them: the reconcile decides ownership by them."""

        def read() -> dict[str, str] | None:
            rec = self._load(name)
            return None if rec is None else self._tags_of(rec)

        return await self._control(read)

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        return await self._control(
            self._set_capacity, name, instance_count, min_instances, max_instances
        )

    async def delete_endpoint(self, name: str) -> None:
        await self._control(self._delete, name)

    async def list_endpoints(self, prefix: str) -> list[EndpointInfo]:
        return await self._control(self._list, prefix)

    async def _targets(self, name: str) -> tuple[LocalRecord, list[LocalInstance]]:
        """The instances to route to, round-robin order (SageMaker rejects non-InService)."""
        rec = await self._inference(self._load, name)
        if rec is None:
            raise EndpointNotFound(f"Endpoint {name} not found")
        if rec.status == "Failed":
            raise EndpointFailed(f"endpoint {name} is Failed: {rec.failure_reason}")
        if rec.status not in ("InService", "Updating"):
            raise InvalidEndpointState(f"endpoint {name} is {rec.status}, not InService")
        # During a config update the old fleet serves: every instance not of the new config.
        updating = rec.previous_spec is not None
        ready = [
            i for i in rec.instances if i.port and (i.config_hash == rec.config_hash) != updating
        ]
        if not ready:
            raise ServiceUnavailable(f"no instance of endpoint {name} is serving")
        start = next(self._rr.setdefault(name, itertools.count()))
        return rec, [ready[(start + k) % len(ready)] for k in range(len(ready))]

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._http.get(loop)
        if client is None or client.is_closed:
            client = self._http[loop] = httpx.AsyncClient(
                # No connection cap and no pool wait: the worker's activity slots bound the
                # concurrency, and one client serves every endpoint, so a cap would queue a
                # quick detection behind a hundred slow folds of another model.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                timeout=httpx.Timeout(self.invoke_timeout, pool=None),
            )
        return client

    async def aclose(self) -> None:
        """Close this loop's HTTP client (the worker calls it on shutdown)."""
        client = self._http.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def _post(
        self,
        name: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        targets: list[LocalInstance] | None = None,
    ) -> httpx.Response:
        if targets is None:
            _, targets = await self._targets(name)
        last: Exception | None = None
        client = self._client()
        for inst in targets:  # an instance that died since the record was read: next one
            try:
                # The server checks the instance it is before running anything: its port may
                # have been another (dead) instance's.
                resp = await client.post(
                    f"http://127.0.0.1:{inst.port}{path}",
                    content=body,
                    headers={**headers, EXPECT_INSTANCE_HEADER: inst.instance_id},
                )
            except httpx.ReadTimeout:
                # The instance is alive but slow: another one would run the same work again.
                raise ModelServerError(
                    f"model container of {name} did not answer within {self.invoke_timeout:g}s"
                ) from None
            except httpx.TransportError as exc:
                last = exc
                continue
            if resp.headers.get(INSTANCE_HEADER) != inst.instance_id:
                last = RuntimeError(f"port {inst.port} now belongs to another process")
            elif resp.headers.get(DRAINING_HEADER):  # stopping: it took no work, try the next
                last = RuntimeError(f"instance {inst.instance_id} is stopping")
            else:
                return resp
        raise ServiceUnavailable(f"no instance of endpoint {name} answered: {last!r}")

    async def invoke(
        self, name: str, body: bytes, content_type: str, accept: str | None = None
    ) -> InvokeResult:
        check_sync_payload(name, body)  # as SageMaker: the stand-in must not accept more
        headers = {"Content-Type": content_type, "Accept": accept or "*/*"}
        resp = await self._post(name, "/invocations", body, headers)
        if resp.status_code >= 400:
            detail = f"model container answered {resp.status_code}: {resp.text[:500]}"
            raise _container_error(resp.status_code)(detail, http_status=resp.status_code)
        return InvokeResult(body=resp.content, content_type=resp.headers.get("content-type"))

    async def invoke_async(
        self, name: str, input_location: str, content_type: str
    ) -> AsyncInvocation:
        rec, targets = await self._targets(name)  # once: each call advances the round-robin
        if not rec.spec.async_inference:
            raise InvalidRequest(f"endpoint {name} is not an async inference endpoint")
        inference_id = uuid.uuid4().hex  # the server writes to async_paths() of this id only
        out, fail = async_paths(self.async_dir, inference_id)
        headers = {
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-Content-Type": content_type,
            "X-Amzn-SageMaker-InputLocation": input_location,
            "X-Amzn-SageMaker-InferenceId": inference_id,
        }
        resp = await self._post(name, "/invocations-async", b"", headers, targets)
        if resp.status_code != 202:
            raise ModelError(f"async invocation rejected ({resp.status_code}): {resp.text[:500]}")
        return AsyncInvocation(
            inference_id=inference_id, output_location=str(out), failure_location=str(fail)
        )

    async def fetch_async_result(self, invocation: AsyncInvocation) -> bytes | None:
        def read() -> bytes | None:
            with contextlib.suppress(FileNotFoundError):
                return Path(invocation.output_location).read_bytes()
            if invocation.failure_location:
                with contextlib.suppress(FileNotFoundError):
                    failure = Path(invocation.failure_location).read_text(errors="replace")
                    raise AsyncInferenceFailed(
                        f"async inference {invocation.inference_id} failed: {failure[:2000]}"
                    )
            return None

        return await self._inference(read)

    # ------------------------------------------------------------------ helpers for tests/CLI

    def endpoint_pids(self, name: str) -> list[int]:
        """Pids recorded for an endpoint (the processes a record says it runs)."""
        rec = self._load(name)
        return [i.pid for i in rec.instances] if rec else []
