"""The hosting-backend interface (DESIGN section 4): what a thermal workflow needs from a place that
runs model endpoints. Two implementations: `sagemaker.SageMakerBackend` (boto3) and
`local.LocalStandInBackend` (the local stand-in for SageMaker hosting).

Both speak SageMaker's vocabulary (endpoint statuses, instance counts, error classes), so the
workflows are written once. Errors are `BackendError`s whose `code` is the Temporal
`ApplicationError.type` and whose `retryable` flag decides `non_retryable`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The error contract lives in errors.py (no pydantic, no boto3 types); re-exported here so callers
# import the whole backend contract from one module.
from activities.backends.errors import (
    ERROR_TYPES,
    NON_RETRYABLE_ERROR_TYPES,
    AccessDenied,
    AlreadyExists,
    AsyncInferenceFailed,
    BackendError,
    CapacityUnavailable,
    EndpointFailed,
    EndpointNameConflict,
    EndpointNotFound,
    EndpointNotReady,
    InvalidEndpointState,
    InvalidRequest,
    ModelError,
    ModelNotReady,
    ModelServerError,
    QuotaExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    Throttled,
    Unclassified,
    classify_client_error,
    classify_exception,
)

# --------------------------------------------------------------------------- statuses

EndpointStatus = Literal[
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "OutOfService",
    "UpdateRollbackFailed",
]
# Statuses that finish on their own: wait and ask again (DescribeEndpoint docs).
TRANSITIONAL_STATUSES: frozenset[str] = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
)
# Only these accept capacity or config changes; Failed accepts only delete.
UPDATABLE_STATUSES: frozenset[str] = frozenset({"InService"})

VARIANT_NAME = "AllTraffic"
# Tag keys shared with the activities (thermal_activities puts the same keys on the spec).
TAG_MODEL = "radiant:model"
TAG_CATEGORY = "radiant:category"
TAG_SPECIALTY = "radiant:specialty"
TAG_MANAGED_BY = "radiant:managed-by"
# Ownership tags: the reconcile deletes an orphan only if these name its app and environment.
TAG_APP = "radiant:app"
TAG_ENVIRONMENT = "radiant:environment"
MANAGED_BY = "radiant-orchestrator"  # the value of TAG_MANAGED_BY on our endpoints

# --------------------------------------------------------------------------- naming

MAX_NAME = 63
_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_BAD_CHARS = re.compile(r"[^a-z0-9-]+")


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def fit_name(name: str, limit: int = MAX_NAME) -> str:
    """Cut `name` to `limit` chars; a cut name ends in a hash of the whole so it stays unique."""
    if len(name) <= limit:
        return name
    head = name[: limit - 9].rstrip("-")
    return f"{head}-{short_hash(name)}"


def endpoint_name(app_id: str, env: str, model_id: str) -> str:
    """`radiant-{app}-{env}-{model}` made valid for SageMaker ([a-zA-Z0-9](-*[a-zA-Z0-9])*, <= 63).

    Lower-cased (SageMaker names are case-insensitive, so mixed case would alias), every run of
    other characters becomes one '-'. Too long: keep a prefix and append a stable hash of the
    full, unsanitized name, so two long names that share a prefix still differ.
    """
    parts = []
    for label, value in (("app_id", app_id), ("env", env), ("model_id", model_id)):
        clean = _BAD_CHARS.sub("-", value.lower()).strip("-")
        if not clean:
            raise ValueError(f"{label} {value!r} has no usable characters for an endpoint name")
        parts.append(clean)
    name = "radiant-" + "-".join(parts)
    if len(name) > MAX_NAME:
        head = name[: MAX_NAME - 9].rstrip("-")
        name = f"{head}-{short_hash(f'radiant-{app_id}-{env}-{model_id}')}"
    assert _NAME_RE.match(name), name
    return name


def is_valid_endpoint_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_NAME_RE.match(name))


# --------------------------------------------------------------------------- data


class EndpointSpec(BaseModel):
    """What should run. Fields that change the deployed config feed `config_hash()`;
    instance counts do not (capacity changes in place, DESIGN 3)."""

    endpoint_name: str
    model_id: str
    image: str  # full image URI
    instance_type: str
    environment: dict[str, str] = Field(default_factory=dict)
    model_data_url: str | None = None
    instance_count: int = Field(default=1, ge=0)  # desired; creation starts max(1, this)
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=1, ge=1)
    async_inference: bool = False
    async_output_s3_uri: str | None = None  # None: the backend's default
    execution_role_arn: str | None = None  # None: the backend's default
    tags: dict[str, str] = Field(default_factory=dict)
    # Which reference stand-in answers on the local backend; falls back to the radiant tags.
    category: str | None = None
    specialty: str | None = None
    # Bounds a crash-looping container's Creating phase (SageMaker default is long).
    container_startup_timeout_s: int | None = Field(default=None, ge=60, le=3600)

    @field_validator("endpoint_name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not is_valid_endpoint_name(v):
            raise ValueError(f"invalid endpoint name {v!r} (use base.endpoint_name())")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSpec:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances {self.min_instances} > max_instances {self.max_instances}"
            )
        return self

    @property
    def model_category(self) -> str | None:
        return self.category or self.tags.get(TAG_CATEGORY)

    @property
    def model_specialty(self) -> str | None:
        return self.specialty or self.tags.get(TAG_SPECIALTY)

    def config_hash(self, *extra: str) -> str:
        """Short hash of everything that needs a new EndpointConfig (+ UpdateEndpoint) to change;
        `extra`: what else a backend's deployment depends on."""
        payload = {
            "image": self.image,
            "instance_type": self.instance_type,
            "environment": dict(sorted(self.environment.items())),
            "model_data_url": self.model_data_url,
            "async_inference": self.async_inference,
            "async_output_s3_uri": self.async_output_s3_uri if self.async_inference else None,
            "execution_role_arn": self.execution_role_arn,
            "container_startup_timeout_s": self.container_startup_timeout_s,
            "extra": list(extra),
        }
        return short_hash(json.dumps(payload, sort_keys=True))


