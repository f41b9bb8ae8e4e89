"""`radiant` command line: one typer app, one module per command group."""

from __future__ import annotations

import typer

from workers.cli import (
    bench,
    catalog,
    config,
    db,
    demo,
    jobs,
    litellm_config,
    llm,
    registry,
    select,
    services,
    stack,
    tenants,
    thermal,
    usage,
)

app = typer.Typer(
    no_args_is_help=True, help="RADIANT Orchestrator: durable self-hosted model orchestration."
)
app.command("config")(config.show_config)
app.add_typer(catalog.app, name="catalog", help="The model catalog (models, services, providers).")
app.add_typer(db.app, name="db", help="Database migrations.")
app.add_typer(bench.app, name="bench", help="Benchmarks.")
app.command("demo")(demo.demo)
app.command("submit")(jobs.submit)
app.add_typer(jobs.app, name="jobs", help="Service jobs: show, list, cancel.")
app.add_typer(llm.app, name="llm", help="Chat, completion and embeddings through LiteLLM.")
app.add_typer(registry.app, name="registry", help="The unified model registry and its syncs.")
app.add_typer(litellm_config.app, name="litellm", help="The LiteLLM proxy configuration.")
app.command("select")(select.select_command)
app.add_typer(services.app, name="services", help="Mid-level service states.")
app.add_typer(tenants.app, name="tenants", help="Tenants and their tiers.")
app.add_typer(usage.app, name="usage", help="Usage and margin reports from the ledger.")
app.add_typer(thermal.app, name="thermal", help="Thermal states of self-hosted models.")
app.command("watch")(thermal.watch)
stack.register(app)


def main() -> None:
    """The `radiant` console script: the typer app, then an exit that skips finalization."""
    from workers.process_exit import run_then_exit

    run_then_exit(app)


if __name__ == "__main__":
    main()
