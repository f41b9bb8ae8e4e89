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
Where a tenant's input may come from (`policy`): local paths only under the worker's input
roots and never inside its data directory; s3:// URIs only under the tenant's prefixes when
those are configured. A refusal is InputNotFound ("access denied"), checked before any read.

geospatial/change compares two scenes: a two-page GeoTIFF, or a one-page input plus the before
scene as `options.before_location`, checked like the main input (location rules, size limit,
format) and billed as one more unit; its location (spooled if needed) is returned in
`details["before_location"]` for the workflow to pass to the model instead of the caller's.

A worker setting that cannot serve the request (no spool for an inline input, `{tenant}` in the
S3 prefixes but no tenant in the request) is non-retryable too (`type="InputConfiguration"`).
The only writes are those spool files, made after every input passed every check.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.inputs.errors import (
    InputConfigurationError,
    InputCredentialsError,
    InputValidationError,
    TransientInputError,
    invalid,
)
from activities.inputs.limits import BEFORE_OPTION, BEFORE_SCENE_OPERATIONS, size_limit
from activities.inputs.policy import check_local_path, check_s3_uri
from activities.inputs.reader import read_input, resolve_local_path, spool_inline
from activities.inputs.validate import check_box, check_input
from activities.temporal_errors import rejection
from workflows.service_types import ERR_INVALID_INPUT, InputRef, ValidatedInput

ERR_INPUT_READ_FAILED = "InputReadFailed"  # retryable: S3 throttling, 5xx, connection errors
ERR_INPUT_CONFIGURATION = "InputConfiguration"  # the worker's settings; retrying cannot help
CREDENTIALS_ATTEMPTS = 3  # attempts that found no AWS credentials before the job fails
UNEXPECTED_ATTEMPTS = 3  # attempts that raised something unclassified before the job fails
# Raised by parsing the bytes themselves: deterministic, a retry raises them again. struct.error
# (a cut field), zlib.error (corrupt deflate) and EOFError (a stream ending early: wave, gzip)
# are no ValueError; UnicodeDecodeError is one, OverflowError an ArithmeticError.
UNCHECKABLE = (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError,
               struct.error, zlib.error, EOFError)  # fmt: skip
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


class ValidateRequest(BaseModel):
    """Everything `inputs.validate` needs; the workflow fills it from the catalog operation."""

    input: InputRef
    service: str
    operation: str
    content_types: list[str] = Field(min_length=1)  # ServiceOperation.content_types
    unit: str  # ServiceOperation.unit
    max_bytes: int | None = Field(default=None, gt=0)  # None: limits.size_limit(...)
    backend: Literal["local", "sagemaker"] = "local"
    # Defaults keep requests recorded before these fields existed decodable.
    options: dict[str, Any] = Field(default_factory=dict)  # ServiceRequest.options
    tenant: str | None = None  # tenant name: the `{tenant}` of RADIANT_INPUT_S3_PREFIXES


@dataclass
class _Checked:
    """One input that passed every check, before its spool copy (if any) is written."""

    data: bytes
    location: str
    content_type: str
    units: Decimal
    details: dict[str, Any]
    spool: bool  # inline, or s3:// on the local backend: the model reads a spool copy


