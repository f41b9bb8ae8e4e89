"""The application role as the revisions see it (resolved by migrations/env.py), shared by every
revision that grants to it."""

from __future__ import annotations

import re

from alembic import context

_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def app_role() -> tuple[str, str | None]:
    """The application role's name and password, as resolved by migrations/env.py."""
    attrs = context.config.attributes
    role = attrs.get("app_role") or "radiant_app"
    if not _ROLE_NAME.match(role):
        raise ValueError(f"invalid application role name {role!r} (letters, digits, _)")
    return role, attrs.get("app_password")


def sql_literal(value: str) -> str:
    # standard_conforming_strings is on (default since PostgreSQL 9.1): only quotes need doubling.
    return "'" + value.replace("'", "''") + "'"
