"""`radiant bench throughput`: orchestration overhead of a service job, measured against bare
Temporal workflows running the same number of no-op activities, in the same process, on the same
dev server and worker settings.

Both runs: N workflows, at most C in flight, each timed from submit to result; the two sides
alternate in R batches so that machine noise lands on both.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from workers.bench_memory import MemoryFigures, measure_batch, memory_report


@dataclass
class RunFigures:
    name: str
    jobs: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflows": self.jobs,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 2),
            "latency_p50_s": round(self.percentile(50), 4),
            "latency_p95_s": round(self.percentile(95), 4),
            "latency_p99_s": round(self.percentile(99), 4),
            "latency_mean_s": round(statistics.fmean(self.latencies), 4),
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _timed(figures: RunFigures, ids: range, concurrency: int, start_one: Any) -> None:
    """Run one batch (workflow numbers `ids`) and add its wall time and latencies."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            await start_one(i)
            figures.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in ids))
    figures.seconds += time.perf_counter() - t0


def _batches(n: int, rounds: int) -> list[range]:
    """`n` workflow numbers cut into `rounds` consecutive batches (sizes differ by at most 1)."""
    edges = [n * r // rounds for r in range(rounds + 1)]
    return [range(edges[r], edges[r + 1]) for r in range(rounds) if edges[r] < edges[r + 1]]


async def _activity_breakdown(client: Client, workflow_ids: list[str]) -> dict[str, float]:
    """Mean scheduled-to-completed milliseconds per activity type (where a job's time goes)."""
    totals: dict[str, list[float]] = {}
    for wid in workflow_ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        scheduled: dict[int, tuple[str, float]] = {}
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = e.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[e.event_id] = (name, e.event_time.ToDatetime().timestamp())
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = e.activity_task_completed_event_attributes
                name, t0 = scheduled[attrs.scheduled_event_id]
                totals.setdefault(name, []).append(
                    (e.event_time.ToDatetime().timestamp() - t0) * 1000
                )
    return {k: round(statistics.fmean(v), 1) for k, v in totals.items()}


async def _memory_rounds(
    rounds: int,
    size: int,
    first_id: int,
    concurrency: int,
    job: Callable[[int, str], Awaitable[None]],
    bare: Callable[[int], Awaitable[None]],
) -> dict[str, Any]:
    """`rounds` batches of `size` workflows per side (fresh ids: a reused request id would
    return the existing job), under tracemalloc; the side going first alternates."""
    in_flight = min(size, concurrency)
    project = MemoryFigures("perception/detect", size, in_flight)
    baseline = MemoryFigures("bare", size, in_flight)
    tracemalloc.start()
    try:
        for r in range(rounds):
            ids = range(first_id + r * size, first_id + (r + 1) * size)

            async def run_bare(ids: range = ids) -> None:
                await _timed(RunFigures("bare", size, 0.0), ids, concurrency, bare)

            async def run_jobs(ids: range = ids) -> None:
                await _timed(
                    RunFigures("jobs", size, 0.0), ids, concurrency, lambda i: job(i, "mem")
                )

            sides = [(baseline, run_bare), (project, run_jobs)]
            for figures, run in sides if r % 2 == 0 else reversed(sides):
                await measure_batch(figures, run)
    finally:
        tracemalloc.stop()
    return memory_report(project, baseline)


async def run_benchmark(
    jobs: int,
    concurrency: int,
    data_dir: Path | None = None,
    rounds: int = 3,
    memory_rounds: int = 2,
) -> dict[str, Any]:
    """Bare and project batches alternate (`rounds` of each), so that a slow spell of a shared
    machine weighs on both sides rather than on whichever ran second. Then, untimed (tracing
    allocations slows both sides), `memory_rounds` batches of each side measure memory
    (workers/bench_memory.py), alternating which side goes first."""
    from sqlalchemy import text

    from activities.backends.local import LocalStandInBackend
    from activities.db.catalog_sync import sync_catalog
    from activities.db.embedded import ensure_embedded_postgres, release_embedded_postgres
    from activities.db.engine import create_app_engine
    from activities.db.migrate import upgrade
    from activities.service_states import refresh_service_states
    from activities.tenants import create_tenant
    from activities.thermal_control import ThermalControl
    from models_catalog.catalog import load_catalog
    from models_catalog.types import ThermalState
    from workers.bytecode import ensure_workflow_bytecode
    from workers.samples import SAMPLES
    from workers.settings import Settings
    from workers.temporal import connect, start_dev_server, stop_dev_server
    from workers.worker import WORKER_OPTIONS, WORKFLOWS, WorkerDeps, activities_for
    from workflows import bench_bare
    from workflows.search_attributes import job_search_attributes
    from workflows.service_job import ServiceJobWorkflow
    from workflows.service_types import InputRef, ServiceRequest, job_workflow_id
    from workflows.thermal_types import SetTargetRequest

    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="radiant-bench-"))
    owner = ensure_embedded_postgres(data_dir)
    upgrade(owner)
    catalog = load_catalog()
    sync_catalog(owner, catalog)
    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(owner),
        task_queue="bench",
        job_poll_seconds=0.2,
        thermal_poll_seconds=0.2,
    )
    from activities.db.engine import resolve_database_urls

    urls = resolve_database_urls(settings)
    engine = create_app_engine(urls.app, pool_size=20)
    tenant = create_tenant(owner, f"bench-{uuid.uuid4().hex[:6]}", 5)
    # The same dev server `radiant up` runs (its output goes to a log, not to our stdout).
    server_settings = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{_free_port()}", "temporal_ui_port": _free_port()}
    )
    server = start_dev_server(server_settings, data_dir / "temporal.log")
    backend = LocalStandInBackend(data_dir, read_roots=settings.input_roots)
    try:
        client: Client = await connect(server_settings)
        deps = WorkerDeps(settings=settings, catalog=catalog, backend=backend, engine=engine)
        ensure_workflow_bytecode()  # as build_worker does, for both the jobs and the baseline
        worker = Worker(
            client,
            task_queue="bench",
            workflows=[*WORKFLOWS, bench_bare.BareWorkflow],
            activities=[*activities_for(deps, client, "bench"), bench_bare.noop],
            **WORKER_OPTIONS,  # the production worker's settings, for both sides
        )
        async with worker:
            app = "bench"
            control = ThermalControl(client, "bench", settings.thermal_timings())
            await refresh_service_states(
                engine, catalog, app, "dev", set_disabled={"perception": False}
            )
            await control.set_target(
                app, "dev", "yolov8m", SetTargetRequest(state=ThermalState.WARM)
            )
            run_id = uuid.uuid4().hex[:6]

            async def job(i: int, tag: str = "job") -> None:
                rid = f"{run_id}-{tag}-{i}"
                req = ServiceRequest(
                    tenant=tenant.name,
                    app_id=app,
                    environment="dev",
                    request_id=rid,
                    service="perception",
                    operation="detect",
                    input=InputRef(uri=str(SAMPLES["perception/detect"])),
                )
                await client.execute_workflow(  # started as JobClient.submit starts jobs
                    ServiceJobWorkflow.run,
                    req,
                    id=job_workflow_id(tenant.name, "perception", "detect", rid),
                    task_queue="bench",
                    search_attributes=job_search_attributes(req),
                )

            # Warm-up round (imports, connection pools, sticky caches), not measured.
            await job(0, "warm")
            history = await client.get_workflow_handle(
                job_workflow_id(tenant.name, "perception", "detect", f"{run_id}-warm-0")
            ).fetch_history()
            activity_count = sum(
                1
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            )

            async def bare(i: int) -> None:
                await client.execute_workflow(
                    bench_bare.BareWorkflow.run,
                    activity_count,
                    id=f"bench-bare-{run_id}-{i}",
                    task_queue="bench",
                )

            await bare(-1)
            baseline = RunFigures("bare", jobs, 0.0)
            project = RunFigures("perception/detect", jobs, 0.0)
            for batch in _batches(jobs, rounds):
                await _timed(baseline, batch, concurrency, bare)
                await _timed(project, batch, concurrency, job)

            memory = None
            if memory_rounds:
                memory = await _memory_rounds(
                    memory_rounds, min(jobs, 3 * concurrency), jobs, concurrency, job, bare
                )

            breakdown = await _activity_breakdown(
                client,
                [
                    job_workflow_id(tenant.name, "perception", "detect", f"{run_id}-job-{i}")
                    for i in range(min(jobs, 20))
                ],
            )

        async with engine.connect() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant_id', :t, false)"), {"t": str(tenant.id)}
            )
            rows: dict[str, int] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT kind, count(*) FROM usage_ledger "
                            "WHERE workflow_id LIKE :p GROUP BY kind"
                        ),
                        {
                            "p": job_workflow_id(
                                tenant.name, "perception", "detect", f"{run_id}-job-%"
                            )
                        },
                    )
                ).all()
            )
        return {
            "jobs": jobs,
            "concurrency": concurrency,
            "rounds": len(_batches(jobs, rounds)),
            "activities_per_workflow": activity_count,
            "project": project.as_dict(),
            "bare": baseline.as_dict(),
            "ratio": round(project.per_second / baseline.per_second, 3),
            "usage_rows": {
                "model_invocation": rows.get("model_invocation", 0),
                "service_charge": rows.get("service_charge", 0),
            },
            "invocations": jobs,
            "job_activity_ms": breakdown,
            "memory": memory,
        }
    finally:
        for info in await backend.list_endpoints("radiant-"):
            await backend.delete_endpoint(info.endpoint_name)
        stop_dev_server(server, timeout=30)  # kills a stuck one: the cleanup below still runs
        await backend.aclose()
        await engine.dispose()
        release_embedded_postgres(data_dir)
