"""The one error every input check raises: an error type (a `workflows.service_types` ERR_*
constant, so the activity maps it 1:1 onto a non-retryable `ApplicationError`) and a message that
names the problem, the limit and, where there is one, the offending value and position."""

from __future__ import annotations

from workflows.service_types import ERR_INPUT_NOT_FOUND, ERR_INPUT_TOO_LARGE, ERR_INVALID_INPUT


class InputValidationError(ValueError):
    """A client error in the input: retrying cannot fix it."""

    def __init__(self, type: str, message: str) -> None:  # noqa: A002 - the brief's name
        super().__init__(message)
        self.type = type
        self.message = message

    def __repr__(self) -> str:
        return f"InputValidationError({self.type!r}, {self.message!r})"


class TransientInputError(RuntimeError):
    """Reading the input failed for a reason a retry may fix (S3 throttling, 5xx, timeouts)."""


class InputConfigurationError(RuntimeError):
    """The worker's input settings cannot serve this request (no spool, ...): retrying on the
    same worker cannot fix it, so the job fails at once with the operator's to-do."""


class InputCredentialsError(InputConfigurationError):
    """The worker found no AWS credentials or region. Usually its configuration; on EC2, ECS or
    EKS also a moment's failure of the credential endpoint: a few retries, then final."""


def invalid(message: str) -> InputValidationError:
    return InputValidationError(ERR_INVALID_INPUT, message)


def too_large(message: str) -> InputValidationError:
    return InputValidationError(ERR_INPUT_TOO_LARGE, message)


def not_found(message: str) -> InputValidationError:
    return InputValidationError(ERR_INPUT_NOT_FOUND, message)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; exact below 1 KiB so small limits stay readable."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    raise AssertionError("unreachable")
