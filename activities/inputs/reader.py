"""Reading an `InputRef` into bytes with every size check done before the bytes are fetched.

Sources:
- local path (`/abs/path`, `relative/path` resolved against `base_dir`, `file:///abs/path`):
  must exist and be a regular file (directories, FIFOs, devices are refused); its size is taken
  from `stat` before reading. With `allowed_roots`, the resolved path (symlinks followed) must lie
  under one of them.
- `s3://bucket/key`: `HeadObject` first, so an oversize object is refused without downloading it;
  NoSuchKey / 404 / NoSuchBucket -> InputNotFound; 403 -> InputNotFound ("access denied");
  throttling, 5xx and connection errors -> `TransientInputError` (the activity retries).
- inline base64 (`inline_base64`, optionally a `data:<type>;base64,` URI; whitespace ignored):
  at most `INLINE_LIMIT_BYTES` decoded (and at most `max_bytes`); bad base64 -> InvalidInput.

Inline inputs get a location the model server can read: a content-addressed spool file
(`<spool_dir>/inline-<sha256>`, local backend) or an S3 object (`<spool_s3_uri>/<sha256>`,
sagemaker backend, uploaded with the injected client). `read_input(..., write_spool=False)` only
computes that location; `spool_inline` writes it (the activity does so after validation passes,
so a refused input leaves nothing behind).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from activities.inputs.errors import (
    InputCredentialsError,
    TransientInputError,
    human_bytes,
    invalid,
    not_found,
    too_large,
)
from activities.inputs.policy import check_local_path
from workflows.service_types import INLINE_LIMIT_BYTES, InputRef

_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED_CODES = {"403", "AccessDenied", "Forbidden"}
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable",
                    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                    "RequestTimeTooSkewed"}  # fmt: skip
_DATA_URI = re.compile(r"^data:[^,;]*(;[^,;]*)*;base64,", re.IGNORECASE)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    m = _S3_URI.match(uri)
    if not m:
        raise invalid(f"malformed S3 URI {uri!r}: expected s3://bucket/key")
    return m.group(1), m.group(2)


def _limit_text(max_bytes: int, what: str) -> str:
    return (
        f"{what} accepts at most {human_bytes(max_bytes)}"
        if what
        else (f"the limit is {human_bytes(max_bytes)}")
    )


# ----------------------------------------------------------------------------- local files


def resolve_local_path(uri: str, *, base_dir: Path | None = None,
                       allowed_roots: Sequence[Path] | None = None) -> Path:  # fmt: skip
    raw = uri.removeprefix("file://")
    if not raw:
        raise invalid("input path is empty")
    if "\0" in raw:
        raise invalid("input path contains a NUL character")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        if base_dir is None:
            raise invalid(f"relative input path {raw!r} needs an absolute path (no input base "
                          "directory is configured)")  # fmt: skip
        path = Path(base_dir) / path
    resolved = Path(os.path.realpath(path))
    if allowed_roots is not None:
        roots = [Path(os.path.realpath(r)) for r in allowed_roots]
        if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
            raise invalid(f"input path {raw!r} is outside the allowed input directories")
    return resolved


def _opened_path(fd: int) -> Path | None:
    """The file an open descriptor really refers to (Linux: /proc/self/fd), None elsewhere."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


READ_CHUNK = 1024 * 1024  # bytes per read past the expected size


