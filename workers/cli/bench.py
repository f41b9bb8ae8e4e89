"""`radiant bench`: synthetic traces and the thermal-policy benchmark.

    radiant bench make-trace --family mixed --days 7 --seed 42 --out trace.csv
    radiant bench thermal-policy --trace trace.csv [--warmup-seconds 300] [--json]
        [--scale-in-seconds 300] [--delete-seconds 120]

Errors (bad trace, unknown model, bad option) are one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from models_catalog.simulator import DEFAULT_DELETE_S, DEFAULT_SCALE_IN_S, MAX_TEARDOWN_S
from models_catalog.tracegen import MAX_ECHO_CHARS, MAX_TRACE_DAYS, quote_field
from workers.cli.common import DataTable, esc

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {esc(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load_catalog() -> Any:
    """The catalog of the settings (RADIANT_CATALOG_DIR, else the bundled one; a seam for
    tests); catalog errors become a one-line failure."""
    from models_catalog.catalog import load_catalog
    from models_catalog.errors import CatalogError
    from workers.settings import get_settings

    try:
        return load_catalog(get_settings().catalog_dir)
    except CatalogError as exc:
        _fail(f"cannot load the model catalog: {exc}")


def _canonical(catalog: Any, name: str) -> str:
    """Canonical deployable id for an id or alias; raises LookupError/ValueError with a message."""
    if hasattr(catalog, "model"):
        return str(catalog.model(name).id)
    if hasattr(catalog, "resolve_model_id"):
        name = catalog.resolve_model_id(name)
    ids = {m.id for m in catalog.deployable_models()}
    if name not in ids:
        raise LookupError(f"unknown model {name!r}")
    return name


def _resolve_ids(catalog: Any, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = _canonical(catalog, name)
        except Exception as exc:  # CatalogError, LookupError: all mean "not a deployable model"
            _fail(str(exc) if str(exc) else f"unknown model {name!r}")
    return out


@app.command("make-trace")
def make_trace(
    out: Path = typer.Option(..., "--out", help="CSV file to write."),
    family: str = typer.Option(
        "mixed", "--family", help="mixed, periodic, diurnal, bursty or rare."
    ),
    days: float = typer.Option(7.0, "--days", help=f"Simulated days (at most {MAX_TRACE_DAYS})."),
    seed: int = typer.Option(42, "--seed", help="Random seed (same seed, same trace)."),
    models: list[str] | None = typer.Option(
        None, "--models", help="Model ids or aliases (repeat or comma-separate); default all."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a seeded synthetic request trace (model_id,arrival_ts,duration_s)."""
    from models_catalog import tracegen

    if family not in tracegen.ALL_FAMILIES:
        _fail(f"unknown family {family!r}; expected one of {', '.join(tracegen.ALL_FAMILIES)}")
    if not 0 < days <= MAX_TRACE_DAYS:  # also refuses nan and inf
        _fail(f"--days must be more than 0 and at most {MAX_TRACE_DAYS} (got {days})")
    catalog = _load_catalog()
    only = None
    if models:
        names = [n.strip() for item in models for n in item.split(",") if n.strip()]
        only = sorted(set(_resolve_ids(catalog, names).values()))
    tms = tracegen.trace_models_from_catalog(catalog, only)
    rows = tracegen.generate_trace(tms, family, days=days, seed=seed)
    try:
        tracegen.write_trace_csv(rows, out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    families = tracegen.assign_families([m.model_id for m in tms], family, seed)
    per_family = Counter(families.values())
    per_model = Counter(r.model_id for r in rows)
    summary = {
        "out": str(out),
        "family": family,
        "days": days,
        "seed": seed,
        "models": len(tms),
        "requests": len(rows),
        "models_per_family": dict(sorted(per_family.items())),
        "requests_per_model": dict(sorted(per_model.items())),
        "family_of_model": dict(sorted(families.items())),
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"wrote [bold]{len(rows)}[/] requests for {len(tms)} models ({family}, {days:g} days, "
        f"seed {seed}) to {esc(out)}",
        highlight=False,
        soft_wrap=True,
    )
    if family == "mixed":
        console.print(
            "families: " + ", ".join(f"{k} {v}" for k, v in sorted(per_family.items())),
            highlight=False,
            soft_wrap=True,
        )


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@app.command("thermal-policy")
def thermal_policy(
    trace: Path = typer.Option(..., "--trace", help="Trace CSV (model_id,arrival_ts,duration_s)."),
    warmup_seconds: int | None = typer.Option(
        None, "--warmup-seconds", help="Override every model's warm-up time (seconds)."
    ),
    concurrency: int = typer.Option(
        4, "--concurrency", help="Requests one instance serves at once."
    ),
    deadline_minutes: float = typer.Option(
        15.0, "--deadline-minutes", help="A request waiting longer than this fails."
    ),
    scale_in_seconds: float = typer.Option(
        DEFAULT_SCALE_IN_S,
        "--scale-in-seconds",
        help="How long a scale-in keeps the endpoint Updating (removed instances bill until "
        "it ends); an assumption, 0 = instant.",
    ),
    delete_seconds: float = typer.Option(
        DEFAULT_DELETE_S,
        "--delete-seconds",
        help="How long a scale to zero keeps the endpoint Deleting (billed; a create waits "
        "for it); an assumption, 0 = instant.",
    ),
    per_model: bool = typer.Option(False, "--per-model", help="Also show each model."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Replay a trace through always-warm, fixed (seed COLD) and automatic policies."""
    from models_catalog import simulator, tracegen

    if warmup_seconds is not None and warmup_seconds < 0:
        _fail("--warmup-seconds must be >= 0")
    if concurrency < 1:
        _fail("--concurrency must be >= 1")
    if not deadline_minutes > 0:
        _fail("--deadline-minutes must be positive")
    for flag, value in (
        ("--scale-in-seconds", scale_in_seconds),
        ("--delete-seconds", delete_seconds),
    ):
        if not 0 <= value <= MAX_TEARDOWN_S:  # also refuses nan
            _fail(f"{flag} must be between 0 and {MAX_TEARDOWN_S:g} (got {value})")
    try:
        rows = tracegen.read_trace_csv(trace)
    except tracegen.TraceFormatError as exc:
        _fail(f"{trace}: {exc}")
    if not rows:
        _fail(f"{trace}: the trace has no requests")
    catalog = _load_catalog()
    first_line: dict[str, int] = {}
    for r in rows:
        first_line.setdefault(r.model_id, r.line)  # the source line (blank lines counted)
    canonical: dict[str, str] = {}
    for name, line in first_line.items():
        try:
            canonical[name] = _canonical(catalog, name)
        except Exception as exc:
            # the catalog's message repeats the whole name: keep a long one out of it
            msg = str(exc) if len(name) <= MAX_ECHO_CHARS else ""
            _fail(f"{trace}: line {line}: {msg or f'unknown model {quote_field(name)}'}")
    if any(k != v for k, v in canonical.items()):
        rows = [
            tracegen.TraceRow(canonical[r.model_id], r.arrival_ts, r.duration_s, r.line)
            for r in rows
        ]
    specs = simulator.specs_from_catalog(
        catalog, warmup_override=warmup_seconds, concurrency_per_instance=concurrency
    )
    result = simulator.run_benchmark(
        rows,
        specs,
        deadline_s=deadline_minutes * 60.0,
        scale_in_s=scale_in_seconds,
        delete_s=delete_seconds,
    )
    data = result.to_dict(per_model=per_model)
    data["trace"] = str(trace)
    data["config"] = {
        "warmup_seconds_override": warmup_seconds,
        "concurrency_per_instance": concurrency,
        "deadline_s": deadline_minutes * 60.0,
        "scale_in_s": scale_in_seconds,
        "delete_s": delete_seconds,
        "fixed_check_interval_s": 300,
    }
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_tables(result, data, per_model)


def _print_tables(result: Any, data: dict[str, Any], per_model: bool) -> None:
    pols = result.policies
    first = next(iter(pols.values()))
    table = Table(
        title=f"Thermal policies: {len(result.model_ids)} models, "
        f"{result.horizon_s / 86400:g} days, {first.requests:,} requests"
    )
    table.add_column("metric")
    for name in pols:
        table.add_column(name, justify="right")
    ratios = data["ratios_automatic_vs_fixed"]
    has_ratio = bool(ratios)
    if has_ratio:
        table.add_column("auto/fixed", justify="right")
    waits = {name: pol.wait_percentiles() for name, pol in pols.items()}
    metrics: list[tuple[str, Any, str | None]] = [
        ("billed GPU cost", lambda p: f"${p.cost:,.2f}", "cost"),
        ("billed instance-h", lambda p: f"{p.billed_hours:,.1f}", None),
        ("idle instance-h", lambda p: f"{p.idle_hours:,.1f}", "idle_instance_hours"),
        ("  of which warm-up", lambda p: f"{p.warmup_hours:,.1f}", None),
        ("  of which scale-in/delete", lambda p: f"{p.teardown_hours:,.1f}", None),
        ("cold starts", lambda p: f"{p.cold_starts:,}", "cold_starts"),
        ("cold-start fraction", lambda p: f"{p.cold_start_fraction:.2%}", None),
        ("added wait p50 (s)", lambda p: f"{waits[p.policy]['p50']:.1f}", None),
        ("added wait p95 (s)", lambda p: f"{waits[p.policy]['p95']:.1f}", None),
        ("added wait p99 (s)", lambda p: f"{waits[p.policy]['p99']:.1f}", None),
        ("failed requests", lambda p: f"{p.failed:,}", None),
    ]
    for label, fmt, ratio_key in metrics:
        cells = [label, *(fmt(p) for p in pols.values())]
        if has_ratio:
            cells.append(_fmt_ratio(ratios.get(ratio_key)) if ratio_key else "")
        table.add_row(*cells)
    console.print(table)
    if per_model:
        pm = DataTable(title="Per model (fixed -> automatic)")
        for col in ("model", "requests", "cold fixed", "cold auto", "idle-h fixed", "idle-h auto"):
            pm.add_column(col, justify="left" if col == "model" else "right")
        fixed = {m.model_id: m for m in result.policies["fixed"].models}
        auto = {m.model_id: m for m in result.policies["automatic"].models}
        for mid in result.model_ids:
            f, a = fixed[mid], auto[mid]
            pm.add_row(
                mid,
                str(f.requests),
                str(f.cold_starts),
                str(a.cold_starts),
                f"{f.idle_s / 3600:.1f}",
                f"{a.idle_s / 3600:.1f}",
            )
        console.print(pm)


@app.command("throughput")
def throughput(
    jobs: int = typer.Option(200, "--jobs", min=1, help="Workflows per run."),
    concurrency: int = typer.Option(
        20, "--concurrency", min=1, help="At most this many in flight."
    ),
    rounds: int = typer.Option(
        3, "--rounds", min=1, help="Alternate bare and job batches this many times."
    ),
    memory_rounds: int = typer.Option(
        2,
        "--memory-rounds",
        min=0,
        help="Untimed batches per side measuring memory afterwards (0: none).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Service-job throughput and memory against bare workflows with the same number of no-op
    activities."""
    import asyncio
    import json

    from workers.bench_throughput import run_benchmark

    out = asyncio.run(run_benchmark(jobs, concurrency, rounds=rounds, memory_rounds=memory_rounds))
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    console = Console()
    console.print(
        _sides_table(
            f"{jobs} workflows, concurrency {concurrency}, "
            f"{out['activities_per_workflow']} activities each",
            ["workflows/s", "p50 s", "p95 s", "p99 s", "wall s"],
            {
                name: [
                    f"{f['per_second']:.1f}",
                    f"{f['latency_p50_s']:.3f}",
                    f"{f['latency_p95_s']:.3f}",
                    f"{f['latency_p99_s']:.3f}",
                    f"{f['seconds']:.1f}",
                ]
                for name, f in ((n, out[n]) for n in ("project", "bare"))
            },
        )
    )
    console.print(
        f"ratio jobs/bare = {out['ratio']:.3f} (goal >= 0.7); usage rows: "
        f"{out['usage_rows']['model_invocation']} model invocations + "
        f"{out['usage_rows']['service_charge']} charges for {out['invocations']} jobs"
    )
    memory = out.get("memory")
    if memory:
        console.print(
            _sides_table(
                f"memory: {memory['project']['batches']} untimed batch(es) of "
                f"{memory['project']['workflows_per_batch']} per side",
                ["Python peak MiB", "KiB per in-flight workflow", "retained MiB", "peak RSS MiB"],
                {
                    name: [
                        f"{f['python_peak_mib']:.2f}",
                        f"{f['python_peak_kib_per_in_flight']:.0f}",
                        f"{f['python_retained_mib']:.2f}",
                        "-" if f["peak_rss_mib"] is None else f"{f['peak_rss_mib']:.0f}",
                    ]
                    for name, f in ((n, memory[n]) for n in ("project", "bare"))
                },
            )
        )
        console.print(f"Python peak ratio jobs/bare = {memory['python_peak_ratio']}")


def _sides_table(title: str, headers: list[str], cells: dict[str, list[str]]) -> Any:
    """One row per side of the throughput benchmark ("project": the jobs, "bare")."""
    from rich.table import Table

    table = Table("run", *headers, title=title)
    for name, row in cells.items():
        table.add_row("perception/detect jobs" if name == "project" else "bare workflows", *row)
    return table
