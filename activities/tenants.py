"""Tenants: create (admin), list, look up by name or id, and the `tenants.get` activity.

Creating a tenant is an admin action and runs on the *owner* connection: the worker's
application role has only SELECT on `tenants` (DESIGN 6). Lookups work with either role.

A tenant is referred to by its name or its id (UUID); names are therefore never UUID-shaped.
Names: 1-63 characters, letters, digits, '.', '_' and '-', starting with a letter or digit
(they appear in workflow search attributes and on command lines). Tiers are 1..5 (S2
TIER_LIMITS: 1 SEED ... 5 ENTERPRISE).
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db.engine import create_sync_engine, unavailable_error
from activities.db.schema import tenants
from workflows.service_types import ERR_UNKNOWN_TENANT

MIN_TIER, MAX_TIER = 1, 5
TIER_NAMES = {1: "SEED", 2: "STARTUP", 3: "GROWTH", 4: "SCALE", 5: "ENTERPRISE"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class TenantRecord(BaseModel):
    id: uuid.UUID
    name: str
    tier: int
    created_at: datetime | None = None


class TenantError(ValueError):
    """A tenant operation the caller got wrong (message is for the person at the terminal)."""


class UnknownTenantError(TenantError, LookupError):
    def __init__(self, ref: str, suggestions: list[str] | None = None) -> None:
        self.ref = ref
        self.suggestions = suggestions or []
        hint = (
            "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
            if self.suggestions
            else ""
        )
        super().__init__(f"unknown tenant {ref!r}{hint}")


class DuplicateTenantError(TenantError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a tenant named {name!r} already exists")


class TenantNameCaseError(DuplicateTenantError):
    """'ALPHA' beside 'alpha': two tenants told apart only by case are a billing mix-up waiting
    to happen, so names are unique regardless of case (lookups stay exact)."""

    def __init__(self, name: str, existing: str) -> None:
        TenantError.__init__(
            self, f"a tenant named {existing!r} already exists; names are unique regardless of case"
        )
        self.name = name


class TenantPermissionError(TenantError, PermissionError):
    """The connection's role may not do this (e.g. the application role creating a tenant)."""


class InvalidTenantError(TenantError):
    """Bad name or tier."""


def validate_tier(tier: int) -> int:
    if isinstance(tier, bool) or not isinstance(tier, int) or not MIN_TIER <= tier <= MAX_TIER:
        raise InvalidTenantError(
            f"tier must be an integer from {MIN_TIER} to {MAX_TIER} "
            f"({', '.join(f'{k} {v}' for k, v in TIER_NAMES.items())}), got {tier!r}"
        )
    return tier


def validate_name(name: str) -> str:
    cleaned = name.strip()
    if not _NAME.fullmatch(cleaned):
        raise InvalidTenantError(
            f"invalid tenant name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if _as_uuid(cleaned) is not None:
        raise InvalidTenantError(f"tenant name {name!r} looks like an id (UUID); pick a name")
    return cleaned


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref.strip())
    except ValueError:
        return None


def _record(row: RowMapping) -> TenantRecord:
    return TenantRecord(id=row["id"], name=row["name"], tier=row["tier"],
                        created_at=row["created_at"])  # fmt: skip


@contextmanager
def _connect(db: str | Engine, *, write: bool = False) -> Iterator[Connection]:
    """A connection from a URL (own short-lived engine) or an engine; DB outages -> one line."""
    engine = create_sync_engine(db, poolclass=NullPool) if isinstance(db, str) else db
    try:
        with engine.begin() if write else engine.connect() as conn:
            yield conn
    except OperationalError as err:
        raise unavailable_error(engine.url, err) from None
    finally:
        if isinstance(db, str):
            engine.dispose()


# ----------------------------------------------------------------------------- functions


