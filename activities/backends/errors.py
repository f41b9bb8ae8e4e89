"""Backend errors and their classification (DESIGN 4, Temporal conventions).

`BackendError.code` is the `ApplicationError(type=...)` an activity raises; `retryable` decides
`non_retryable`. `NON_RETRYABLE_ERROR_TYPES` feeds `RetryPolicy(non_retryable_error_types=...)`,
so workflows and activities follow one classification. AWS errors are mapped by one table
(`RULES`): first matching row wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError


class BackendError(Exception):
    """A classified backend failure. `retryable`: would the same call succeed later?"""

    CODE: ClassVar[str] = "BackendError"
    RETRYABLE: ClassVar[bool] = True

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool,
        *,
        aws_code: str | None = None,
        http_status: int | None = None,
        failure_reason: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.aws_code = aws_code  # the provider's own error code, for logs
        self.http_status = http_status
        self.failure_reason = failure_reason

    def __reduce__(self) -> tuple[Any, ...]:  # keep picklable despite the keyword-only args
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[BackendError], state: dict[str, Any]) -> BackendError:
    err = cls.__new__(cls)
    Exception.__init__(err, f"{state['code']}: {state['message']}")
    err.__dict__.update(state)
    return err


class _Typed(BackendError):
    """A BackendError whose code and default retryability come from the class."""

    def __init__(self, message: str, *, retryable: bool | None = None, **kw: Any) -> None:
        retryable = self.RETRYABLE if retryable is None else retryable
        super().__init__(self.CODE, message, retryable, **kw)


class ResourceNotFound(_Typed):
    CODE, RETRYABLE = "ResourceNotFound", False


class EndpointNotFound(ResourceNotFound):
    CODE, RETRYABLE = "EndpointNotFound", False


class AlreadyExists(_Typed):
    CODE, RETRYABLE = "AlreadyExists", False


class InvalidEndpointState(_Typed):
    """E.g. a capacity change while Creating/Updating: wait and retry."""

    CODE, RETRYABLE = "InvalidEndpointState", True


class EndpointNotReady(_Typed):
    CODE, RETRYABLE = "EndpointNotReady", True


class EndpointFailed(_Typed):
    """Status Failed: only DeleteEndpoint is allowed, so retrying the same call cannot help."""

    CODE, RETRYABLE = "EndpointFailed", False


class EndpointNameConflict(_Typed):
    """The endpoint name is taken by another (app, environment, model): ids that differ only in
    where a '-' falls or in case map to one SageMaker name. Waiting cannot free it."""

    CODE, RETRYABLE = "EndpointNameConflict", False


class QuotaExceeded(_Typed):
    """ResourceLimitExceeded: an account quota; needs a quota increase, not a retry."""

    CODE, RETRYABLE = "QuotaExceeded", False


class CapacityUnavailable(_Typed):
    """AWS has no instances of that type right now: transient."""

    CODE, RETRYABLE = "CapacityUnavailable", True


class Throttled(_Typed):
    CODE, RETRYABLE = "Throttled", True


class ServiceUnavailable(_Typed):
    """5xx, internal failures, connection errors."""

    CODE, RETRYABLE = "ServiceUnavailable", True


class InvalidRequest(_Typed):
    CODE, RETRYABLE = "ValidationError", False


class AccessDenied(_Typed):
    CODE, RETRYABLE = "AccessDenied", False


class ModelError(_Typed):
    """The model container answered 4xx: the input is bad, the same input fails again."""

    CODE, RETRYABLE = "ModelError", False


class ModelServerError(_Typed):
    """The model container answered 5xx (overloaded, crashed mid-request): retry."""

    CODE, RETRYABLE = "ModelServerError", True


class ModelNotReady(_Typed):
    CODE, RETRYABLE = "ModelNotReady", True


class AsyncInferenceFailed(_Typed):
    CODE, RETRYABLE = "AsyncInferenceFailed", False


class Unclassified(_Typed):
    """A 4xx nobody mapped: surfaced, not retried forever."""

    CODE, RETRYABLE = "Unclassified", False


_ALL: tuple[type[_Typed], ...] = (
    ResourceNotFound, EndpointNotFound, AlreadyExists, InvalidEndpointState, EndpointNotReady,
    EndpointFailed, EndpointNameConflict, QuotaExceeded, CapacityUnavailable, Throttled,
    ServiceUnavailable, InvalidRequest, AccessDenied, ModelError, ModelServerError, ModelNotReady,
    AsyncInferenceFailed, Unclassified,
)  # fmt: skip
ERROR_TYPES: dict[str, bool] = {cls.CODE: cls.RETRYABLE for cls in _ALL}  # code -> retryable
NON_RETRYABLE_ERROR_TYPES: list[str] = sorted(c for c, r in ERROR_TYPES.items() if not r)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Rule:
    codes: frozenset[str]  # AWS error codes this row covers
    error: type[_Typed]
    message: re.Pattern[str] | None = None  # must also match the message when set
    when: Callable[[Mapping[str, Any]], bool] | None = None  # must hold on the error response
    explain: Callable[[Mapping[str, Any]], str] | None = None  # appended to the message


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _container_status(resp: Mapping[str, Any]) -> int | None:
    """The status the model container answered: InvokeEndpoint's ModelError carries it as
    `OriginalStatusCode` at the top level of the parsed error response."""
    status = resp.get("OriginalStatusCode")
    return status if isinstance(status, int) else None


def _container_429(resp: Mapping[str, Any]) -> bool:
    return _container_status(resp) == 429


def _container_5xx(resp: Mapping[str, Any]) -> bool:
    status = _container_status(resp)
    return status is not None and status >= 500


def _container_silent(resp: Mapping[str, Any]) -> bool:
    """No status from the container: SageMaker gave up waiting for it (its 60-s invocation
    timeout, "Received server error (0) ... timed out"), e.g. a cold container still loading
    its weights. The local stand-in raises ModelServerError for the same case."""
    return _container_status(resp) in (None, 0)


def _missing_bucket(resp: Mapping[str, Any]) -> str:
    """S3 NoSuchBucket names the bucket in `Error.BucketName` (when the response has it)."""
    bucket = (resp.get("Error", {}) or {}).get("BucketName")
    where = f"S3 bucket {bucket!r}" if bucket else "the S3 bucket"
    return (
        f"{where} does not exist (NoSuchBucket): a configuration error, not a vanished "
        "resource; check the s3:// settings that name it (RADIANT_INPUT_SPOOL_S3_URI, "
        "RADIANT_ASYNC_OUTPUT_S3_URI)"
    )


def _codes(names: str) -> frozenset[str]:
    return frozenset(names.split())


_VALIDATION = _codes("ValidationException ValidationError")
_NOT_FOUND = _codes(
    "ResourceNotFound ResourceNotFoundException ObjectNotFoundException NoSuchKey NotFound 404"
)
_CONFLICT = _codes("ResourceInUse ConcurrentUpdateException")
_QUOTA = _codes("ResourceLimitExceeded LimitExceededException ServiceQuotaExceededException")
_CAPACITY = _codes(
    "InsufficientCapacity InsufficientCapacityError InsufficientInstanceCapacity CapacityError"
)
_THROTTLED = _codes(
    "ThrottlingException Throttling ThrottledException SlowDown TooManyRequestsException "
    "RequestLimitExceeded RequestThrottled"
)
_SERVER = _codes(
    "InternalFailure InternalServerError InternalServiceException InternalDependencyException "
    "InternalError ServiceUnavailable ServiceUnavailableException RequestTimeout "
    "RequestTimeoutException"
)
_DENIED = _codes(
    "AccessDenied AccessDeniedException UnrecognizedClientException InvalidClientTokenId "
    "ExpiredToken ExpiredTokenException SignatureDoesNotMatch FailedResourceAccessException"
)
_BUSY = "Creating|Updating|SystemUpdating|RollingBack|Deleting"
# SageMaker's words for "no instances of that type to be had now", in an API error or in the
# FailureReason of an endpoint that went Failed while Creating ("CapacityError: Unable to
# provision requested ML compute capacity."): transient, unlike a quota.
_NO_CAPACITY = _rx(r"insufficient capacity|unable to provision|capacityerror")

RULES: tuple[Rule, ...] = (
    # SageMaker folds not-found, already-exists and wrong-status into ValidationException.
    Rule(
        _VALIDATION,
        EndpointNotFound,
        _rx(r"could not find endpoint(?! config)|endpoint \S+ of account \S+ not found"),
    ),
    # Only SageMaker's own resources: "Requested image ... not found" or "Could not find model
    # data at s3://..." from CreateModel are configuration errors (InvalidRequest below), not a
    # resource that vanished.
    Rule(
        _VALIDATION,
        ResourceNotFound,
        _rx(
            r"could not find (endpoint config(uration)?|model)\b(?! data)"
            r"|(endpoint config(uration)?|model|endpoint) \S+ (does not exist|not found)"
        ),
    ),
    Rule(_VALIDATION, AlreadyExists, _rx(r"already exist")),
    Rule(
        _VALIDATION,
        InvalidEndpointState,
        _rx(
            rf"in-progress|in progress|not in service|not in inservice"
            rf"|(status|state)\W+(is\W+)?({_BUSY})\b|\b({_BUSY})\W+(status|state)"
        ),
    ),  # fmt: skip
    Rule(_VALIDATION, CapacityUnavailable, _NO_CAPACITY),
    Rule(_VALIDATION | _codes("InvalidParameterValue MissingParameter"), InvalidRequest),
    # InvokeEndpoint over its payload limit: "(413) HTTP content length exceeded N bytes".
    Rule(_codes("413"), InvalidRequest),
    # A missing bucket is a configuration error (the settings name a bucket that is not there),
    # not a resource that vanished: a ResourceNotFound would make a job take it for a gone
    # endpoint and warm the model and submit its inference again.
    Rule(_codes("NoSuchBucket"), InvalidRequest, explain=_missing_bucket),
    Rule(_NOT_FOUND, ResourceNotFound),
    Rule(_CONFLICT, InvalidEndpointState),  # another change is in flight: wait, retry
    Rule(_QUOTA, QuotaExceeded),
    Rule(_CAPACITY, CapacityUnavailable),
    Rule(_THROTTLED, Throttled),
    Rule(_codes("ModelNotReadyException"), ModelNotReady),
    # The container itself answered 429 (overloaded): back off and retry, as for SageMaker's
    # own throttling; not a bad input. (5xx: ModelServerError, a few tries per input.)
    Rule(_codes("ModelError"), Throttled, when=_container_429),
    Rule(_codes("ModelError"), ModelServerError, when=_container_5xx),
    Rule(
        _codes("ModelError"),
        ModelServerError,
        _rx(r"timed out|server error \(0\)"),
        when=_container_silent,
    ),
    Rule(_codes("ModelError ModelStreamError"), ModelError),
    Rule(_SERVER, ServiceUnavailable),
    Rule(_DENIED, AccessDenied),
)


def lacks_capacity(failure_reason: str | None) -> bool:
    """Whether an endpoint's FailureReason says the instances could not be had (transient)."""
    return bool(failure_reason) and _NO_CAPACITY.search(failure_reason or "") is not None


