"""Inputs and results of the LLM workflows and activities (pure pydantic; client, worker and tests
import it freely).

`LLMRequest` is deliberately lenient (no validators that could fail while Temporal decodes the
workflow input, which would fail the workflow *task* and retry forever): the workflow validates
it and fails with a non-retryable `ApplicationError` of one of the types below instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

# The request id rules of jobs, for LLM requests too (re-exported for the LLM client).
from workflows.service_types import MAX_REQUEST_ID_LENGTH, request_id_problem  # noqa: F401

LLMKind = Literal["chat", "completion", "embedding"]
KINDS: tuple[str, ...] = ("chat", "completion", "embedding")

# ApplicationError types. All non-retryable: the request itself is wrong or cannot be served.
ERR_INVALID_REQUEST = "InvalidLLMRequest"
ERR_EMPTY_PROMPT = "EmptyPrompt"
ERR_PAYLOAD_TOO_LARGE = "PayloadTooLarge"
ERR_UNKNOWN_MODEL = "UnknownModel"
ERR_UNKNOWN_TENANT = "UnknownTenant"
ERR_TIER_TOO_LOW = "TierTooLow"
ERR_CONTEXT_WINDOW = "ContextWindowExceeded"
ERR_MODEL_UNAVAILABLE = "ModelUnavailable"  # OFF, failed, unconfigured provider, wrong task ...
ERR_NO_MODEL = "NoModelAvailable"  # automatic selection found nothing
ERR_PROVIDER_REJECTED = "ProviderRejected"  # the provider refused the request (4xx, auth)
ERR_NO_DEPLOYMENT = "NoDeployment"  # the chosen model has no reachable deployment right now
ERR_METERING_FAILED = "MeteringFailed"  # the usage row cannot be built (e.g. a key too long)
# The tenant's request id belongs to another workflow (the tenant spelled another way); raised
# non-retryable, so not in the list below (which travels in every recorded retry policy).
ERR_ALREADY_RUNNING = "AlreadyRunning"
ERR_ALREADY_ANSWERED = "AlreadyAnswered"  # ... which answered it (and was charged)
# A table the migrations create is missing (`radiant db upgrade` not run): raised non-retryable.
ERR_NOT_MIGRATED = "DatabaseNotMigrated"

NON_RETRYABLE_LLM_ERRORS = [
    ERR_INVALID_REQUEST,
    ERR_EMPTY_PROMPT,
    ERR_PAYLOAD_TOO_LARGE,
    ERR_UNKNOWN_MODEL,
    ERR_UNKNOWN_TENANT,
    ERR_TIER_TOO_LOW,
    ERR_CONTEXT_WINDOW,
    ERR_MODEL_UNAVAILABLE,
    ERR_NO_MODEL,
    ERR_PROVIDER_REJECTED,
]

# Inputs travel in workflow history; keep them well under Temporal's 2 MB payload limit.
MAX_INPUT_BYTES = 512 * 1024
# Embedding vectors come back through the history too: 16 inputs of 3072 dimensions (the
# largest catalog model) are ~1 MiB of JSON, under Temporal's 2 MiB per payload.
MAX_EMBEDDING_INPUTS = 16


def llm_workflow_id(tenant: str, kind: str, request_id: str) -> str:
    """One request per (tenant, kind, request id): another tenant's request id never returns
    this tenant's answer."""
    return f"llm/{tenant}/{kind}/{request_id}"


class LLMRequest(BaseModel):
    """One chat, completion or embedding request (seed 003 client shape)."""

    request_id: str
    tenant: str  # tenant name or id
    app_id: str = "radiant"
    environment: str = "dev"
    user_id: str = "anonymous"
    model: str | None = None  # id or alias; None: the selector chooses
    messages: list[dict[str, Any]] = Field(default_factory=list)  # chat
    prompt: str | None = None  # completion
    input: list[str] = Field(default_factory=list)  # embedding
    max_tokens: int | None = None
    temperature: float | None = None
    prefer_hosting: str = "any"  # self_hosted (required: waits for a cold model) | external | any
    required_capabilities: list[str] = Field(default_factory=list)
    require_hipaa: bool = False
    allow_fallbacks: bool = True  # the catalog's LiteLLM fallbacks (gpt-4o -> claude, ...)
    warmup_deadline_seconds: float | None = None  # how long a cold self-hosted model may take