OWNER_TAG_KEYS = (TAG_APP, TAG_ENVIRONMENT, TAG_MODEL)


def check_same_owner(spec: EndpointSpec, existing: Mapping[str, str]) -> None:
    """Refuse to adopt an endpoint whose tags name another (app, environment, model): the name
    is shared (sanitizing maps e.g. ("a-b", "c") and ("a", "b-c") to one name), and scaling or
    deleting it would hit another owner. Tags missing on either side (endpoints of older
    versions, ids with '/' that split two ways) decide nothing."""
    name, ours = spec.endpoint_name, {**spec.tags, TAG_MODEL: spec.model_id}
    if not all(existing.get(k) and ours.get(k) for k in OWNER_TAG_KEYS):
        return
    if all(existing[k] == ours[k] for k in OWNER_TAG_KEYS):
        return
    theirs, mine = ("/".join(tags[k] for k in OWNER_TAG_KEYS) for tags in (existing, ours))
    raise EndpointNameConflict(
        f"{mine} cannot use endpoint {name}: {theirs} already owns that name (app and "
        "environment ids that differ only in case or in where a '-' falls share one endpoint "
        "name); give one of them a distinct app or environment id"
    )


class EndpointInfo(BaseModel):
    endpoint_name: str
    model_id: str | None = None  # from tags (SageMaker) or the local record
    status: EndpointStatus
    instance_count: int = 0  # current, serving
    desired_instance_count: int = 0
    failure_reason: str | None = None
    created_at: datetime | None = None
    async_inference: bool = False
    config_name: str | None = None  # EndpointConfig name (SageMaker) / config hash (local)
    status_message: str | None = None  # e.g. "1 of 3 instances exited" (local stand-in)
    # The tags read with this description (None: not read). Kept out of payloads: only the
    # reconcile's activities use them, to decide ownership without describing again.
    tags: dict[str, str] | None = Field(default=None, exclude=True)


class InvokeResult(BaseModel):
    # base64 in JSON: model outputs need not be UTF-8 (Temporal payloads are JSON).
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    body: bytes
    content_type: str | None = None