def classify_client_error(err: ClientError) -> BackendError:
    """Map a botocore ClientError to a BackendError by `RULES`; unmapped: by HTTP status."""
    resp: Mapping[str, Any] = err.response or {}
    error = resp.get("Error", {}) or {}
    code = str(error.get("Code", "") or "")
    message = str(error.get("Message", "") or "") or str(err)
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    kw: dict[str, Any] = {"aws_code": code or None, "http_status": status}
    op = getattr(err, "operation_name", None)
    text = f"{op}: {message}" if op else message
    for rule in RULES:
        if code not in rule.codes:
            continue
        if rule.message is not None and not rule.message.search(message):
            continue
        if rule.when is not None and not rule.when(resp):
            continue
        if rule.explain is not None:
            text = f"{text}: {rule.explain(resp)}"
        return rule.error(text, **kw)
    if isinstance(status, int) and status >= 500:
        return ServiceUnavailable(text, **kw)
    if status == 429:
        return Throttled(text, **kw)
    return Unclassified(f"{code or 'error'}: {text}", **kw)


def classify_exception(exc: BaseException) -> BackendError | None:
    """Classify any exception a backend call can raise; None = not a backend failure (a bug)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, ClientError):
        return classify_client_error(exc)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return ServiceUnavailable(f"connection error: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"no usable AWS credentials: {exc}")
    if isinstance(exc, ParamValidationError | NoRegionError):
        return InvalidRequest(str(exc))
    if isinstance(exc, BotoCoreError):
        return ServiceUnavailable(str(exc))
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        return None
    if isinstance(exc, httpx.TransportError):
        return ServiceUnavailable(f"connection error: {exc!r}")
    return None