def create_tenant(db: str | Engine, name: str, tier: int) -> TenantRecord:
    """Create a tenant (owner URL or owner engine). Duplicate names raise DuplicateTenantError."""
    clean = validate_name(name)
    validate_tier(tier)
    stmt = insert(tenants).values(name=clean, tier=tier).returning(*tenants.c)
    try:
        with _connect(db, write=True) as conn:
            _refuse_other_case(conn, clean)
            row = conn.execute(stmt).mappings().one()
    except IntegrityError as err:
        if "uq_tenants_lower_name" in str(err.orig):
            # Created meanwhile in another case (the index is the guarantee): name it.
            with _connect(db) as conn:
                _refuse_other_case(conn, clean)
        if "uq_tenants_name" in str(err.orig) or "unique" in str(err.orig).lower():
            raise DuplicateTenantError(clean) from None
        raise
    except ProgrammingError as err:
        if "permission denied" in str(err.orig):
            raise TenantPermissionError(
                "creating tenants needs the database owner (RADIANT_DATABASE_URL); "
                "the application role may only read tenants"
            ) from None
        raise
    return _record(row)


def _refuse_other_case(conn: Connection, name: str) -> None:
    """TenantNameCaseError when a tenant spelled `name` in another case exists; the unique
    index on lower(name) (migration 0003) enforces it, this names the tenant in the way."""
    existing = conn.scalar(select(tenants.c.name).where(func.lower(tenants.c.name) == name.lower()))
    if existing is not None and existing != name:
        raise TenantNameCaseError(name, existing)


def list_tenants(db: str | Engine) -> list[TenantRecord]:
    with _connect(db) as conn:
        rows = conn.execute(select(tenants).order_by(tenants.c.name)).mappings().all()
    return [_record(r) for r in rows]


def get_tenant(db: str | Engine, ref: str) -> TenantRecord:
    """A tenant by id (UUID) or exact name; UnknownTenantError (with suggestions) otherwise."""
    _refuse_malformed(ref)
    with _connect(db) as conn:
        row = conn.execute(_lookup(ref)).mappings().first()
        if row is not None:
            return _record(row)
        names = list(conn.execute(select(tenants.c.name)).scalars())
    raise UnknownTenantError(ref, similar_names(ref, names))


def similar_names(ref: str, names: list[str]) -> list[str]:
    """Up to 3 names close to `ref`, ignoring case ("ALPHA" finds "alpha")."""
    folded = {name.lower(): name for name in names}
    return [folded[m] for m in difflib.get_close_matches(ref.strip().lower(), folded, n=3)]


async def get_tenant_async(db: AsyncEngine | AsyncConnection, ref: str) -> TenantRecord:
    """The async lookup; pass a connection to share it with the caller's other reads."""
    _refuse_malformed(ref)
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return await get_tenant_async(conn, ref)
    row = (await db.execute(_lookup(ref))).mappings().first()
    if row is None:
        names = list((await db.execute(select(tenants.c.name))).scalars())
        raise UnknownTenantError(ref, similar_names(ref, names))
    return _record(row)


def _refuse_malformed(ref: str) -> None:
    """UnknownTenantError, without a query, for a reference that is neither an id nor a
    possible name: no tenant can have it, and the driver would refuse some (a NUL byte is a
    DataError, which a retried activity would hit forever)."""
    if _as_uuid(ref) is None and not _NAME.fullmatch(ref.strip()):
        raise UnknownTenantError(ref)


def _lookup(ref: str):  # type: ignore[no-untyped-def]
    as_id = _as_uuid(ref)
    cond = tenants.c.id == as_id if as_id is not None else tenants.c.name == ref.strip()
    return select(tenants).where(cond)


# ----------------------------------------------------------------------------- activity


class TenantActivities:
    """Tenant lookups for workflows (application-role engine: SELECT on tenants only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name="tenants.get")
    async def get(self, ref: str) -> TenantRecord:
        """The tenant named or identified by `ref`; non-retryable `UnknownTenant` if none."""
        try:
            return await get_tenant_async(self.engine, ref)
        except UnknownTenantError as err:
            raise ApplicationError(
                str(err), ref, type=ERR_UNKNOWN_TENANT, non_retryable=True
            ) from None
