"""`radiant llm chat|complete|embed`: one request through the LLM workflows (needs a worker).

Each command starts a workflow `llm/{tenant}/{kind}/{request_id}` and waits for its answer; the
same `--request-id` twice (same tenant) returns the first answer without calling the provider
again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from activities.llm.types import LLMResponse
from workers.cli.common import emit_json, failure_message, note_if_no_worker
from workers.cli.select import HOSTING, die
from workers.settings import get_settings

app = typer.Typer(no_args_is_help=True)

TenantOpt = Annotated[
    str, typer.Option(envvar="RADIANT_TENANT", help="Tenant name or id (env RADIANT_TENANT).")
]
ModelOpt = Annotated[
    str | None, typer.Option(help="Model id or alias; default: the selector chooses.")
]
HostingOpt = Annotated[
    str, typer.Option(help="any | self_hosted (waits for a cold model) | external.")
]
AppOpt = Annotated[str | None, typer.Option("--app", help="App id (default RADIANT_APP_ID).")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", help="Environment (default RADIANT_ENVIRONMENT).")
]
RequestOpt = Annotated[
    str | None,
    typer.Option(
        help="Idempotency key of the request (default: new; up to 128 letters, digits, '.', "
        "'_', ':', '-'). The same tenant and request id again returns the first answer."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the whole response as JSON.")]


def _request(
    kind: str,
    tenant: str,
    model: str | None,
    app_id: str | None,
    env: str | None,
    hosting: str,
    **fields: Any,
) -> LLMResponse:
    import asyncio

    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError

    from workers.inference_client import InferenceClient
    from workers.temporal import TemporalUnavailableError, connect

    if hosting not in HOSTING:
        die(f"--hosting must be one of {', '.join(HOSTING)}, not {hosting!r}")
    if not tenant.strip():
        die("give the tenant: --tenant NAME (or RADIANT_TENANT)")
    settings = get_settings()

    async def go() -> LLMResponse:
        temporal = await connect(settings)
        await note_if_no_worker(temporal, settings.task_queue)
        client = InferenceClient(
            temporal,
            tenant=tenant,
            task_queue=settings.task_queue,
            app_id=app_id or settings.app_id,
            environment=env or settings.environment,
        )
        if kind == "chat":
            return await client.chat_completion(model, prefer_hosting=hosting, **fields)
        if kind == "completion":
            return await client.text_completion(model, prefer_hosting=hosting, **fields)
        return await client.embedding(model, prefer_hosting=hosting, **fields)

    try:
        return asyncio.run(go())
    except WorkflowFailureError as exc:
        die(failure_message(exc))
    except ValueError as exc:  # a malformed request id, refused before anything starts
        die(str(exc))
    except TemporalUnavailableError as exc:
        die(str(exc))
    except RPCError as exc:
        die(f"Temporal refused the request: {exc.message}")


def _show(resp: LLMResponse, as_json: bool) -> None:
    if as_json:
        emit_json(resp)
        return
    if resp.embeddings is not None:
        for i, vec in enumerate(resp.embeddings):
            head = ", ".join(f"{x:.4f}" for x in vec[:4])
            typer.echo(f"[{i}] dim {len(vec)}: [{head}{', ...' if len(vec) > 4 else ''}]")
    else:
        typer.echo(resp.content or "")
    notes = [
        f"model {resp.model} ({resp.hosting}, served by {resp.served_by})",
        f"{resp.usage.input_tokens}+{resp.usage.output_tokens} tokens",
        f"billed {resp.billed}",
    ]
    if resp.fallback_used:
        notes.append(f"fallback from {resp.requested_model}")
    if resp.warming_in_background:
        notes.append(f"warming {resp.warming_in_background} in the background")
    typer.echo("-- " + "; ".join(notes), err=True)


@app.command("chat")
def chat(
    message: Annotated[str, typer.Argument(help="The user message.")],
    tenant: TenantOpt = "",
    model: ModelOpt = None,
    system: Annotated[str | None, typer.Option(help="A system message first.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    hosting: HostingOpt = "any",
    app_id: AppOpt = None,
    env: EnvOpt = None,
    request_id: RequestOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chat completion."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": message}
    ]
    _show(
        _request(
            "chat",
            tenant,
            model,
            app_id,
            env,
            hosting,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            request_id=request_id,
        ),
        as_json,
    )


@app.command("complete")
def complete(
    prompt: Annotated[str, typer.Argument(help="The prompt.")],
    tenant: TenantOpt = "",
    model: ModelOpt = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    hosting: HostingOpt = "any",
    app_id: AppOpt = None,
    env: EnvOpt = None,
    request_id: RequestOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Text completion."""
    _show(
        _request(
            "completion",
            tenant,
            model,
            app_id,
            env,
            hosting,
            prompt=prompt,
            max_tokens=max_tokens,
            request_id=request_id,
        ),
        as_json,
    )


@app.command("embed")
def embed(
    texts: Annotated[list[str], typer.Argument(help="One or more texts.")],
    tenant: TenantOpt = "",
    model: ModelOpt = None,
    hosting: HostingOpt = "any",
    app_id: AppOpt = None,
    env: EnvOpt = None,
    request_id: RequestOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embeddings of the texts."""
    _show(
        _request(
            "embedding", tenant, model, app_id, env, hosting, input=texts, request_id=request_id
        ),
        as_json,
    )