class TokenUsage(BaseModel):
    input_tokens: int = 0  # excluding cached input tokens and prompt-cache writes
    output_tokens: int = 0
    cached_input_tokens: int = 0  # prompt-cache reads
    estimated: bool = False  # the provider reported no usage: LiteLLM's token count instead
    # Prompt-cache writes (Anthropic's cache_creation_input_tokens), priced at the model's cache
    # write rate. 0 in results recorded before they were split out (then inside input_tokens).
    cache_write_input_tokens: int = 0
    cache_write_1h_input_tokens: int = 0  # of the writes above, those to a 1-hour cache

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cached_input_tokens
            + self.cache_write_input_tokens
        )


class LLMPlan(BaseModel):
    """What `llm.prepare` decided: who the tenant is and which model serves."""

    tenant_id: str
    tenant_tier: int
    model_id: str  # serves this request
    hosting: Literal["self_hosted", "external"]
    provider_id: str
    wait_for_warm_up: bool  # model_id is self-hosted and not running: hold until it is
    warm_up: str | None = None  # cold self-hosted model to warm in the background
    prompt_tokens: int  # LiteLLM's token estimate of the input
    explanation: list[str] = Field(default_factory=list)
    # The model's catalog fallbacks this request may use (same checks as the choice); None in
    # plans recorded before: the catalog's fallbacks.
    fallbacks: list[str] | None = None


class LLMCallInput(BaseModel):
    kind: LLMKind
    model_id: str
    app_id: str
    environment: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    prompt: str | None = None
    input: list[str] = Field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    allow_fallbacks: bool = True
    request_id: str = ""  # LiteLLM call metadata, for logging callbacks (never sent upstream)
    fallbacks: list[str] | None = None  # LLMPlan.fallbacks


class LLMCost(BaseModel):
    """The catalog price of a call, ledger precision. External: billed = cost x (1 + markup)."""

    billed: Decimal
    internal_cost: Decimal | None  # provider cost (external); None for self-hosted (its GPU
    # time is metered as endpoint uptime, DESIGN 2)
    unit: str  # "token" | "request"
    units: Decimal
    unit_price: Decimal | None = None
    markup: Decimal
    litellm_cost: Decimal | None = None  # LiteLLM's own estimate (cost map), for cross-checks


class LLMCallResult(BaseModel):
    model_id: str  # the catalog model that actually served (differs from the input on fallback)
    served_by: str  # the LiteLLM deployment id (endpoint / instance / provider route)
    provider_id: str
    hosting: Literal["self_hosted", "external"]
    fallback_used: bool
    content: str | None = None
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None
    usage: TokenUsage
    cost: LLMCost
    latency_ms: int


class MeterInput(BaseModel):
    tenant_id: str
    workflow_id: str
    step: str  # with workflow_id: the ledger idempotency key (never the attempt)
    kind: LLMKind
    request_id: str
    app_id: str
    environment: str
    requested_model: str | None
    result: LLMCallResult
    # Set: the call will not be charged (the request was cancelled while it ran): its cost is
    # recorded billed 0 with this outcome, keyed by this run, and the request's claim is left
    # open (activities/llm/ledger.py `record_unbilled_llm_call`).
    unbilled: Literal["cancelled"] | None = None


class MeterResult(BaseModel):
    idempotency_key: str
    inserted: bool  # False: a row with this key existed (a retry), nothing was written
    # Another workflow took the request over (this one had stopped running): nothing was
    # written, that workflow answers and charges the request.
    superseded: bool = False


class LLMResponse(BaseModel):
    """What the client gets back (seed 003: content, usage, finish_reason; plus who served)."""

    request_id: str
    workflow_id: str
    kind: LLMKind
    model: str  # the catalog model that served
    requested_model: str | None
    served_by: str
    provider_id: str
    hosting: Literal["self_hosted", "external"]
    fallback_used: bool
    waited_for_warm_up: bool = False
    warming_in_background: str | None = None
    content: str | None = None
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None
    usage: TokenUsage
    billed: Decimal
    internal_cost: Decimal | None
    selection: list[str] = Field(default_factory=list)


class WarmUpHold(BaseModel):
    """Hold a self-hosted model warm for one request (update-with-start on its thermal workflow)."""

    app_id: str
    environment: str
    model_id: str
    lease_id: str
    requester: str
    deadline_seconds: float | None = None
    # Outlives the call with its retries (5 min x 5 attempts + backoff); released right after.
    lease_seconds: float = 1800.0


class WarmUpHoldResult(BaseModel):
    endpoint_name: str
    ready: bool
    state: str
