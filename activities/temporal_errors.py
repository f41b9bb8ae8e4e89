"""One translation of backend errors into Temporal's: the error's code becomes the
ApplicationError type, and its retryable flag decides `non_retryable` (retry policies list the
non-retryable types by the same names)."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from activities.backends.base import BackendError


def application_error(err: BackendError) -> ApplicationError:
    return ApplicationError(err.message, type=err.code, non_retryable=not err.retryable)
