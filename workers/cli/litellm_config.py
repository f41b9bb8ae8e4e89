"""`radiant litellm config [--out deploy/litellm/config.yaml]`: the LiteLLM proxy's config,
generated from the catalog (activities/llm/proxy_config.py). docker-compose mounts
`./deploy/litellm/config.yaml` into the proxy; regenerate it whenever the catalog changes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from activities.llm.proxy_config import build_proxy_config, render_proxy_config
from workers.cli.common import served_pair
from workers.cli.select import die, load_catalog_or_die
from workers.settings import get_settings

app = typer.Typer(no_args_is_help=True)


@app.command("config")
def config(
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    self_hosted: Annotated[
        bool,
        typer.Option(
            "--self-hosted/--no-self-hosted",
            help="Include the self-hosted text LLMs as sagemaker/<endpoint> of --app/--env.",
        ),
    ] = True,
    app_id: Annotated[
        str | None, typer.Option("--app", help="App id (default RADIANT_APP_ID).")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Environment (default RADIANT_ENVIRONMENT).")
    ] = None,
) -> None:
    """Write the LiteLLM proxy YAML generated from the catalog."""
    settings = get_settings()
    catalog = load_catalog_or_die(settings)
    scope = served_pair(settings, app_id, env) if self_hosted else None
    try:
        text = render_proxy_config(
            build_proxy_config(catalog, self_hosted=scope, aws_region=settings.aws_region)
        )
    except ValueError as exc:  # an app/env that yields no valid endpoint name
        die(str(exc))
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.exists() and out.is_dir():
        die(f"--out {out} is a directory; give a file path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)  # the proxy never reads half a file
    except OSError as exc:
        die(f"cannot write {out}: {exc.strerror or exc}")
    count = text.count("\n- model_name: ")
    typer.echo(f"wrote {out} ({count} deployments)", err=True)
