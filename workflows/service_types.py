"""Requests and results of the mid-level service jobs (pure pydantic, shared by all sides)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, model_validator

# ApplicationError types of service jobs (all non-retryable: a retry cannot fix them).
ERR_INVALID_INPUT = "InvalidInput"  # malformed payload, wrong content type, empty, unreadable
ERR_INPUT_TOO_LARGE = "InputTooLarge"
ERR_INPUT_NOT_FOUND = "InputNotFound"
ERR_UNKNOWN_SERVICE = "UnknownService"
ERR_UNKNOWN_OPERATION = "UnknownOperation"
ERR_UNKNOWN_TENANT = "UnknownTenant"
ERR_TIER_TOO_LOW = "TierTooLow"
ERR_SERVICE_UNAVAILABLE = "ServiceUnavailable"  # disabled or offline
ERR_MODEL_UNAVAILABLE = "ModelUnavailable"  # a required model is OFF / failed / not deployable
ERR_INVALID_REQUEST_ID = "InvalidRequestId"  # empty, too long, or characters outside the set
ERR_ALREADY_CHARGED = "AlreadyCharged"  # this request id was charged by an earlier job
ERR_ALREADY_RUNNING = "AlreadyRunning"  # another job (another workflow id) runs this request id

INLINE_LIMIT_BYTES = 256 * 1024  # inline inputs travel in workflow history: keep them small


# Request ids are business keys: part of workflow ids and of ledger idempotency keys (at most
# 512 characters, '#' separates the step), so they are short and use a plain character set.
MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def request_id_problem(request_id: str) -> str | None:
    """Why `request_id` is not acceptable, or None when it is."""
    if not request_id.strip():
        return "request id is empty"
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        return (
            f"request id is {len(request_id)} characters long; at most "
            f"{MAX_REQUEST_ID_LENGTH} are allowed"
        )
    if not _REQUEST_ID.fullmatch(request_id):
        return (
            f"request id {request_id!r} may only contain letters, digits, '.', '_', ':' and '-' "
            "(and must start with a letter or digit)"
        )
    return None


def job_workflow_id(tenant: str, service: str, operation: str, request_id: str) -> str:
    """One job per (tenant, service, operation, request id): the tenant keeps request ids of
    different tenants apart."""
    return f"job/{tenant}/{service}/{operation}/{request_id}"


def job_billing_id(service: str, operation: str, request_id: str) -> str:
    """What a job's ledger keys are built from (with the tenant id as the ledger's own key
    column), independent of how the workflow id spells the tenant. The same shape as the
    workflow ids before they held the tenant, so requests charged then are still recognised."""
    return f"job/{service}/{operation}/{request_id}"


class InputRef(BaseModel):
    """Where the input is: `s3://bucket/key` (sagemaker backend), a local path (local backend),
    or small inline bytes (base64, at most INLINE_LIMIT_BYTES once decoded)."""

    uri: str | None = None
    inline_base64: str | None = None
    content_type: str | None = None  # as declared by the caller; checked against magic bytes
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputRef:
        if (self.uri is None) == (self.inline_base64 is None):
            raise ValueError("give exactly one of input.uri or input.inline_base64")
        return self


class ValidatedInput(BaseModel):
    """An input that passed every check, with what billing and invocation need to know."""

    location: str  # where the model server reads it: a local path or an s3:// URI
    content_type: str  # detected from the bytes
    size_bytes: int
    sha256: str
    units: Decimal  # billable units of the operation's unit (images, audio minutes, ...)
    details: dict[str, Any] = Field(default_factory=dict)  # e.g. width/height, duration_s


class ServiceRequest(BaseModel):
    tenant: str  # tenant name or id
    app_id: str = "radiant"
    environment: str = "dev"
    user_id: str = "anonymous"
    request_id: str
    service: str
    operation: str
    input: InputRef
    options: dict[str, Any] = Field(default_factory=dict)
    optional_models: list[str] = Field(default_factory=list)  # optional models the caller wants


class ModelCall(BaseModel):
    model_id: str
    endpoint_name: str
    mode: str  # "sync" | "async"
    output: Any = None
    units: Decimal
    internal_cost: Decimal


class ServiceResult(BaseModel):
    request_id: str
    workflow_id: str
    service: str
    operation: str
    tenant_id: str
    models_used: list[str]
    degraded: bool = False
    degraded_reason: str | None = None
    output: Any = None
    units: Decimal
    unit: str
    billed: Decimal  # what the tenant pays (service unit price x units)
    internal_cost: Decimal  # model-level prices of the models used (for margin reports)
    calls: list[ModelCall] = Field(default_factory=list)
