"""`radiant demo` — the main job on the embedded default (what `make run` runs).

Stack up (Temporal dev server + Web UI, embedded PostgreSQL, migrations, catalog sync, schedules,
worker), a sample tenant, the five services enabled with their models COLD, one job per service
on the bundled sample inputs (each COLD model really starts a local model server while its job
waits), then the results, the thermal states and the tenant's usage report.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import typer

from models_catalog.pricing import display_money
from workers.cli.common import DataTable, console, esc
from workers.settings import Settings, get_settings

DEMO_TENANT = "demo-tenant"
# One job per service (all 16 with --all-operations).
DEMO_JOBS = [
    "perception/analyze",
    "scientific/protein/fold",
    "medical/segment",
    "geospatial/detect/floods",
    "reconstruction/nerf",
]


def demo(
    all_operations: bool = typer.Option(
        False, help="Run one job per operation (16), not per service."
    ),
    stay: bool | None = typer.Option(
        None, help="Keep the stack up for the Web UI afterwards (default: when interactive)."
    ),
) -> None:
    """Run the main job end to end on the embedded stack."""
    from workers.cli.stack import run_stack

    settings = get_settings()
    keep = sys.stdin.isatty() if stay is None else stay
    run_stack(settings, lambda s: _demo(s, all_operations), stay=keep)


async def _demo(settings: Settings, all_operations: bool) -> None:
    from activities.db.engine import create_app_engine, resolve_database_urls
    from activities.service_states import refresh_service_states
    from activities.tenants import UnknownTenantError, create_tenant, get_tenant
    from activities.thermal_control import ThermalControl
    from models_catalog.catalog import load_catalog
    from models_catalog.types import ThermalState
    from workers.job_client import JobClient
    from workers.samples import SAMPLES
    from workflows.thermal_types import SetTargetRequest

    catalog = load_catalog(settings.catalog_dir)
    urls = resolve_database_urls(settings)
    try:
        tenant = get_tenant(urls.owner, DEMO_TENANT)
    except UnknownTenantError:
        tenant = create_tenant(urls.owner, DEMO_TENANT, 5)
    console.print(f"tenant [bold]{esc(tenant.name)}[/] (tier {tenant.tier})")

    jobs = await JobClient.connect(settings)
    control = ThermalControl(
        jobs.client, settings.task_queue, settings.thermal_timings(), settings.app_scope()
    )
    engine = create_app_engine(urls.app)
    keys = [f"{s.id}/{op.id}" for s, op in catalog.operations()] if all_operations else DEMO_JOBS
    try:
        # An admin's one-time set-up: enable the services, make their models available (COLD:
        # no GPU cost until a job needs them).
        services = sorted({k.split("/", 1)[0] for k in keys})
        await refresh_service_states(
            engine,
            catalog,
            settings.app_id,
            settings.environment,
            set_disabled={s: False for s in services},
        )
        needed: set[str] = set()
        for key in keys:
            service_id, op_id = key.split("/", 1)
            needed.update(catalog.service(service_id).required_models)
            needed.update(catalog.operation(service_id, op_id).required_models)
        off = [
            m for m in sorted(needed) if catalog.model(m).thermal.default_state == ThermalState.OFF
        ]
        with console.status(f"setting {len(off)} models from OFF to COLD ..."):
            await asyncio.gather(
                *(
                    control.set_target(
                        settings.app_id,
                        settings.environment,
                        m,
                        SetTargetRequest(state=ThermalState.COLD, reason="demo"),
                    )
                    for m in off
                )
            )

        table = DataTable(
            "job", "models", "units", "billed", "wall s", "answer", title="sample jobs"
        )
        table.columns[0].no_wrap = True
        run_id = uuid.uuid4().hex[:6]
        handles = []
        for key in keys:
            service_id, op_id = key.split("/", 1)
            handles.append(
                (
                    key,
                    time.monotonic(),
                    await jobs.submit(
                        service_id,
                        op_id,
                        tenant=tenant.name,
                        input_uri=str(SAMPLES[key]),
                        request_id=f"demo-{run_id}-{key.replace('/', '-')}",
                    ),
                )
            )
        console.print(f"submitted {len(handles)} jobs; COLD models warm up while the jobs wait")
        for key, started, handle in handles:
            result = await handle.result()
            table.add_row(
                key,
                ", ".join(result.models_used),
                f"{result.units} {result.unit}",
                display_money(result.billed, 4),
                f"{time.monotonic() - started:.1f}",
                _summary(result.output),
            )
            console.print(f"  done {esc(key)}: {esc(jobs.web_ui_link(handle.id))}")
        console.print(table)

        states = DataTable("model", "target", "instances", "endpoint", title="thermal states")
        for m in sorted(needed):
            st = await control.status(settings.app_id, settings.environment, m)
            states.add_row(
                m, st.target_state.value, str(st.instance_count), st.endpoint_status or "-"
            )
        console.print(states)
    finally:
        await engine.dispose()

    from workers.cli import usage  # the same code as `radiant usage report`

    await asyncio.to_thread(usage.report, tenant.name, usage.GroupBy.service, None, False)
    from workers.temporal import web_ui

    console.print(
        f"[bold]Web UI: {esc(web_ui(settings))}[/] (filter: RadiantTenant = '{esc(tenant.name)}')"
    )


def _summary(output: object) -> str:
    """The answer in a few words: top-level fields, with list lengths."""
    if isinstance(output, dict) and "primary" in output:
        steps = output.get("steps", [])
        return f"{_summary(output['primary'])}; +{len(steps)} chained call(s)"
    if isinstance(output, dict):
        parts = []
        for key, value in list(output.items())[:4]:
            if (
                isinstance(value, list)
                and len(value) <= 4
                and all(isinstance(v, int | float) for v in value)
            ):
                parts.append(f"{key}: {value}")  # a size or a box, not a count
            elif isinstance(value, list):
                parts.append(f"{key}: {len(value)}")
            elif isinstance(value, str | int | float | bool) and len(str(value)) <= 20:
                parts.append(f"{key}: {value}")
        return ", ".join(parts)
    return str(output)[:40]
