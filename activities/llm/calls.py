"""One LiteLLM call through a Router, and what came back.

Temporal owns retries (`num_retries=0`, no cooldowns: a retried activity must not find its
deployment benched by an earlier attempt). The Router still applies the catalog's *fallbacks*
(gpt-4o -> claude-sonnet-4 -> gemini-2.0-flash), because the activity records which deployment
served (`_hidden_params["model_id"]` is the deployment's `model_info.id`) and meters that model.

LiteLLM exceptions become `ApplicationError`s: the caller's or provider's refusal (4xx, auth,
context window) is non-retryable; outages, timeouts and rate limits are retryable.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.llm.deployments import Deployment
from activities.llm.types import (
    ERR_CONTEXT_WINDOW,
    ERR_PROVIDER_REJECTED,
    LLMCallInput,
    TokenUsage,
)

ERR_PROVIDER_UNAVAILABLE = "ProviderUnavailable"  # retryable
DEFAULT_TIMEOUT_S = 120.0
ESTIMATE_TOKENIZER = "gpt-4o"  # counts tokens when a provider reports none


@dataclass(frozen=True)
class RawOutcome:
    deployment_id: str
    content: str | None
    embeddings: list[list[float]] | None
    finish_reason: str | None
    usage: TokenUsage
    reported_cost: Any
    latency_ms: int


class RouterCache:
    """Routers keyed by their exact model list: building one per call is wasteful, and a changed
    list (a local instance restarted on a new port, a key rotated) gets a fresh Router."""

    def __init__(self, size: int = 32, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.size = size
        self.timeout = timeout
        self._routers: OrderedDict[str, Any] = OrderedDict()

    def get(self, model_list: list[Deployment], fallbacks: list[dict[str, list[str]]]) -> Any:
        key = hashlib.sha256(
            json.dumps([model_list, fallbacks], sort_keys=True, default=str).encode()
        ).hexdigest()
        router = self._routers.get(key)
        if router is None:
            import litellm
            from litellm import Router

            # The OpenAI embedding handler reads `max_retries or DEFAULT_MAX_RETRIES`: a 0
            # (ours) became 2, so each attempt called the provider 3 times. Temporal retries.
            litellm.DEFAULT_MAX_RETRIES = 0  # type: ignore[misc]  # Final, read at call time
            router = Router(
                model_list=model_list,
                fallbacks=fallbacks,
                num_retries=0,
                disable_cooldowns=True,
                timeout=self.timeout,
            )
            self._routers[key] = router
            while len(self._routers) > self.size:
                self._routers.popitem(last=False)
        self._routers.move_to_end(key)
        return router


async def invoke(router: Any, inp: LLMCallInput) -> RawOutcome:
    """Call the Router for `inp.model_id` (a model group) and normalise the response."""
    opts: dict[str, Any] = {}
    if inp.max_tokens is not None:
        opts["max_tokens"] = inp.max_tokens
    if inp.temperature is not None:
        opts["temperature"] = inp.temperature
    if inp.request_id:
        opts["metadata"] = {"request_id": inp.request_id}
    started = time.monotonic()
    try:
        if inp.kind == "chat":
            resp = await router.acompletion(model=inp.model_id, messages=inp.messages, **opts)
        elif inp.kind == "completion":
            resp = await router.atext_completion(model=inp.model_id, prompt=inp.prompt, **opts)
        else:
            resp = await router.aembedding(model=inp.model_id, input=inp.input)
    except ApplicationError:
        raise
    except Exception as exc:  # LiteLLM raises its own hierarchy (and plain ValueErrors)
        raise as_application_error(exc) from exc
    latency = int((time.monotonic() - started) * 1000)
    hidden = getattr(resp, "_hidden_params", {}) or {}
    deployment_id = str(hidden.get("model_id") or "")
    content = _content(inp.kind, resp)
    usage = _usage(getattr(resp, "usage", None))
    if usage.total == 0:  # no usage block (or zeros): billed on a count, not for free
        usage = estimated_usage(inp, content)
    return RawOutcome(
        deployment_id=deployment_id,
        content=content,
        embeddings=_embeddings(resp) if inp.kind == "embedding" else None,
        finish_reason=_finish_reason(inp.kind, resp),
        usage=usage,
        reported_cost=hidden.get("response_cost"),
        latency_ms=latency,
    )


def _content(kind: str, resp: Any) -> str | None:
    if kind == "embedding" or not getattr(resp, "choices", None):
        return None
    choice = resp.choices[0]
    if kind == "chat":
        return getattr(choice.message, "content", None)
    return getattr(choice, "text", None)


def _finish_reason(kind: str, resp: Any) -> str | None:
    if kind == "embedding" or not getattr(resp, "choices", None):
        return None
    return getattr(resp.choices[0], "finish_reason", None)


def _embeddings(resp: Any) -> list[list[float]]:
    out = []
    for row in resp.data:
        vec = row["embedding"] if isinstance(row, dict) else row.embedding
        out.append([float(x) for x in vec])
    return out


def estimated_usage(inp: LLMCallInput, content: str | None) -> TokenUsage:
    """LiteLLM's count (gpt-4o tokenizer) of what went and came back, for a response that
    reports no usage."""
    from litellm import token_counter

    try:
        if inp.kind == "chat":
            sent = token_counter(model=ESTIMATE_TOKENIZER, messages=inp.messages)
        elif inp.kind == "completion":
            sent = token_counter(model=ESTIMATE_TOKENIZER, text=inp.prompt or "")
        else:
            sent = sum(token_counter(model=ESTIMATE_TOKENIZER, text=t) for t in inp.input)
        got = token_counter(model=ESTIMATE_TOKENIZER, text=content) if content else 0
    except Exception:  # noqa: BLE001 - the provider answered: never fail (and re-pay) here
        # about 4 characters a token
        sent = len(json.dumps([inp.messages, inp.prompt, inp.input], default=str)) // 4
        got = len(content or "") // 4
    return TokenUsage(input_tokens=int(sent), output_tokens=int(got), estimated=True)


def _usage(usage: Any) -> TokenUsage:
    """Split LiteLLM's `Usage` into plain input, cache reads, cache writes and output.

    `prompt_tokens` INCLUDES both cache reads and cache writes (LiteLLM 1.108.14):
    Anthropic adds `cache_creation_input_tokens` and `cache_read_input_tokens` to its
    `input_tokens` (litellm/llms/anthropic/chat/transformation.py:2816-2821) and Bedrock Converse
    does the same (litellm/llms/bedrock/chat/converse_transformation.py:2687-2689); both set
    `prompt_tokens_details.cached_tokens` (reads) and `.cache_creation_tokens` (writes), which
    `PromptTokensDetailsWrapper` mirrors to `.cache_write_tokens` (litellm/types/utils.py:
    1870-1875); `Usage(cache_creation_input_tokens=...)` fills the same field
    (litellm/types/utils.py:2021-2027). LiteLLM's own cost does the same subtraction
    (litellm/litellm_core_utils/llm_cost_calc/utils.py:1480-1484). Writes to Anthropic's 1-hour
    cache are in `.cache_creation_token_details.ephemeral_1h_input_tokens` (transformation.py:
    2771-2776), priced apart by LiteLLM too (llm_cost_calc/utils.py:910-930).
    """
    if usage is None:
        return TokenUsage()
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = _count(details, "cached_tokens")
    written = (
        _count(details, "cache_write_tokens")
        or _count(details, "cache_creation_tokens")
        or _count(usage, "cache_creation_input_tokens")
    )
    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    breakdown = getattr(details, "cache_creation_token_details", None)
    written_1h = min(_count(breakdown, "ephemeral_1h_input_tokens"), written)
    return TokenUsage(
        input_tokens=prompt - cached - written,
        output_tokens=completion,
        cached_input_tokens=cached,
        cache_write_input_tokens=written,
        cache_write_1h_input_tokens=written_1h,
    )


def _count(obj: Any, name: str) -> int:
    value = getattr(obj, name, 0) if obj is not None else 0
    return max(int(value), 0) if isinstance(value, int | float) and value else 0


# The request (or its credentials) is wrong: retrying the same call cannot succeed.
_REJECTED = (
    "AuthenticationError",
    "BadRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "ContentPolicyViolationError",
    "UnprocessableEntityError",
    "UnsupportedParamsError",
    "InvalidRequestError",
    "BudgetExceededError",
)


def as_application_error(exc: BaseException) -> ApplicationError:
    names = {cls.__name__ for cls in type(exc).__mro__}
    text, name = str(exc)[:1000], type(exc).__name__
    message = text if name in text else f"{name}: {text}"  # LiteLLM's own text names its class
    if "ContextWindowExceededError" in names:
        return ApplicationError(message, type=ERR_CONTEXT_WINDOW, non_retryable=True)
    if names & set(_REJECTED):
        return ApplicationError(message, type=ERR_PROVIDER_REJECTED, non_retryable=True)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 425, 429):
        # A generic APIError (or a guardrail) carrying a client error: the same request is
        # refused again.
        return ApplicationError(message, type=ERR_PROVIDER_REJECTED, non_retryable=True)
    # Rate limits, timeouts, 5xx, connection errors, "no deployments available": try again later.
    return ApplicationError(message, type=ERR_PROVIDER_UNAVAILABLE)