class AsyncInvocation(BaseModel):
    inference_id: str
    output_location: str
    failure_location: str | None = None
    # Where it was queued (set by the job's activity): a result poll checks now and then that
    # the endpoint still exists, since a deleted endpoint may write neither output nor failure.
    endpoint_name: str | None = None
    # Its creation time then (None: unknown): an endpoint of that name created since is
    # another one, which never saw this inference.
    endpoint_created_at: datetime | None = None


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class HostingBackend(Protocol):
    """Async; every call is safe to retry (activities are at-least-once)."""

    kind: str  # "sagemaker" | "local"

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        """Create Model + EndpointConfig + Endpoint if missing; same config: return its info;
        changed config: new config + UpdateEndpoint. May return Creating/Updating: poll
        describe_endpoint until InService (the local stand-in first waits a few seconds)."""
        ...

    async def describe_endpoint(self, name: str) -> EndpointInfo | None: ...

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        """Desired instances now; `min_instances`/`max_instances` are the autoscaling floor and
        ceiling (a thermal state's floor, DESIGN 3). Only an InService endpoint can change."""
        ...

    async def delete_endpoint(self, name: str) -> None:
        """Idempotent: a missing endpoint is success."""
        ...

    async def list_endpoints(self, prefix: str) -> list[EndpointInfo]: ...

    async def invoke(
        self, name: str, body: bytes, content_type: str, accept: str | None = None
    ) -> InvokeResult: ...

    async def invoke_async(
        self, name: str, input_location: str, content_type: str
    ) -> AsyncInvocation: ...

    async def fetch_async_result(self, invocation: AsyncInvocation) -> bytes | None:
        """None = not ready yet; raises AsyncInferenceFailed when the failure output exists."""
        ...


#: InvokeEndpoint's Body limit (the API model's max). SageMaker answers a larger body 413 or
#: resets the connection (which reads as retryable): both backends refuse it before sending.
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024


def check_sync_payload(name: str, body: bytes) -> None:
    """Refuse a real-time invocation body over SageMaker's limit (InvalidRequest: for good)."""
    if len(body) > MAX_SYNC_PAYLOAD:
        raise InvalidRequest(
            f"invoke {name}: payload of {len(body)} bytes exceeds the {MAX_SYNC_PAYLOAD}-byte "
            "limit of a real-time invocation; pass large inputs by S3 reference or async"
        )


def check_capacity(
    instance_count: int, min_instances: int, max_instances: int, *, async_inference: bool
) -> int:
    """Validate a capacity request; returns the desired count clamped into [min, max].

    A real-time SageMaker variant cannot run at zero instances (only inference components or
    async endpoints can), so COLD idle is `delete_endpoint`, never capacity 0 (DESIGN 3).
    """
    if min_instances < 0 or max_instances < 1 or min_instances > max_instances:
        raise InvalidRequest(f"invalid autoscaling bounds min={min_instances} max={max_instances}")
    floor = 0 if async_inference else 1
    if min_instances < floor or instance_count < floor:
        raise InvalidRequest(
            f"a real-time endpoint needs >= 1 instance (asked {instance_count}, min "
            f"{min_instances}); scale a COLD model to zero with delete_endpoint"
        )
    return max(min_instances, min(instance_count, max_instances))


def require_in_service(info: EndpointInfo | None, name: str) -> EndpointInfo:
    """Turn a described endpoint into "usable now" or the error a caller should raise:
    missing -> EndpointNotFound, Failed -> EndpointFailed (delete is the only way on),
    transitional -> EndpointNotReady (retryable: poll again)."""
    if info is None:
        raise EndpointNotFound(f"endpoint {name} does not exist")
    if info.status == "Failed":
        raise EndpointFailed(
            f"endpoint {name} failed: {info.failure_reason or 'no reason given'}",
            failure_reason=info.failure_reason,
        )
    if info.status != "InService":
        raise EndpointNotReady(f"endpoint {name} is {info.status}")
    return info


__all__ = [
    "ERROR_TYPES",
    "NON_RETRYABLE_ERROR_TYPES",
    "AccessDenied",
    "AlreadyExists",
    "AsyncInferenceFailed",
    "AsyncInvocation",
    "BackendError",
    "CapacityUnavailable",
    "EndpointFailed",
    "EndpointInfo",
    "EndpointNameConflict",
    "EndpointNotFound",
    "EndpointNotReady",
    "EndpointSpec",
    "EndpointStatus",
    "HostingBackend",
    "InvalidEndpointState",
    "InvalidRequest",
    "InvokeResult",
    "ModelError",
    "ModelNotReady",
    "ModelServerError",
    "QuotaExceeded",
    "ResourceNotFound",
    "ServiceUnavailable",
    "Throttled",
    "Unclassified",
    "UPDATABLE_STATUSES",
    "TRANSITIONAL_STATUSES",
    "check_capacity",
    "check_same_owner",
    "classify_client_error",
    "classify_exception",
    "endpoint_name",
    "fit_name",
    "require_in_service",
]