class InputActivities:
    """Holds the worker's spool and input-location settings and S3 client (injected; created
    lazily if needed). `allowed_roots=None` and no `allowed_s3_prefixes` accept any location."""

    def __init__(
        self,
        *,
        spool_dir: Path | None = None,
        spool_s3_uri: str | None = None,
        s3_client: Any = None,
        base_dir: Path | None = None,
        allowed_roots: Sequence[Path] | None = None,
        denied_roots: Sequence[Path] = (),
        allowed_s3_prefixes: Sequence[str] = (),
    ) -> None:
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.spool_s3_uri = spool_s3_uri
        self._s3 = s3_client
        self.base_dir = base_dir
        self.allowed_roots = allowed_roots
        self.denied_roots = denied_roots
        self.allowed_s3_prefixes = allowed_s3_prefixes

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def validate_sync(self, req: ValidateRequest) -> ValidatedInput:
        """The whole check, synchronously (file reads and image decoding block)."""
        main = self._check(req, req.input, "input")
        check_box(req.options, main.details)  # needs the image's size: known only here
        before = self._before_scene(req, main)
        # Writes only once every input passed: a refused request leaves nothing behind.
        location = self._spool(req, main)
        details = dict(main.details)
        if req.input.filename:
            details["filename"] = req.input.filename
        units = main.units
        if before is not None:
            units += before.units
            details[BEFORE_OPTION] = self._spool(req, before)
            details["before"] = {"sha256": hashlib.sha256(before.data).hexdigest(),
                                 "size_bytes": len(before.data)}  # fmt: skip
        return ValidatedInput(
            location=location,
            content_type=main.content_type,
            size_bytes=len(main.data),
            sha256=hashlib.sha256(main.data).hexdigest(),
            units=units,
            details=details,
        )

    def _check(self, req: ValidateRequest, ref: InputRef, name: str) -> _Checked:
        """Location rules, size limit, content type and format of one input (no writes)."""
        label = f"{req.service}/{req.operation.strip('/')}"
        max_bytes = req.max_bytes or size_limit(req.service, req.operation, req.unit)
        uri = (ref.uri or "").strip()
        is_s3 = uri.startswith("s3://")
        if req.backend == "sagemaker" and ref.inline_base64 is None and not is_s3:
            raise invalid(f"the sagemaker backend reads inputs from S3; {name} {uri!r} is not an "
                          "s3:// URI (upload it, or send a small input inline)")  # fmt: skip
        spool = ref.inline_base64 is not None or (is_s3 and req.backend == "local")
        # Refused before reading when there is nowhere to put it.
        spool_dir, spool_s3 = self._spool_target(req) if spool else (None, None)
        if is_s3:
            check_s3_uri(uri, prefixes=self.allowed_s3_prefixes, tenant=req.tenant)
        elif ref.inline_base64 is None:
            self._check_local(uri)
        data, location = read_input(
            ref,
            max_bytes=max_bytes,
            s3_client=self.s3 if is_s3 else None,
            base_dir=self.base_dir,
            allowed_roots=self.allowed_roots,
            denied_roots=self.denied_roots,
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
        return _Checked(data, location, content_type, units, details, spool)

    def _check_local(self, uri: str) -> None:
        if _SCHEME.match(uri) and not uri.lower().startswith("file://"):
            return  # not a path: read_input names the unsupported scheme
        path = resolve_local_path(uri, base_dir=self.base_dir)
        check_local_path(path, uri, allowed_roots=self.allowed_roots,
                         denied_roots=self.denied_roots)  # fmt: skip

    def _before_scene(self, req: ValidateRequest, main: _Checked) -> _Checked | None:
        """The before scene of a two-scene operation given as `options.before_location`."""
        label = f"{req.service}/{req.operation.strip('/')}"
        raw = req.options.get(BEFORE_OPTION)
        scenes = int(main.details.get("scenes", 1))
        if label not in BEFORE_SCENE_OPERATIONS:
            if raw is not None:
                raise invalid(f"{label} takes no options.{BEFORE_OPTION} (only "
                              f"{', '.join(sorted(BEFORE_SCENE_OPERATIONS))} compares two "
                              "scenes)")  # fmt: skip
            return None
        if raw is None:
            if scenes < 2:
                raise invalid(f"{label} compares two scenes: send a two-page GeoTIFF (page 1 "
                              f"before, page 2 after) or the before scene as "
                              f"options.{BEFORE_OPTION}")  # fmt: skip
            return None
        if not isinstance(raw, str) or not raw.strip():
            raise invalid(f"options.{BEFORE_OPTION} must be a path or an s3:// URI")
        if scenes > 1:
            raise invalid(f"the input already holds {scenes} scenes; send either a two-page "
                          f"GeoTIFF or a one-page input with options.{BEFORE_OPTION}, not "
                          "both")  # fmt: skip
        before = self._check(req, InputRef(uri=raw), f"options.{BEFORE_OPTION}")
        _same_scene_shape(main.details, before.details)
        return before

    def _spool_target(self, req: ValidateRequest) -> tuple[Path | None, str | None]:
        if req.backend == "local" and self.spool_dir is not None:
            return self.spool_dir, None
        if req.backend == "sagemaker" and self.spool_s3_uri:
            return None, self.spool_s3_uri
        setting = "RADIANT_DATA_DIR" if req.backend == "local" else "RADIANT_INPUT_SPOOL_S3_URI"
        raise InputConfigurationError(f"this worker has no spool for inline inputs on the "
                                      f"{req.backend} backend (set {setting}); send the input "
                                      "by URI instead")  # fmt: skip

    def _spool(self, req: ValidateRequest, checked: _Checked) -> str:
        if not checked.spool:
            return checked.location
        spool_dir, spool_s3 = self._spool_target(req)
        return spool_inline(checked.data, spool_dir=spool_dir, spool_s3_uri=spool_s3,
                            s3_client=self.s3 if spool_s3 else None,
                            content_type=checked.content_type)  # fmt: skip

    @activity.defn(name="inputs.validate")
    async def validate(self, req: ValidateRequest) -> ValidatedInput:
        try:
            return await asyncio.to_thread(self.validate_sync, req)
        except InputValidationError as exc:  # the caller's mistake: no traceback in the log
            raise rejection(exc.message, exc.type) from exc
        except InputConfigurationError as exc:
            # Missing credentials are final only once a few attempts agree (a credential
            # endpoint may blink); other configuration problems at once.
            retry = isinstance(exc, InputCredentialsError)
            if retry and activity.info().attempt < CREDENTIALS_ATTEMPTS:
                raise ApplicationError(str(exc), type=ERR_INPUT_READ_FAILED) from exc
            raise ApplicationError(str(exc), type=ERR_INPUT_CONFIGURATION,
                                   non_retryable=True) from exc  # fmt: skip
        except RecursionError as exc:  # a nesting no validator bounds: a retry fails the same
            raise ApplicationError("input nests too deeply to be checked", type=ERR_INVALID_INPUT,
                                   non_retryable=True) from exc  # fmt: skip
        except TransientInputError as exc:
            raise ApplicationError(str(exc), type=ERR_INPUT_READ_FAILED) from exc
        except UNCHECKABLE as exc:
            # A validator tripped over the bytes (a length or value no check anticipated):
            # the same bytes trip it again, so the job fails now instead of retrying forever.
            raise ApplicationError(
                f"input could not be checked: {type(exc).__name__}: {exc}"[:500],
                type=ERR_INVALID_INPUT,
                non_retryable=True,
            ) from exc
        except Exception as exc:
            # Anything else may pass (a blip of the disk or network): a few attempts, then a
            # failed job rather than a job retrying every 30 s for ever.
            if activity.info().attempt < UNEXPECTED_ATTEMPTS:
                raise
            raise ApplicationError(
                f"input could not be checked on {activity.info().attempt} tries: "
                f"{type(exc).__name__}: {exc}"[:500],
                type=ERR_INPUT_READ_FAILED,
                non_retryable=True,
            ) from exc


def _same_scene_shape(after: dict[str, Any], before: dict[str, Any]) -> None:
    """The before scene is one scene of the after scene's size and bands (the model compares
    them pixel by pixel)."""
    if int(before.get("scenes", 1)) != 1:
        raise invalid(f"options.{BEFORE_OPTION} holds {before.get('scenes')} scenes; the before "
                      "scene is a one-page GeoTIFF")  # fmt: skip
    shape = ("width", "height", "bands")
    a, b = (tuple(d.get(k) for k in shape) for d in (after, before))
    if a != b:
        raise invalid("before and after scenes differ: options.{} is {} x {} x {} bands, the "
                      "input {} x {} x {}".format(BEFORE_OPTION, *b, *a))  # fmt: skip
