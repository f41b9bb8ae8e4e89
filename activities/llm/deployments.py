"""LiteLLM deployments generated from the catalog (never a hand-kept list).

A deployment is one entry of a LiteLLM `model_list`: `model_name` is the router group (our catalog
model id, so fallbacks and selection speak the same names), `litellm_params` is how to call it and
`model_info.id` is a unique deployment id that LiteLLM reports back as `_hidden_params["model_id"]`
after a call, which is how the activity records who actually served.

- External models: `litellm_route` + provider `api_base` + the model's extra `litellm_params`;
  only providers LiteLLM has an adapter for. The key is either the value from the worker's
  environment (in-process Router) or `os.environ/<VAR>` (proxy config, resolved by the proxy).
- Self-hosted llm_text models, sagemaker backend: `sagemaker/<endpoint name>` (TGI format).
- Self-hosted llm_text models, local backend: the stand-in's model servers speak the OpenAI API
  under `/v1`, so each running instance is one `openai/<model id>` deployment with its
  `api_base`; LiteLLM balances across instances of the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from activities.backends.base import endpoint_name as make_endpoint_name
from models_catalog.catalog import Catalog
from models_catalog.external import ExternalModel
from models_catalog.types import ModelCategory, SelfHostedModel

KeyStyle = Literal["value", "env_ref"]
LOCAL_API_KEY = "radiant-local-stand-in"  # the OpenAI client insists on some key

Deployment = dict[str, Any]


def llm_self_hosted(catalog: Catalog) -> list[SelfHostedModel]:
    """Self-hosted models LiteLLM can call: the text LLMs (TGI containers)."""
    return [m for m in catalog.models.values() if m.category == ModelCategory.LLM_TEXT]


def external_deployment(
    catalog: Catalog,
    model: ExternalModel,
    *,
    key_style: KeyStyle,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Deployment | None:
    """The deployment of an external model, or None when LiteLLM cannot call its provider."""
    provider = catalog.providers[model.provider_id]
    if provider.litellm_provider is None:
        return None
    params: dict[str, Any] = {"model": model.litellm_route}
    if key_style == "env_ref":
        params["api_key"] = f"os.environ/{provider.api_key_env}"
    else:
        key = (environ or {}).get(provider.api_key_env, "").strip()
        if not key:
            return None  # unconfigured: never routable in-process
        params["api_key"] = key
    if provider.api_base:
        params["api_base"] = provider.api_base
    params.update(model.litellm_params)
    params.update(overrides or {})
    info: dict[str, Any] = {"id": model.id, "provider": provider.id, "hosting": "external"}
    if model.litellm_mode:
        info["mode"] = model.litellm_mode
    return {"model_name": model.id, "litellm_params": params, "model_info": info}


def sagemaker_deployment(
    model: SelfHostedModel,
    endpoint: str,
    *,
    region: str | None,
    overrides: Mapping[str, Any] | None = None,
) -> Deployment:
    params: dict[str, Any] = {"model": f"sagemaker/{endpoint}"}
    if region:
        params["aws_region_name"] = region
    params.update(overrides or {})
    return {
        "model_name": model.id,
        "litellm_params": params,
        "model_info": {
            "id": f"{model.id}@{endpoint}",
            "provider": "self_hosted",
            "hosting": "self_hosted",
            "mode": "chat",
        },
    }


def local_deployments(
    model: SelfHostedModel,
    endpoint: str,
    instances: Iterable[tuple[str, str]],
    overrides: Mapping[str, Any] | None = None,
) -> list[Deployment]:
    """One deployment per running stand-in instance: (instance id, `http://host:port/v1`)."""
    out = []
    for instance_id, api_base in instances:
        params: dict[str, Any] = {
            "model": f"openai/{model.id}",
            "api_base": api_base,
            "api_key": LOCAL_API_KEY,
        }
        params.update(overrides or {})
        out.append(
            {
                "model_name": model.id,
                "litellm_params": params,
                "model_info": {
                    "id": f"{model.id}@{endpoint}/{instance_id}",
                    "provider": "self_hosted",
                    "hosting": "self_hosted",
                    "mode": "chat",
                },
            }
        )
    return out


def local_instances(data_dir: Path, endpoint: str) -> list[tuple[str, str]]:
    """Serving instances of a local stand-in endpoint, from the record the backend keeps
    (`data_dir/local_endpoints/<name>.json`): the same rule the backend's own invoke uses (while
    a config update runs, the previous fleet serves)."""
    from activities.backends.local import LocalRecord

    path = Path(data_dir) / "local_endpoints" / f"{endpoint}.json"
    try:
        rec = LocalRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return []
    if rec.status not in ("InService", "Updating"):
        return []
    serving = rec.previous_spec.config_hash() if rec.previous_spec else rec.config_hash
    return [
        (i.instance_id, f"http://127.0.0.1:{i.port}/v1")
        for i in rec.instances
        if i.port and i.config_hash == serving
    ]


def fallbacks_for(catalog: Catalog, available: Iterable[str]) -> list[dict[str, list[str]]]:
    """The catalog's fallbacks in LiteLLM's `[{name: [names]}]` form, limited to groups present
    (a fallback to an unconfigured provider would only add a failing hop)."""
    have = set(available)
    out = []
    for model in catalog.external_models.values():
        if model.id in have and model.fallbacks:
            targets = [t for t in model.fallbacks if t in have]
            if targets:
                out.append({model.id: targets})
    return out


def self_hosted_endpoint(app_id: str, environment: str, model_id: str) -> str:
    return make_endpoint_name(app_id, environment, model_id)


def external_model_list(
    catalog: Catalog,
    *,
    key_style: KeyStyle,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    modes: Iterable[str] | None = None,
) -> list[Deployment]:
    """Every callable, non-deprecated external model (of the given LiteLLM modes)."""
    wanted = set(modes) if modes is not None else None
    out = []
    for model in catalog.external_models.values():
        if not model.available or catalog.providers[model.provider_id].status != "active":
            continue
        if wanted is not None and model.litellm_mode not in wanted:
            continue
        dep = external_deployment(
            catalog,
            model,
            key_style=key_style,
            environ=environ,
            overrides=(overrides or {}).get(model.id),
        )
        if dep is not None:
            out.append(dep)
    return out