def read_capped(stream: Any, limit: int, expected: int) -> bytes:
    """At most `limit` bytes of `stream`. `read(n)` reserves n bytes before it reads, so
    `read(limit)` would set aside the operation's whole limit (up to 1 GiB) for a 1 KiB file:
    ask for the size `stat`/HeadObject gave, then go on in chunks in case the input grew."""
    first = stream.read(min(limit, expected + 1))
    chunks, total = [first], len(first)
    while total < limit:
        chunk = stream.read(min(READ_CHUNK, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)  # one chunk: the same object, no copy


def _read_local(uri: str, max_bytes: int, what: str, base_dir: Path | None,
                allowed_roots: Sequence[Path] | None,
                denied_roots: Sequence[Path] = ()) -> tuple[bytes, str]:  # fmt: skip
    path = resolve_local_path(uri, base_dir=base_dir, allowed_roots=allowed_roots)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise not_found(f"input file {str(path)!r} does not exist") from exc
    except PermissionError as exc:
        raise not_found(f"input file {str(path)!r} cannot be accessed: permission denied") from exc
    except OSError as exc:  # a file used as a directory, a name too long, ...: the same later
        raise not_found(f"input file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise invalid(f"input path {str(path)!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise invalid(f"input path {str(path)!r} is not a regular file")
    if st.st_size > max_bytes:
        raise too_large(f"input is {human_bytes(st.st_size)}; {_limit_text(max_bytes, what)}")
    try:
        # Non-blocking open: a FIFO swapped in after the stat would block a plain open forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
                raise invalid(f"input path {str(path)!r} is not a regular file")
            # The file opened, not the path checked earlier: a symlink swapped in between
            # (a TOCTOU race) cannot lead into a denied directory.
            opened = _opened_path(fd)
            if opened is not None:
                check_local_path(opened, uri, allowed_roots=allowed_roots,
                                 denied_roots=denied_roots)  # fmt: skip
            data = read_capped(f, max_bytes + 1, expected=st.st_size)
    except PermissionError as exc:
        raise not_found(f"input file {str(path)!r} cannot be read: permission denied") from exc
    except IsADirectoryError as exc:  # pragma: no cover - raced with a rename
        raise invalid(f"input path {str(path)!r} is a directory, not a file") from exc
    except OSError as exc:  # pragma: no cover - removed or replaced since the stat
        raise not_found(f"input file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:  # grew since stat
        raise too_large(f"input is larger than {human_bytes(max_bytes)}; "
                        f"{_limit_text(max_bytes, what)}")  # fmt: skip
    return data, str(path)


# ----------------------------------------------------------------------------- S3


def _client_error_code(exc: Exception) -> tuple[str, int | None]:
    resp: dict[str, Any] = getattr(exc, "response", {}) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


def _is_credentials_error(exc: Exception) -> bool:
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

    return isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError)


def _s3_error(exc: Exception, uri: str, action: str) -> Exception:
    from botocore.exceptions import ClientError, ParamValidationError

    if isinstance(exc, ClientError):
        code, status = _client_error_code(exc)
        if code in _NOT_FOUND_CODES or status == 404:
            return not_found(f"input {uri} does not exist ({code or status})")
        if code in _DENIED_CODES or status == 403:
            return not_found(f"input {uri} cannot be read: access denied (the object may not "
                             "exist, or the worker's role may not read it)")  # fmt: skip
        if code in _TRANSIENT_CODES or (status is not None and status >= 500):
            return TransientInputError(f"{action} {uri} failed ({code or status}); will retry")
        return invalid(f"{action} {uri} failed: {code or status}: {exc}")
    if isinstance(exc, ParamValidationError):  # e.g. a bucket name S3 cannot take
        return invalid(f"{action} {uri} refused: {exc}")
    if _is_credentials_error(exc):  # retried a few times, then final (see the activity)
        return InputCredentialsError(
            f"this worker cannot read {uri}: {type(exc).__name__}: {exc} (configure AWS "
            "credentials and region for the worker, or send the input inline or by path)"
        )
    return TransientInputError(f"{action} {uri} failed: {type(exc).__name__}: {exc}")


def _read_s3(uri: str, max_bytes: int, what: str, s3_client: Any) -> tuple[bytes, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_uri(uri)
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, uri, "HeadObject") from exc
    size = int(head.get("ContentLength", 0))
    if size > max_bytes:
        raise too_large(f"input is {human_bytes(size)}; {_limit_text(max_bytes, what)}")
    try:
        obj = s3_client.get_object(Bucket=bucket, Key=key)
        data = read_capped(obj["Body"], max_bytes + 1, expected=size)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, uri, "GetObject") from exc
    if len(data) > max_bytes:  # replaced between HEAD and GET
        raise too_large(f"input is larger than {human_bytes(max_bytes)}; "
                        f"{_limit_text(max_bytes, what)}")  # fmt: skip
    return data, uri


# ----------------------------------------------------------------------------- inline


def decode_inline(value: str, max_bytes: int, what: str = "") -> bytes:
    limit = min(max_bytes, INLINE_LIMIT_BYTES)
    text = _DATA_URI.sub("", value.strip(), count=1)
    text = "".join(text.split())
    # Refuse before decoding when even the encoded length is over (4 chars per 3 bytes).
    if (len(text) // 4) * 3 - 2 > limit:
        raise too_large(
            f"inline input decodes to about {human_bytes(len(text) // 4 * 3)}; inline inputs "
            f"are limited to {human_bytes(limit)} (send larger inputs by URI: s3:// or a path)"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"inline_base64 is not valid base64: {exc}") from exc
    if len(data) > limit:
        raise too_large(
            f"inline input is {human_bytes(len(data))}; inline inputs are limited to "
            f"{human_bytes(limit)} (send larger inputs by URI: s3:// or a path)"
        )
    return data


def spool_location(sha256: str, *, spool_dir: Path | None = None,
                   spool_s3_uri: str | None = None) -> str:  # fmt: skip
    if spool_dir is not None:
        return str(Path(spool_dir) / f"inline-{sha256}")
    if spool_s3_uri:
        return f"{spool_s3_uri.rstrip('/')}/{sha256}"
    raise ValueError("an inline input needs a spool_dir (local) or a spool_s3_uri (sagemaker)")


def spool_inline(data: bytes, *, spool_dir: Path | None = None, spool_s3_uri: str | None = None,
                 s3_client: Any = None, content_type: str | None = None) -> str:  # fmt: skip
    """Store inline bytes where the model server can read them; returns that location.
    Content-addressed: the same bytes always land at the same place, written once, atomically."""
    sha = hashlib.sha256(data).hexdigest()
    location = spool_location(sha, spool_dir=spool_dir, spool_s3_uri=spool_s3_uri)
    if spool_dir is not None:
        path = Path(location)
        if path.is_file() and path.stat().st_size == len(data):
            return location
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temp file of its own: activities run as threads of one process, so two jobs with
        # the same bytes must not share one (a pid-named file was replaced half-written).
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # as a plain write would leave it (mkstemp makes it 0600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return location
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_uri(location)
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    extra = {"ContentType": content_type} if content_type else {}
    try:
        s3_client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, location, "PutObject") from exc
    return location


# ----------------------------------------------------------------------------- entry point


def read_input(
    ref: InputRef,
    *,
    max_bytes: int,
    s3_client: Any = None,
    base_dir: Path | None = None,
    allowed_roots: Sequence[Path] | None = None,
    denied_roots: Sequence[Path] = (),
    spool_dir: Path | None = None,
    spool_s3_uri: str | None = None,
    write_spool: bool = True,
    what: str = "",
) -> tuple[bytes, str]:
    """(bytes, location) of an input, refusing oversize inputs before fetching them.

    `what` ("perception/detect") makes size messages name the operation. For inline input the
    location is the spool file or S3 object; with `write_spool=False` it is computed, not written.
    """
    if ref.inline_base64 is not None:
        data = decode_inline(ref.inline_base64, max_bytes, what)
        sha = hashlib.sha256(data).hexdigest()
        if write_spool:
            location = spool_inline(data, spool_dir=spool_dir, spool_s3_uri=spool_s3_uri,
                                    s3_client=s3_client, content_type=ref.content_type)  # fmt: skip
            return data, location
        return data, spool_location(sha, spool_dir=spool_dir, spool_s3_uri=spool_s3_uri)
    uri = (ref.uri or "").strip()
    if uri.startswith("s3://"):
        return _read_s3(uri, max_bytes, what, s3_client)
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://", uri)
    if scheme and scheme.group(1).lower() != "file":
        raise invalid(f"unsupported input URI scheme {scheme.group(1)!r}: use s3://bucket/key, a "
                      "local path, or inline_base64")  # fmt: skip
    return _read_local(uri, max_bytes, what, base_dir, allowed_roots, denied_roots)
