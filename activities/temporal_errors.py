"""One translation of backend errors into Temporal's: the error's code becomes the
ApplicationError type, and its retryable flag decides `non_retryable` (retry policies list the
non-retryable types by the same names)."""

from __future__ import annotations

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.backends.base import BackendError


def rejection(message: str, kind: str) -> ApplicationError:
    """A request refused for the caller's own reason (unknown id, tier, malformed input):
    final, and BENIGN, so the worker logs it at DEBUG instead of a WARNING with a traceback
    (an ordinary refusal is no incident)."""
    return ApplicationError(
        message, type=kind, non_retryable=True, category=ApplicationErrorCategory.BENIGN
    )


def application_error(err: BackendError) -> ApplicationError:
    return ApplicationError(err.message, type=err.code, non_retryable=not err.retryable)


def from_update_failure(err: WorkflowUpdateFailedError) -> ApplicationError:
    """A thermal update's refusal (model OFF, warm-up failed) as the caller's own error, with
    the same type and retryability, so a retry policy does not retry what cannot succeed."""
    cause: BaseException | None = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = getattr(cause, "cause", None) or cause.__cause__
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, type=cause.type, non_retryable=cause.non_retryable)
    return ApplicationError(str(err))
