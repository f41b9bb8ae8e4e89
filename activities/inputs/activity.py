"""`inputs.validate`: the job workflow's first activity, run before any model is warmed or billed.

It reads the input (size checked before any download), sniffs its content type from the bytes,
runs the format's validator and returns a `ValidatedInput` (location the model server reads,
content type, size, sha256, billable units, details). Every validation failure is a
non-retryable `ApplicationError` whose `type` is one of the ERR_* constants of
`workflows.service_types` (InvalidInput, InputTooLarge, InputNotFound); transient S3 failures
are retryable (`type="InputReadFailed"`).

Locations by backend:
- local: local paths as they are (resolved); inline input -> spool file; an `s3://` input is
  downloaded into the same content-addressed spool (the local stand-in cannot read S3).
- sagemaker: `s3://` as it is; inline input -> uploaded to `spool_s3_uri`; local paths are
  refused (a SageMaker endpoint cannot read the worker's disk, and a tenant must not make the
  worker read its files).
The only writes are those spool files, made after the input passed every check.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.inputs.errors import InputValidationError, TransientInputError, invalid
from activities.inputs.limits import size_limit
from activities.inputs.reader import read_input, spool_inline
from activities.inputs.validate import check_input
from workflows.service_types import InputRef, ValidatedInput

ERR_INPUT_READ_FAILED = "InputReadFailed"  # retryable: S3 throttling, 5xx, connection errors


class ValidateRequest(BaseModel):
    """Everything `inputs.validate` needs; the workflow fills it from the catalog operation."""

    input: InputRef
    service: str
    operation: str
    content_types: list[str] = Field(min_length=1)  # ServiceOperation.content_types
    unit: str  # ServiceOperation.unit
    max_bytes: int | None = Field(default=None, gt=0)  # None: limits.size_limit(...)
    backend: Literal["local", "sagemaker"] = "local"


class InputActivities:
    """Holds the worker's spool settings and S3 client (injected; created lazily if needed)."""

    def __init__(
        self,
        *,
        spool_dir: Path | None = None,
        spool_s3_uri: str | None = None,
        s3_client: Any = None,
        base_dir: Path | None = None,
        allowed_roots: Sequence[Path] | None = None,
    ) -> None:
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.spool_s3_uri = spool_s3_uri
        self._s3 = s3_client
        self.base_dir = base_dir
        self.allowed_roots = allowed_roots

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def validate_sync(self, req: ValidateRequest) -> ValidatedInput:
        """The whole check, synchronously (file reads and image decoding block)."""
        label = f"{req.service}/{req.operation.strip('/')}"
        max_bytes = req.max_bytes or size_limit(req.service, req.operation, req.unit)
        ref = req.input
        uri = (ref.uri or "").strip()
        is_s3 = uri.startswith("s3://")
        if req.backend == "sagemaker" and ref.inline_base64 is None and not is_s3:
            raise invalid(f"the sagemaker backend reads inputs from S3; {uri!r} is not an "
                          "s3:// URI (upload it, or send a small input inline)")  # fmt: skip
        spool_dir = self.spool_dir if req.backend == "local" else None
        spool_s3 = self.spool_s3_uri if req.backend == "sagemaker" else None
        if ref.inline_base64 is not None and spool_dir is None and spool_s3 is None:
            raise RuntimeError(f"no spool configured for inline inputs on the {req.backend} "
                               "backend")  # fmt: skip
        data, location = read_input(
            ref,
            max_bytes=max_bytes,
            s3_client=self.s3 if is_s3 else None,
            base_dir=self.base_dir,
            allowed_roots=self.allowed_roots,
            spool_dir=spool_dir,
            spool_s3_uri=spool_s3,
            write_spool=False,
            what=label,
        )
        content_type, units, details = check_input(
            data,
            service=req.service,
            operation=req.operation,
            content_types=req.content_types,
            unit=req.unit,
            declared=ref.content_type,
        )
        if ref.inline_base64 is not None or (is_s3 and req.backend == "local"):
            if spool_dir is None and spool_s3 is None:
                raise RuntimeError("no spool directory configured for the local backend")
            location = spool_inline(data, spool_dir=spool_dir, spool_s3_uri=spool_s3,
                                    s3_client=self.s3 if spool_s3 else None,
                                    content_type=content_type)  # fmt: skip
        if ref.filename:
            details = {**details, "filename": ref.filename}
        return ValidatedInput(
            location=location,
            content_type=content_type,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            units=units,
            details=details,
        )

    @activity.defn(name="inputs.validate")
    async def validate(self, req: ValidateRequest) -> ValidatedInput:
        try:
            return await asyncio.to_thread(self.validate_sync, req)
        except InputValidationError as exc:
            raise ApplicationError(exc.message, type=exc.type, non_retryable=True) from exc
        except TransientInputError as exc:
            raise ApplicationError(str(exc), type=ERR_INPUT_READ_FAILED) from exc
