"""Where a tenant's input may come from (checked before anything is read).

- Local paths (local backend): the resolved path (symlinks followed) must lie under one of the
  allowed roots (`RADIANT_INPUT_ROOTS`; None = anywhere, for tests and embedding) and under none
  of the denied roots. The worker denies its whole data directory: other tenants' spool files
  and job outputs, endpoint records and the embedded PostgreSQL live there. A tenant's own
  inline input is spooled there by the activity itself, never read back through a path.
- `s3://` URIs: with allowed prefixes (`RADIANT_INPUT_S3_PREFIXES`), the URI must lie under one
  of them after `{tenant}` is replaced by the tenant's name; each prefix is a folder, so
  `s3://b/inputs/{tenant}/` never matches another tenant whose name merely starts the same. No
  prefixes = no restriction (the worker role's S3 permissions are then the only limit).

A refusal reads like S3's answer to an object the caller may not read (InputNotFound, "access
denied"), whether or not the file exists, so the check cannot be used to probe the worker's disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from activities.inputs.errors import InputConfigurationError, invalid, not_found

# Never inputs, whatever the roots say: the kernel's pseudo-filesystems (/proc/self/environ
# holds the worker's provider keys) and devices.
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _under(path: Path, roots: Sequence[Path]) -> bool:
    real = [Path(os.path.realpath(r)) for r in roots]
    return any(path == r or path.is_relative_to(r) for r in real)


def check_local_path(path: Path, raw: str, *, allowed_roots: Sequence[Path] | None,
                     denied_roots: Sequence[Path] = ()) -> None:  # fmt: skip
    """`path` is the resolved form of the caller's `raw` location."""
    outside = allowed_roots is not None and not _under(path, allowed_roots)
    if outside or _under(path, denied_roots) or _under(path, SYSTEM_ROOTS):
        raise not_found(
            f"input {raw!r} cannot be read: access denied (local inputs must lie under one of "
            "the worker's input directories, RADIANT_INPUT_ROOTS)"
        )


def tenant_prefixes(prefixes: Sequence[str], tenant: str | None) -> list[str]:
    """The configured prefixes for `tenant`, each ending in '/'."""
    out = []
    for prefix in prefixes:
        if "{tenant}" in prefix:
            if not tenant or "/" in tenant or tenant in (".", ".."):
                raise InputConfigurationError(
                    "RADIANT_INPUT_S3_PREFIXES names {tenant}, but the request carries no tenant "
                    "name: S3 inputs cannot be checked (the workflow must pass the tenant)"
                )
            prefix = prefix.replace("{tenant}", tenant)
        out.append(prefix if prefix.endswith("/") else f"{prefix}/")
    return out


def check_s3_uri(uri: str, *, prefixes: Sequence[str], tenant: str | None) -> None:
    # S3 keys are literal, but an S3-compatible store or proxy may normalise `..`: a key that
    # leaves its prefix that way is refused everywhere.
    key = uri.removeprefix("s3://").partition("/")[2]
    if any(part in (".", "..", "") for part in key.split("/")[:-1]) or key in (".", ".."):
        raise invalid(f"input {uri} has an empty, '.' or '..' path segment in its key")
    if not prefixes:
        return
    if not any(uri.startswith(p) for p in tenant_prefixes(prefixes, tenant)):
        raise not_found(f"input {uri} cannot be read: access denied (S3 inputs must lie under "
                        "the tenant's input prefix, RADIANT_INPUT_S3_PREFIXES)")  # fmt: skip
